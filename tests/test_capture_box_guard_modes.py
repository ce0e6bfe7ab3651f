"""The proxy never connects to the box itself, through WireGuard and in transparent mode, for
real (issue 20; the regular mode is tests/test_capture_box_and_memory.py).

- WireGuard: a phone (Debian's wireguard-go in a namespace, `wireguard_box` fixture) sends
  into its tunnel what a hostile phone could: TCP to 127.0.0.1 (its own loopback taken down
  and 127/8 routed into the tunnel, as a crafted client would), to another of the box's own
  addresses and to a link-local address of the box. The proxy connects to none of them (the
  phone's connection is closed, nothing arrives), counts and logs each with the phone's
  tunnel address; the same requests to a port the administrator allowed arrive, so the
  refusals are the guard's and the packets did reach the proxy. (UDP: see
  tests/test_capture_wireguard_udp.py.)
- Transparent mode: the box is the client's gateway (namespaces, instafly-transparent.sh's
  nftables rules, the proxy in the box's namespace). A request to a link-local metadata
  service beyond the box, and one straight to the proxy's own port (its original destination
  is then the proxy itself, which would loop), are refused (the connection is closed: not
  Instagram, they pass through as raw TCP); the internet is reached, and a `Host:` naming the
  box's loopback changes nothing (the original destination is used).
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import wait_until, write_config
from support_capture import box_service, counters, running_proxy
from support_transparent import UPLINK_IP, box_script
from support_wireguard import WireGuardBox, curl, sh

from instaflyd.capture.wireguard import client_conf

pytestmark = pytest.mark.slow


def test_a_phone_through_wireguard_cannot_reach_the_box_itself(
    wireguard_box: WireGuardBox, tmp_path: Path
) -> None:
    box = wireguard_box
    the_lab = box.lab
    phone, box_address, _ = the_lab.namespace("g")
    _, other_address, _ = the_lab.namespace("h")  # another of the box's own addresses
    link_local = f"169.254.{secrets.randbelow(200) + 20}.1"
    sh("ip", "addr", "add", f"{link_local}/32", "dev", the_lab.links[-1])
    wg = the_lab.phone(phone, client_conf(box.first_phone, box_address, box_address), tmp_path)
    # A crafted client: the phone's own loopback gone, 127/8 routed into the tunnel.
    the_lab.run(phone, "ip", "addr", "flush", "dev", "lo")
    the_lab.run(phone, "sysctl", "-q", "-w", f"net.ipv4.conf.{wg}.route_localnet=1")
    the_lab.run(phone, "ip", "route", "add", "127.0.0.0/8", "dev", wg)
    allowed = box.allowed_port
    db = box.db
    before = counters(db).get("connections_to_the_box", 0)
    with (
        box_service("0.0.0.0") as (hidden, served),
        box_service("0.0.0.0", allowed) as (_, allowed_served),
    ):
        code = ["-o", "/dev/null", "-w", "%{http_code}"]
        # The routes work: a port the administrator allowed is reached through the tunnel.
        for address in ("127.0.0.1", other_address, link_local):
            assert curl(the_lab, phone, f"http://{address}:{allowed}/ok", *code) == (0, "200")
        assert allowed_served == ["/ok"] * 3
        # Every other port of the box: refused before any connection is opened (not Instagram,
        # so passed through as raw TCP: the phone's connection is closed).
        for address in ("127.0.0.1", "127.0.0.9", other_address, link_local):
            status = curl(the_lab, phone, f"http://{address}:{hidden}/secret", *code)
            assert status[0] in (52, 56), (address, status)  # curl: empty reply, reset
        refused = 4
        wait_until(
            lambda: counters(db).get("connections_to_the_box", 0) - before == refused,
            20,
            "the refusals to be counted",
            output=lambda: str(counters(db)) + box.log.read_text()[-3000:],
        )
        assert served == []
    log = box.log.read_text()
    tunnel_address = box.first_phone.address.split("/")[0]
    for address in ("127.0.0.1", other_address, link_local):
        assert (
            f"refused a connection from {tunnel_address} to {address} port {hidden}: that is"
            f" this box ({address})"
        ) in log, log[-3000:]


# --- transparent mode -----------------------------------------------------------------------------

METADATA = "169.254.169.254"  # a link-local service beyond the box (a cloud's metadata)
PROXY_PORT = 18443


def http_server(ns: str, address: str, directory: Path) -> subprocess.Popen[bytes]:
    """Python's http.server inside `ns` on address:80, once it listens; its access log lists
    what it served."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ok").write_text("uplink\n")
    log_path = directory / "access.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-u", "-m", "http.server", "--bind",
             address, "--directory", str(directory), "80"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    wait_until(lambda: "Serving HTTP" in log_path.read_text(), 30, "http.server", process=server)
    return server


