"""The proxy's per-client connection limit, in mitmproxy's own test harness."""

from __future__ import annotations

import asyncio

from mitmproxy import connection
from mitmproxy.proxy import server
from mitmproxy.test import taddons

from instaflyd.capture.compat import MITMPROXY_VERSION, idle_timeout, plain_os_error
from instaflyd.capture.limits import ConnectionLimits


def client(address: str, port: int) -> connection.Client:
    """A client connection as mitmproxy makes one: open (a CLOSED one is not counted)."""
    return connection.Client(peername=(address, port), sockname=("192.168.1.2", 8080),
                             state=connection.ConnectionState.OPEN)  # fmt: skip


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
    """mitmproxy 12 has the option `tcp_timeout`, mitmproxy 11 the module constant
    `server.TCP_TIMEOUT`: either way a new connection gets the configured delay."""
    before = getattr(server, "TCP_TIMEOUT", None)
    try:
        limits = ConnectionLimits(max_per_client=10, idle_seconds=41.6, count=lambda name: None)
        with taddons.context(limits) as context:
            asyncio.run(_running(limits))
            assert idle_timeout(context.options) == 42
            if "tcp_timeout" in context.options:  # mitmproxy 12: the option, not the constant
                assert context.options.tcp_timeout == 42
                assert getattr(server, "TCP_TIMEOUT", None) == before
            else:  # mitmproxy 11
                assert server.TCP_TIMEOUT == 42
    finally:
        if before is not None:
            server.TCP_TIMEOUT = before


def test_the_installed_mitmproxy_is_one_the_compat_module_knows() -> None:
    major = int(MITMPROXY_VERSION.split(".")[0])
    assert major in (11, 12)
    with taddons.context() as context:
        assert ("tcp_timeout" in context.options) == (major >= 12)


def test_python_313s_inner_errno_is_taken_out_of_a_bind_error() -> None:
    on_313 = (
        "[Errno 98] error while attempting to bind on address ('127.0.0.1', 8080):"
        " [errno 98] address already in use"
    )
    before_313 = (
        "[Errno 98] error while attempting to bind on address ('127.0.0.1', 8080):"
        " address already in use"
    )
    assert plain_os_error(on_313) == before_313
    assert plain_os_error(before_313) == before_313


async def _running(limits: ConnectionLimits) -> None:
    limits.running()
