"""What counts as one client for the per-client budgets (issue 20): an IPv4 address, an IPv6
/64 (one device can take any number of its addresses), an IPv4-mapped IPv6 address as its IPv4
address, an IPv6 link-local address as itself (every device's is in fe80::/64)."""

from __future__ import annotations

import pytest
from mitmproxy import connection
from mitmproxy.test import taddons

from instaflyd.capture.limits import ConnectionLimits
from instaflyd.clients import client_key
from instaflyd.web.throttle import FREE_TRIES, LoginThrottle


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.168.1.20", "192.168.1.20"),
        ("10.0.0.2", "10.0.0.2"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::FFFF", "2001:db8:1:2::/64"),  # however it is spelled
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),  # the next /64: another client
        ("fd00:20::2", "fd00:20::/64"),
        ("::1", "::/64"),
        ("::ffff:192.168.1.20", "192.168.1.20"),  # a dual-stack socket's view of IPv4
        ("::ffff:c0a8:114", "192.168.1.20"),
        ("fe80::1", "fe80::1"),  # link-local: each device's own, all in fe80::/64
        ("fe80::1%eth0", "fe80::1"),
        ("2001:db8:1:2::1%eth0", "2001:db8:1:2::/64"),
        ("unix:/run/x.sock", "unix:/run/x.sock"),  # not an address: itself
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_an_address_maps_to_its_clients_key(address: str | None, key: str) -> None:
    assert client_key(address) == key


def test_the_proxy_counts_the_addresses_of_one_64_as_one_client() -> None:
    counted: list[str] = []
    limits = ConnectionLimits(max_per_client=3, idle_seconds=30, count=counted.append)
    same = [f"2001:db8:1:2::{n:x}" for n in range(1, 5)]  # four addresses, one /64
    box = ("2001:db8:1:2::ff", 8080)
    clients = [
        connection.Client(peername=(a, 50000), sockname=box, state=connection.ConnectionState.OPEN)
        for a in [*same, "2001:db8:1:3::1", "::ffff:192.168.1.20", "192.168.1.20"]
    ]
    with taddons.context(limits):
        for each in clients:
            limits.client_connected(each)
        assert [each.error for each in clients] == [
            None,
            None,
            None,
            "more than 3 connections from 2001:db8:1:2::/64",
            None,  # another /64
            None,
            None,  # the same IPv4 device as ::ffff:192.168.1.20: its second connection
        ]
        assert limits.open_connections("2001:db8:1:2::99") == 3
        assert limits.open_connections("192.168.1.20") == 2
        assert counted == ["connections_refused"]


def test_the_password_throttle_holds_a_64_to_one_count() -> None:
    """Wrong passwords from new addresses of the same /64 do not start a fresh count."""
    throttle = LoginThrottle()
    for n in range(FREE_TRIES):
        assert throttle.attempt(f"2001:db8:1:2::{n + 1:x}", now=100.0) == 0
    assert throttle.attempt("2001:db8:1:2::beef", now=100.0) == 0  # the first paid one
    assert throttle.attempt("2001:db8:1:2::cafe", now=100.0) > 0  # must wait, new address
    assert throttle.attempt("2001:db8:1:3::1", now=100.0) == 0  # another /64 is not slowed
