"""sd_notify by hand: datagrams on real Unix sockets, path and abstract namespace."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from instaflyd.daemon.sdnotify import Notifier, notify_socket_address, watchdog_interval


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, str(path)
    sock.close()


def messages(sock: socket.socket) -> list[str]:
    sock.settimeout(0.2)
    out = []
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except TimeoutError:
        return out


def test_ready_status_stopping_each_one_datagram(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("proxy on :8080;\n 3 posts")
    assert notifier.status("12 posts")
    assert not notifier.status("12 posts")  # unchanged: not sent again
    assert notifier.stopping("stopping")
    assert messages(sock) == [
        f"READY=1\nSTATUS=proxy on :8080; 3 posts\nMAINPID={os.getpid()}",
        "STATUS=12 posts",
        "STOPPING=1\nSTATUS=stopping",
    ]


def test_abstract_namespace_socket() -> None:
    name = f"instafly-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2)
        assert notify_socket_address("@" + name) == b"\0" + name.encode()
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).status("hello")
        assert sock.recv(100) == b"STATUS=hello"


def test_watchdog_every_half_of_watchdog_usec(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier(env)
    assert notifier.watchdog_every == 2.0
    sent = [notifier.watchdog(now) for now in (100.0, 101.0, 101.9, 102.0, 103.5, 104.1)]
    assert sent == [True, False, False, True, False, True]
    assert messages(sock) == ["WATCHDOG=1"] * 3


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "nonsense"}, None),
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected


def test_without_systemd_nothing_is_sent(tmp_path: Path) -> None:
    assert not Notifier({}).enabled
    assert Notifier({}).ready("x") is False
    assert Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled is False
    # A socket that went away: the daemon keeps going, the call says it failed.
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).status("x") is False
