"""WireGuard test support: phones as network namespaces with Debian's wireguard-go, and the
Instagram stand-in in a namespace of its own (the proxy never connects to the box's own
addresses, loopback included, so the stand-in cannot live there).

Every namespace, link and process is the test's own, named with a random tag, and removed at
the end. The proxy runs in the test's own (root) namespace; each phone reaches it over a veth
pair, and routes everything else into its tunnel, as a phone with the WireGuard app does.

`running_wireguard_box` is the whole set-up (the stand-in, a config with WireGuard on, the
first phone, the proxy); tests/conftest.py serves it as the module-scoped `wireguard_box`
fixture, so each test module gets one proxy and adds its own phones.

Run as a script, this module serves the stand-in (`origin` command) inside a namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers import free_port, missing_on_this_machine, wait_until, write_config

if TYPE_CHECKING:
    from instaflyd.store.devices import WireGuardDevice

NETNS_ETC = Path("/etc/netns")
WG_CONF_KEYS = ("PrivateKey", "PublicKey", "AllowedIPs", "Endpoint", "PersistentKeepalive")


def require_wireguard() -> None:
    if os.geteuid() != 0:
        missing_on_this_machine("network namespaces need root")
    for tool in ("wireguard-go", "wg", "ip"):
        if shutil.which(tool) is None:
            missing_on_this_machine(
                f"{tool} is missing (apt-get install --no-install-recommends wireguard-go"
                " wireguard-tools)"
            )
    if not Path("/dev/net/tun").exists():
        missing_on_this_machine("/dev/net/tun is missing")


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: exit {result.returncode}: {result.stderr}")
    return result


class Lab:
    """Namespaces joined to the test's namespace by veth pairs on 10.<n>.<m>.0/30 links."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.namespaces: list[str] = []
        self.links: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self._subnet = 0
        self._second = secrets.randbelow(200) + 20

    def namespace(self, name: str) -> tuple[str, str, str]:
        """A namespace with a link to ours: (namespace, our address, its address)."""
        ns = f"if{self.tag}{name}"
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        self._subnet += 1
        ours, theirs = f"10.{self._second}.{self._subnet}.1", f"10.{self._second}.{self._subnet}.2"
        outside, inside = f"v{self.tag}{self._subnet}a", f"v{self.tag}{self._subnet}b"
        sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        self.links.append(outside)
        sh("ip", "link", "set", inside, "netns", ns)
        sh("ip", "addr", "add", f"{ours}/30", "dev", outside)
        sh("ip", "link", "set", outside, "up")
        self.run(ns, "ip", "addr", "add", f"{theirs}/30", "dev", inside)
        self.run(ns, "ip", "link", "set", inside, "up")
        self.run(ns, "ip", "link", "set", "lo", "up")
        return ns, ours, theirs

    def run(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", ns, *args, check=check)

    def popen(self, ns: str, *args: str, **kwargs: object) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(["ip", "netns", "exec", ns, *args], **kwargs)  # type: ignore[call-overload]
        self.processes.append(process)
        return process

    def phone(self, ns: str, conf: str, directory: Path, dns: str | None = None) -> str:
        """Bring up a WireGuard tunnel in `ns` from a phone's configuration, routing everything
        through it (as the WireGuard app does); returns the interface's name."""
        interface = f"wg{self.tag}{len(self.processes)}"
        fields = dict(line.split(" = ", 1) for line in conf.splitlines() if " = " in line)
        peer_conf = directory / f"{interface}.conf"
        lines = ["[Interface]", f"PrivateKey = {fields['PrivateKey']}", "", "[Peer]"]
        lines += [f"{key} = {fields[key]}" for key in WG_CONF_KEYS[1:] if key in fields]
        peer_conf.write_text("\n".join(lines) + "\n")
        peer_conf.chmod(0o600)
        log = (directory / f"{interface}.log").open("wb")
        self.popen(ns, "wireguard-go", "-f", interface, stdout=log, stderr=subprocess.STDOUT)
        wait_until(
            lambda: self.run(ns, "ip", "link", "show", interface, check=False).returncode == 0,
            10,
            f"wireguard-go to create {interface}",
        )
        self.run(ns, "wg", "setconf", interface, str(peer_conf))
        self.run(ns, "ip", "addr", "add", fields["Address"], "dev", interface)
        self.run(ns, "ip", "link", "set", interface, "up")
        self.run(ns, "ip", "route", "add", "default", "dev", interface)
        if dns:
            (NETNS_ETC / ns).mkdir(parents=True, exist_ok=True)
            (NETNS_ETC / ns / "resolv.conf").write_text(f"nameserver {dns}\n")
        return interface

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for ns in self.namespaces:
            sh("ip", "netns", "pids", ns, check=False)
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)
            shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
        for link in self.links:
            sh("ip", "link", "del", link, check=False)


