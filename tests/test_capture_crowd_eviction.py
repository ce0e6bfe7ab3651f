"""A crowd that took the proxy's connections is evicted, not only refused (issue 20), for real.

The proxy runs with a total of 64 connections. Thirty LAN addresses (127.0.0.10 ...) each open
eight idle CONNECT tunnels, one address after another, as a crowd that arrived first would: the
first six fill three quarters of the total, and the others (under four connections each) take
the last quarter, until all 64 are the crowd's. Then the household's phone (127.0.0.2) browses,
the crowd tries again to hold eight each, and the phone browses again. Every request of the
phone is answered: past three quarters each new connection of an address holding few closed
the longest-idle connection of the addresses holding the most, and with all 64 open the phone,
holding none, still takes the longest-idle of theirs. Without eviction the crowd's first ten
addresses hold all 64 and the phone gets nothing.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from helpers import free_port, wait_until
from support_capture import (
    box_service,
    close_all,
    counters,
    household_requests,
    open_tunnels,
    proxy_config,
    running_proxy,
    still_open,
    tunnel,
)

from instaflyd.capture.limits import SMALL_CLIENT

TOTAL = 64
CROWD = [f"127.0.0.{10 + i}" for i in range(30)]
HOUSEHOLD = "127.0.0.2"


def browse(port: int, target: int) -> list[int | str]:
    """The phone's ten requests through the proxy: their statuses, or the error."""
    return household_requests(port, target, HOUSEHOLD)


@pytest.mark.slow
def test_a_crowd_holding_the_proxys_connections_makes_room_for_the_household(
    tmp_path: Path,
) -> None:
    port = free_port()
    db = tmp_path / "data" / "instafly.db"
    held: dict[str, list[socket.socket]] = {address: [] for address in CROWD}

    def fill(each: int) -> None:
        for address in CROWD:
            missing = each - sum(still_open(s) for s in held[address])
            held[address] += open_tunnels(port, address, f"127.0.0.1:{target}", missing)

    def crowd_open() -> dict[str, int]:
        return {a: sum(still_open(s) for s in socks) for a, socks in held.items()}

    with box_service() as (target, served):
        config = proxy_config(tmp_path, port, max_connections=TOTAL, box_ports_allowed=[target])
        try:
            with running_proxy(config, port, tmp_path / "proxy.log"):
                fill(8)
                first = crowd_open()
                assert browse(port, target) == [200] * 10
                fill(8)  # the crowd takes again what it lost
                assert browse(port, target) == [200] * 10
                after = crowd_open()
                wait_until(lambda: counters(db).get("connections_evicted", 0) > 0, 20, "count")
                evicted = counters(db)["connections_evicted"]
        finally:
            close_all(sock for socks in held.values() for sock in socks)
    assert [p for p in served if p.startswith("/phone")] == [f"/phone{n}" for n in range(10)] * 2
    # The crowd did hold every connection, but the first addresses gave up their idle ones to
    # the later ones: none kept more than SMALL_CLIENT once others wanted in.
    assert sum(first.values()) == TOTAL, first
    assert max(first.values()) <= SMALL_CLIENT and max(after.values()) <= SMALL_CLIENT, (
        first,
        after,
    )
    assert min(first.values()) >= 1, first  # every address keeps some: only the most are closed
    assert sum(after.values()) <= TOTAL, after
    log = (tmp_path / "proxy.log").read_text()
    assert "closed an idle one of 127.0.0.10, which held 8" in log, log[-2000:]
    print(f"crowd held {sum(first.values())} of {TOTAL}: {first}; {evicted} evicted;"
          f" the phone was served 20 of 20")  # fmt: skip


@pytest.mark.slow
def test_a_crowd_of_single_connections_still_lets_the_household_in(tmp_path: Path) -> None:
    """64 addresses holding one idle tunnel each fill the proxy; a crowd address's second is
    refused (equals do not take turns), but the phone, holding none, takes the longest-idle
    one and is served."""
    port = free_port()
    crowd: list[socket.socket] = []
    with box_service() as (target, _):
        config = proxy_config(tmp_path, port, max_connections=TOTAL, box_ports_allowed=[target])
        try:
            with running_proxy(config, port, tmp_path / "proxy.log"):
                for i in range(TOTAL):
                    sock = tunnel(port, f"127.0.1.{i + 1}", f"127.0.0.1:{target}")
                    assert sock is not None, i
                    crowd.append(sock)
                assert tunnel(port, "127.0.1.1", f"127.0.0.1:{target}") is None
                codes = browse(port, target)
                closed = sum(not still_open(sock) for sock in crowd)
        finally:
            close_all(crowd)
    assert codes == [200] * 10
    assert closed == 1  # the phone kept its one connection for its ten requests