CLOSED = ("curl exit 52: curl: (52) Empty reply from server",
          "curl exit 56: curl: (56) Recv failure: Connection reset by peer")  # fmt: skip


def client_curl(network: dict[str, str], url: str, *options: str) -> str:
    result = sh("ip", "netns", "exec", network["client"], "curl", "-sS", "--max-time", "10",
                "-o", "/dev/null", "-w", "%{http_code}", *options, url, check=False)  # fmt: skip
    if result.returncode != 0:
        return f"curl exit {result.returncode}: {result.stderr.strip()}"
    return result.stdout.strip()


def test_in_transparent_mode_the_proxy_never_connects_to_the_box_itself(
    transparent_network: dict[str, str], tmp_path: Path
) -> None:
    network = transparent_network
    uplink, box_ns = network["uplink"], network["box"]
    sh("ip", "-n", uplink, "addr", "add", f"{METADATA}/32", "dev", "lo")
    sh("ip", "-n", box_ns, "route", "add", f"{METADATA}/32", "via", "192.0.2.2")
    data = tmp_path / "data"
    config = write_config(
        tmp_path / "instafly.yaml",
        {
            "data_dir": str(data),
            "proxy": {"mode": "transparent", "listen_host": "0.0.0.0", "listen_port": PROXY_PORT},
        },
    )
    servers = [
        http_server(uplink, UPLINK_IP, tmp_path / "internet"),
        http_server(uplink, METADATA, tmp_path / "metadata"),
    ]
    try:
        with running_proxy(config, PROXY_PORT, tmp_path / "proxy.log", namespace=box_ns):
            started = box_script(network, "start", tmp_path / "state", PROXY_PORT)
            assert started.returncode == 0, started.stderr
            # The internet, through the proxy; a Host naming the box's loopback changes nothing.
            assert client_curl(network, f"http://{UPLINK_IP}/ok") == "200"
            assert client_curl(network, f"http://{UPLINK_IP}/ok", "-H", "Host: 127.0.0.1") == "200"
            # A link-local service beyond the box, and the proxy's own port: refused.
            # (Not Instagram: passed through as raw TCP, so the refusal closes the connection.)
            for url in (
                f"http://{METADATA}/latest/meta-data/",
                f"http://198.51.100.1:{PROXY_PORT}/",
            ):
                assert client_curl(network, url) in CLOSED, url
            db = data / "instafly.db"
            wait_until(lambda: counters(db).get("connections_to_the_box") == 2, 20, "the count")
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
    internet = (tmp_path / "internet" / "access.log").read_text()
    assert internet.count('"GET /ok HTTP/1.1" 200') == 2, internet
    assert "meta-data" not in (tmp_path / "metadata" / "access.log").read_text()
    log = (tmp_path / "proxy.log").read_text()
    assert f"from 198.51.100.2 to {METADATA} port 80: that is this box ({METADATA})" in log, log
    assert f"from 198.51.100.2 to 198.51.100.1 port {PROXY_PORT}" in log, log[-3000:]
    assert log.count("refused a connection from") == 2, log[-3000:]