@contextlib.contextmanager
def lab() -> Iterator[Lab]:
    require_wireguard()
    built = Lab()
    try:
        yield built
    finally:
        built.close()


@contextlib.contextmanager
def origin_in(the_lab: Lab, ns: str, address: str, directory: Path) -> Iterator[dict[str, object]]:
    """The Instagram stand-in, serving inside `ns` on `address`; yields what it wrote: its port,
    its CA file and mitmproxy's options to send Instagram's traffic there."""
    directory.mkdir(parents=True, exist_ok=True)
    ready = directory / "origin.json"
    log = (directory / "origin.log").open("wb")
    process = the_lab.popen(
        ns, sys.executable, __file__, "origin", str(directory), address,
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
    )  # fmt: skip
    wait_until(lambda: json.loads(ready.read_text()), 30, "the stand-in to start", process=process)
    yield json.loads(ready.read_text())


def curl(the_lab: Lab, ns: str, url: str, *options: str, timeout: float = 10) -> tuple[int, str]:
    """(curl's exit status, the HTTP status or body) from inside the phone's namespace."""
    result = the_lab.run(ns, "curl", "-sS", "--max-time", str(timeout), *options, url, check=False)
    return result.returncode, result.stdout.strip()


def new_device(config_path: Path, name: str) -> WireGuardDevice:
    """Add a phone in the store, as "Add a phone" on the page does."""
    from instaflyd.capture.wireguard import add_device
    from instaflyd.config import load_config
    from instaflyd.store import Database

    config = load_config(config_path, search=False)
    with Database(config.db_path) as db, db.transaction() as conn:
        return add_device(conn, config, name)


@dataclass(frozen=True)
class WireGuardBox:
    lab: Lab
    config: Path
    data: Path
    wg_port: int
    origin: dict[str, Any]
    origin_address: str
    first_phone: WireGuardDevice  # added before the proxy started
    log: Path
    proxy_port: int  # the Wi-Fi proxy's
    allowed_port: int  # a port on the box the proxy may connect to (proxy.box_ports_allowed)

    @property
    def ca(self) -> Path:
        return self.data / "mitmproxy" / "mitmproxy-ca-cert.pem"

    @property
    def db(self) -> Path:
        return self.data / "instafly.db"


@contextlib.contextmanager
def running_wireguard_box(tmp: Path) -> Iterator[WireGuardBox]:
    """The stand-in in its namespace, the proxy with WireGuard on (three phones at most) and
    its Wi-Fi proxy on all interfaces, and the first phone, added before it started."""
    from support_capture import running_proxy

    data = tmp / "data"
    port, wg_port, allowed = free_port(), free_port(), free_port()
    with lab() as the_lab:
        origin_ns, _, origin_address = the_lab.namespace("o")
        with origin_in(the_lab, origin_ns, origin_address, tmp / "origin") as origin:
            config = write_config(
                tmp / "instafly.yaml",
                {
                    "data_dir": str(data),
                    "proxy": {
                        "listen_host": "0.0.0.0",
                        "listen_port": port,
                        "mitmproxy_options": origin["mitmproxy_options"],
                        "box_ports_allowed": [allowed],
                    },
                    "wireguard": {"port": wg_port, "max_devices": 3},
                    "web": {"host": "0.0.0.0"},
                },
            )
            first = new_device(config, "Anna's phone")
            with running_proxy(config, port, tmp / "proxy.log") as process:
                yield WireGuardBox(the_lab, config, data, wg_port, origin, origin_address, first,
                                   tmp / "proxy.log", port, allowed)  # fmt: skip
        # mitmproxy may end with SIGSEGV on SIGTERM after WireGuard traffic: a stop all the same.
        assert process.returncode in (0, -11)
    assert "PrivateKey" not in (tmp / "proxy.log").read_text()


def _serve_origin(directory: Path, address: str) -> None:
    from support_capture import InstagramStandIn

    with InstagramStandIn(directory, host=address) as origin:
        info = {
            "port": origin.port,
            "ca": str(origin.ca_path),
            "leaf_der_hex": origin.leaf_der.hex(),
            "mitmproxy_options": origin.mitmproxy_options(),
        }
        tmp = directory / "origin.json.tmp"
        tmp.write_text(json.dumps(info))
        tmp.rename(directory / "origin.json")
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    if sys.argv[1] == "origin":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        _serve_origin(Path(sys.argv[2]), sys.argv[3])
        time.sleep(0)
