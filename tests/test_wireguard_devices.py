"""WireGuard keys, listener files and the phone's configuration; the devices the proxy sees,
their budget, their posts and the cause of their TLS failures; the addon's live check."""

from __future__ import annotations

import base64
import ipaddress
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import mitmproxy_rs
import pytest
from helpers import REPO, cli_env, free_port, run_cli, wait_until, write_config
from mitmproxy import dns, http
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow

from instaflyd.capture.addon import CaptureAddon, Sightings, device_of
from instaflyd.capture.flows import ORIGINAL_HOST
from instaflyd.capture.wireguard import (
    CHECK_ADDRESS,
    CHECK_HOST,
    CHECK_PATH,
    NotAWireGuardKey,
    add_device,
    allowed_ips,
    device_of_listener,
    generate_private_key,
    listener_modes,
    public_key,
    x25519,
)
from instaflyd.capture.writer import DeviceSeen, TlsFailure, write_until_stopped
from instaflyd.config import Config, build_config, load_config
from instaflyd.repairs import parse_marker
from instaflyd.store import Database
from instaflyd.store.devices import (
    DeviceBudgetFull,
    device_seen,
    prune_device_posts,
    record_device_posts,
    revoke_wireguard_device,
    seen_devices,
    wireguard_devices,
)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return build_config({"wireguard": {"port": 51900, "max_devices": 3}}, data_dir=tmp_path)


# --- keys ---------------------------------------------------------------------------------------


def test_x25519_matches_rfc_7748() -> None:
    # RFC 7748 section 5.2, first test vector.
    scalar = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    u = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
    assert x25519(scalar, u).hex() == (
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"
    )


