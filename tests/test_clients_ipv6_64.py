"""One device with an IPv6 /64 is one client, however many of its addresses it uses (issue 20),
for real: the proxy and the page listen on an IPv6 address, and connections come from eight
addresses of one /64 and from an address of another /64.

The addresses are ULAs added to the loopback interface for the test (and deleted at its end),
in a /48 drawn at random so that two runs at once (both Pythons' CI) do not meet:
fd20:xxxx:xxxx:1::1 for the box, ::a to ::11 of the same /64 for the device, and
fd20:xxxx:xxxx:2::a for another device. With budgets kept per address, the device's eight addresses got eight shares;
per /64 they share one.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_port, missing_on_this_machine, wait_until
from support_capture import box_service, counters, proxy_config, running_proxy, still_open, tunnel
from support_web import page_config, serving

from instaflyd.config import load_config
from instaflyd.web import server

SITE = f"fd20:{secrets.randbelow(0x10000):x}:{secrets.randbelow(0x10000):x}"  # this run's /48
BOX = f"{SITE}:1::1"
DEVICE = [f"{SITE}:1::{n:x}" for n in range(10, 18)]  # eight addresses of one /64
OTHER = f"{SITE}:2::a"  # another /64: another device
DEVICE_64 = str(ipaddress.IPv6Network(f"{SITE}:1::/64"))
LIMIT = 4  # connections per client, lowered for the test


@contextlib.contextmanager
def ipv6_addresses() -> Iterator[None]:
    """BOX, DEVICE and OTHER on the loopback interface, for the test's duration."""
    if os.geteuid() != 0:
        missing_on_this_machine("adding IPv6 addresses needs root")
    if not shutil.which("ip"):
        missing_on_this_machine("ip is missing (apt install iproute2)")
    if not Path("/proc/net/if_inet6").exists():
        missing_on_this_machine("this machine has no IPv6")
    added: list[str] = []
    try:
        for address in (BOX, *DEVICE, OTHER):
            _ip("-6", "addr", "add", f"{address}/128", "dev", "lo", "nodad")
            added.append(address)
        yield
    finally:
        for address in added:
            _ip("-6", "addr", "del", f"{address}/128", "dev", "lo", check=False)


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, timeout=30)


@pytest.mark.slow
def test_the_proxy_counts_the_addresses_of_one_64_as_one_device(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "data" / "instafly.db"
    held: list[socket.socket] = []
    with ipv6_addresses(), box_service() as (target, _):
        config = proxy_config(tmp_path, port, listen_host=BOX, max_connections_per_client=LIMIT,
                              box_ports_allowed=[target])  # fmt: skip
        try:
            with running_proxy(config, port, tmp_path / "proxy.log", proxy_host=BOX):
                device = [tunnel(port, a, f"127.0.0.1:{target}", proxy_host=BOX) for a in DEVICE]
                held += [sock for sock in device if sock is not None]
                other = tunnel(port, OTHER, f"127.0.0.1:{target}", proxy_host=BOX)
                if other is not None:
                    held.append(other)
                still = [sock is not None and still_open(sock) for sock in device]
                wait_until(lambda: counters(db).get("connections_refused", 0) >= 4, 20, "count")
                refused = counters(db)["connections_refused"]
        finally:
            for sock in held:
                with contextlib.suppress(OSError):
                    sock.close()
    assert [sock is not None for sock in device] == [True] * LIMIT + [False] * (8 - LIMIT)
    assert still == [True] * LIMIT + [False] * (8 - LIMIT)
    assert other is not None  # another /64 is another device, not refused
    assert refused == 8 - LIMIT
    log = (tmp_path / "proxy.log").read_text()
    assert f"more than {LIMIT} connections from {DEVICE_64}" in log, log[-2000:]


@pytest.mark.slow
def test_the_page_counts_the_addresses_of_one_64_as_one_device(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(server, "PER_CLIENT_CONNECTIONS", LIMIT)
    config = load_config(page_config(tmp_path))
    held: list[socket.socket] = []

    def connect(source: str) -> socket.socket:
        sock = socket.create_connection((BOX, port), timeout=5, source_address=(source, 0))
        held.append(sock)
        time.sleep(0.05)  # one at a time, as the page's loop accepts them
        return sock

    try:
        with ipv6_addresses(), serving(config, host=BOX) as web:
            port = int(web.address.rsplit(":", 1)[1])
            device = [connect(address) for address in DEVICE]
            other = connect(OTHER)
            wait_until(lambda: not any(still_open(s) for s in device[LIMIT:]), 5,
                       "the device's connections beyond its limit closed")  # fmt: skip
            still = [still_open(sock) for sock in device]
            other_open = still_open(other)
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()
    assert still == [True] * LIMIT + [False] * (8 - LIMIT)
    assert other_open  # another /64 is another device
