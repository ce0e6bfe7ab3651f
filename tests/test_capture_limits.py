"""The proxy's per-client connection limit, in mitmproxy's own test harness."""

from __future__ import annotations

import asyncio

from mitmproxy import connection
from mitmproxy.proxy import server
from mitmproxy.test import taddons

from instaflyd.capture.limits import ConnectionLimits


def client(address: str, port: int) -> connection.Client:
    return connection.Client(peername=(address, port), sockname=("192.168.1.2", 8080))


def test_a_client_beyond_its_connection_limit_is_closed_and_counted() -> None:
    counted: list[str] = []
    limits = ConnectionLimits(max_per_client=2, idle_seconds=30, count=counted.append)
    phone = [client("192.168.1.20", port) for port in range(50000, 50004)]
    tv = client("192.168.1.30", 40000)
    with taddons.context(limits):
        for each in (*phone[:3], tv):
            limits.client_connected(each)
        assert [each.error for each in (*phone[:3], tv)] == [
            None,
            None,
            "more than 2 connections from 192.168.1.20",
            None,  # another device is not limited by the phone's connections
        ]
        assert counted == ["connections_refused"]
        for each in phone[:3]:  # the refused one is closed too: it must not free a place
            limits.client_disconnected(each)
        assert limits.open_connections("192.168.1.20") == 0
        limits.client_connected(phone[3])
        assert phone[3].error is None
        assert limits.open_connections("192.168.1.20") == 1


def test_the_idle_timeout_becomes_mitmproxys_inactivity_watchdog_delay() -> None:
    before = server.TCP_TIMEOUT
    try:
        limits = ConnectionLimits(max_per_client=10, idle_seconds=42, count=lambda name: None)
        with taddons.context(limits):
            asyncio.run(_running(limits))
            assert server.TCP_TIMEOUT == 42
    finally:
        server.TCP_TIMEOUT = before


async def _running(limits: ConnectionLimits) -> None:
    limits.running()