def test_public_keys_are_what_mitmproxy_and_wg_compute() -> None:
    for _ in range(5):
        private = generate_private_key()
        assert len(base64.b64decode(private)) == 32
        assert public_key(private) == mitmproxy_rs.wireguard.pubkey(private)
    theirs = mitmproxy_rs.wireguard.genkey()
    assert public_key(theirs) == mitmproxy_rs.wireguard.pubkey(theirs)
    for bad in ("", "not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(NotAWireGuardKey):
            public_key(bad)


def test_allowed_ips_route_everything_but_the_box_itself() -> None:
    routes = allowed_ips("192.168.1.23")
    assert routes[-1] == "::/0"
    networks = [ipaddress.ip_network(r) for r in routes[:-1]]
    assert sum(n.num_addresses for n in networks) == 2**32 - 1
    box = ipaddress.ip_address("192.168.1.23")
    assert not any(box in n for n in networks)
    for inside in ("157.240.1.174", "10.0.0.53", CHECK_ADDRESS, "192.168.1.22", "192.168.1.24"):
        assert any(ipaddress.ip_address(inside) in n for n in networks), inside
    assert allowed_ips("box.lan") == ["0.0.0.0/0", "::/0"]  # a name: nothing to leave out


# --- devices and their listeners ------------------------------------------------------------------


def test_each_device_gets_a_port_an_address_and_a_0600_listener_file(config: Config) -> None:
    with Database(config.db_path) as db:
        with db.transaction() as conn:
            devices = [add_device(conn, config, name) for name in ("a", "b", "c")]
            with pytest.raises(DeviceBudgetFull, match="3 phones are set up, the most"):
                add_device(conn, config, "d")
        assert [(d.port, d.address) for d in devices] == [
            (51900, "10.0.0.2/32"), (51901, "10.0.0.3/32"), (51902, "10.0.0.4/32"),
        ]  # fmt: skip
        assert "private" not in repr(devices[0]).lower()  # a logged record shows no key
        modes = listener_modes(config, devices)
        folder = config.data_dir / "wireguard"
        assert folder.stat().st_mode & 0o777 == 0o700
        assert modes == [f"wireguard:{folder}/device-{d.id}.json@{d.port}" for d in devices]
        first = json.loads((folder / f"device-{devices[0].id}.json").read_text())
        assert first == {
            "server_key": devices[0].server_private_key,
            "client_key": devices[0].device_private_key,
        }
        for device in devices:
            path = folder / f"device-{device.id}.json"
            assert path.stat().st_mode & 0o777 == 0o600
            assert device_of_listener(str(path)) == device.key
        with db.transaction() as conn:
            assert revoke_wireguard_device(conn, devices[1].id)
            assert not revoke_wireguard_device(conn, devices[1].id)
            remaining = wireguard_devices(conn)
        assert listener_modes(config, remaining) == [modes[0], modes[2]]
        assert not (folder / f"device-{devices[1].id}.json").exists()
        with db.transaction() as conn:  # the freed port goes to the next phone
            assert add_device(conn, config, "e").port == 51901
    assert device_of_listener(None) is None
    assert device_of_listener("/etc/passwd") is None
    assert device_of_listener("/x/device-x.json") is None


def test_devices_seen_by_address_stay_within_their_budget(config: Config) -> None:
    with Database(config.db_path) as db, db.transaction() as conn:
        device_seen(conn, "wg:1", now=1.0, max_by_address=3)
        for n in range(10):
            device_seen(conn, f"ip:10.1.0.{n}", now=10.0 + n, max_by_address=3)
            record_device_posts(conn, f"ip:10.1.0.{n}", [f"post{n}"], now=10.0 + n)
        keys = [d.key for d in seen_devices(conn, 0, 50)]
        assert keys == ["ip:10.1.0.9", "ip:10.1.0.8", "ip:10.1.0.7", "wg:1"]
        assert [d.posts_since for d in seen_devices(conn, 0, 50)] == [1, 1, 1, 0]
        # the posts of the devices that were let go went with them
        assert prune_device_posts(conn, before=100.0) == 3


def test_a_failure_is_not_trusted_yet_until_the_device_took_the_certificate(
    config: Config,
) -> None:
    """Through the writer process's loop: the same device first fails (not trusted yet), then
    completes a handshake, then fails again for Instagram (an app that pins)."""
    inbox: queue.Queue[object] = queue.Queue()
    for item in (
        DeviceSeen("wg:7", 100.0, False),
        TlsFailure("i.instagram.com", "tlsv1 alert unknown ca", "wg:7"),
        TlsFailure(CHECK_HOST, "tlsv1 alert unknown ca", "wg:7"),
        DeviceSeen("wg:7", 101.0, True),
        TlsFailure("i.instagram.com", "connection closed", "wg:7"),
        TlsFailure(CHECK_HOST, "tlsv1 alert unknown ca", "wg:7"),  # the check never pins
        None,
    ):
        inbox.put(item)
    thread = threading.Thread(target=write_until_stopped, args=(config, inbox))
    thread.start()
    thread.join(30)
    with Database(config.db_path) as db:
        (device,) = seen_devices(db.conn, 0, 10)
    assert (device.tls_untrusted, device.tls_pinned) == (3, 1)
    assert device.trusted_at is not None
    assert device.tls_last_host == CHECK_HOST


# --- the addon ----------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.items: list[object] = []

    def submit(self, item: object) -> bool:
        self.items.append(item)
        return True

    def count(self, name: str, amount: int = 1) -> None:
        self.items.append(("count", name))

    def stop(self) -> None:
        pass


def wireguard_flow(path: str, device_id: int, tls: bool) -> http.HTTPFlow:
    flow = tflow.tflow()
    flow.client_conn.proxy_mode = ProxyMode.parse(
        f"wireguard:/d/wireguard/device-{device_id}.json@51820"
    )
    flow.client_conn.peername = ("10.0.0.2", 40000)
    flow.client_conn.timestamp_tls_setup = 1.0 if tls else None
    flow.request.host = CHECK_HOST
    flow.request.path = path
    flow.metadata[ORIGINAL_HOST] = CHECK_HOST
    return flow


@pytest.mark.parametrize("tls", [False, True])
def test_the_live_check_is_answered_by_the_addon_and_never_captured(tls: bool) -> None:
    writer = Recorder()
    addon = CaptureAddon(writer, 1_000_000)  # type: ignore[arg-type]
    with taddons.context(addon):
        flow = wireguard_flow(CHECK_PATH + "?t=1", 4, tls)
        addon.request(flow)
        assert flow.response is not None and flow.response.status_code == 200
        assert flow.response.headers["Access-Control-Allow-Origin"] == "*"
        assert flow.response.headers["Cache-Control"] == "no-store"
        assert json.loads(flow.response.content or b"") == {
            "instafly": "check", "secure": tls, "device": "wg:4", "via": "wireguard",
        }  # fmt: skip
        addon.response(flow)
        other = wireguard_flow("/anything", 4, tls)
        addon.request(other)
        assert other.response is not None and other.response.status_code == 404
    assert writer.items == []  # not a flow, not a capture


def test_the_proxys_dns_names_the_check_inside_the_tunnel() -> None:
    addon = CaptureAddon(Recorder(), 1_000_000)  # type: ignore[arg-type]
    with taddons.context(addon):
        question = dns.Question(CHECK_HOST, 1, 1)
        flow = tflow.tdnsflow()
        flow.request.questions = [question]
        flow.response = None
        addon.dns_request(flow)
        assert flow.response is not None
        assert [str(a.ipv4_address) for a in flow.response.answers] == [CHECK_ADDRESS]
        other = tflow.tdnsflow()
        other.request.questions = [dns.Question("www.instagram.com", 1, 1)]
        other.response = None
        addon.dns_request(other)
        assert other.response is None  # resolved as usual


def test_a_device_is_its_listener_or_its_address() -> None:
    client = tflow.tclient_conn()
    client.peername = ("192.168.1.40", 5000)
    client.proxy_mode = ProxyMode.parse("regular@8080")
    assert device_of(client) == "ip:192.168.1.40"
    client.proxy_mode = ProxyMode.parse("wireguard:/d/device-12.json@51821")
    assert device_of(client) == "wg:12"
    client.proxy_mode = ProxyMode.parse("wireguard@51820")  # not one of ours
    assert device_of(client) == "ip:192.168.1.40"


def test_sightings_are_shipped_once_then_on_first_trust() -> None:
    writer = Recorder()
    sightings = Sightings(writer)  # type: ignore[arg-type]
    for trusted in (False, False, True, True, False):
        sightings.seen("wg:1", trusted)
    assert [(i.device, i.trusted) for i in writer.items] == [("wg:1", False), ("wg:1", True)]  # type: ignore[attr-defined]


# --- the proxy process ----------------------------------------------------------------------------


def udp_port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def repairs_reported(log: Path) -> list[tuple[str, str]]:
    reports = [parse_marker(line) for line in log.read_text(errors="replace").split("\n")]
    return [(r.op, r.id) for r in reports if r is not None]


@pytest.mark.slow
def test_a_wireguard_only_proxy_listens_for_each_phone_and_logs_no_key(tmp_path: Path) -> None:
    """Two phones; another program holds the second one's UDP port: the first phone's listener
    runs all the same, the second is reported to the repairs list, and starts once the port is
    free again."""
    port, wg_port = free_port(), free_port()
    config_path = write_config(
        tmp_path / "instafly.yaml",
        {
            "data_dir": str(tmp_path / "data"),
            "log": {"level": "debug"},
            "proxy": {"mode": "wireguard", "listen_host": "127.0.0.1", "listen_port": port},
            "wireguard": {"port": wg_port},
        },
    )
    config = load_config(config_path, search=False)
    with Database(config.db_path) as db, db.transaction() as conn:
        phones = [add_device(conn, config, name) for name in ("Anna", "Ben")]
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", phones[1].port))
    log = tmp_path / "proxy.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "instaflyd", "--config", str(config_path), "--verbose", "proxy"],
            stdout=output, stderr=subprocess.STDOUT, env=cli_env(INSTAFLY_REPAIRS="1"), cwd=REPO,
        )  # fmt: skip
        try:
            problem = ("report", "proxy.wireguard_port")
            wait_until(lambda: problem in repairs_reported(log), 60, "the taken port reported",
                       process=process, output=log.read_text)  # fmt: skip
            assert udp_port_taken(phones[0].port)  # Anna's listener runs
            squatter.close()
            wait_until(lambda: ("resolve", "proxy.wireguard_port") in repairs_reported(log),
                       20, "the port problem resolved", process=process,
                       output=log.read_text)  # fmt: skip
            assert udp_port_taken(phones[1].port)  # Ben's listener runs now
            assert process.poll() is None
        finally:
            squatter.close()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    assert process.returncode == 0
    text = log.read_text(errors="replace")
    assert "1 phone(s) cannot connect through WireGuard: the box cannot listen on UDP port" in text
    assert not udp_port_taken(port) or f"127.0.0.1:{port}" not in text  # no Wi-Fi proxy here
    assert "PrivateKey" not in text
    for phone in phones:
        assert phone.device_private_key not in text and phone.server_private_key not in text


@pytest.mark.slow  # starts the proxy's command (mitmproxy's import)
def test_a_wireguard_only_proxy_without_wireguard_is_refused(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "instafly.yaml",
        {"proxy": {"mode": "wireguard"}, "wireguard": {"enabled": False}},
    )
    result = run_cli("proxy", config=config, data_dir=tmp_path / "data", timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "instaflyd: proxy: cannot start: proxy.mode is wireguard but wireguard.enabled is false:"
        " nothing to listen on (set proxy.mode: regular, or wireguard.enabled: true)"
    )
