"""A connection the proxy has closed does not count against its device, even before mitmproxy
calls `client_disconnected` for it (issue 20).

On mitmproxy 12 / Python 3.13 a phone whose connection the proxy closed (after an HTTP/1.0
answer) connects again before the closed one's `client_disconnected`: counted as still held,
the phone was refused from a full proxy on its second request. Here, in mitmproxy's own test
harness, the closed connection is marked CLOSED as mitmproxy does, without the hook.
"""

from __future__ import annotations

from mitmproxy import connection
from mitmproxy.test import taddons

from instaflyd.capture.limits import ConnectionLimits

PHONE = "192.168.1.20"
CROWD = ["192.168.1.30", "192.168.1.31", "192.168.1.32"]


def client(address: str, port: int) -> connection.Client:
    return connection.Client(
        peername=(address, port),
        sockname=("192.168.1.2", 8080),
        state=connection.ConnectionState.OPEN,
    )


def full_proxy(counted: list[str]) -> tuple[ConnectionLimits, list[connection.Client]]:
    """A proxy of 4 connections held by 3 crowd addresses and the phone (the last), one each."""
    limits = ConnectionLimits(max_per_client=200, idle_seconds=30, count=counted.append,
                              max_total=4)  # fmt: skip
    held = [*(client(a, 40000) for a in CROWD), client(PHONE, 50000)]
    for each in held:
        limits.client_connected(each)
        assert each.error is None
    return limits, held


def test_a_phone_reconnecting_before_its_closed_connection_is_disconnected_gets_in() -> None:
    counted: list[str] = []
    limits, held = full_proxy(counted)
    phone = held[-1]
    with taddons.context(limits):
        phone.state = connection.ConnectionState.CLOSED  # the proxy closed it; no hook yet
        again = client(PHONE, 50001)
        limits.client_connected(again)
        assert again.error is None
        assert counted == []  # nobody was refused, and nobody's connection closed for it
        assert limits.open_connections(PHONE) == 1
        limits.client_disconnected(phone)  # the hook comes at last: counted once, not twice
        assert limits.open_connections(PHONE) == 1
        limits.client_disconnected(again)
        assert limits.open_connections(PHONE) == 0


def test_a_half_closed_connection_still_counts() -> None:
    """A client that closed only its sending side can hold the connection as long as an open
    one: the full proxy still refuses the phone's second (equals do not take turns)."""
    counted: list[str] = []
    limits, held = full_proxy(counted)
    phone = held[-1]
    with taddons.context(limits):
        phone.state = connection.ConnectionState.CAN_WRITE
        again = client(PHONE, 50001)
        limits.client_connected(again)
        assert again.error == "all 4 connections of the proxy are open"
        assert counted == ["connections_refused"]
        assert limits.open_connections(PHONE) == 1


def test_closed_connections_of_others_make_room_before_any_is_evicted() -> None:
    """Near full, the crowd's connections already closing are let go first: a newcomer then
    gets in without closing anyone's open connection."""
    counted: list[str] = []
    limits, held = full_proxy(counted)
    with taddons.context(limits):
        closing = client(CROWD[0], 40001)
        limits.client_connected(closing)  # a second for the first crowd address: refused
        assert closing.error is not None
        counted.clear()
        held[1].state = connection.ConnectionState.CLOSED  # CROWD[1]'s
        newcomer = client("192.168.1.40", 30000)
        limits.client_connected(newcomer)
        assert newcomer.error is None
        assert counted == []
        assert limits.open_connections(CROWD[1]) == 0
