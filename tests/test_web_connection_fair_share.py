"""The page's connections when a crowd holds every one of them with one connection per address
(issue 20), for real: the real app on the real waitress set-up, its total lowered to 64 so
that 64 addresses (127.0.1.x) fill it with one idle connection each. A second connection of a
crowd address is refused (equals do not take turns), but the household's phone, holding none,
still gets every answer: each time, the longest-idle connection of the crowd makes room.
Before, a newcomer needed two fewer than the address holding the most, so a crowd of single
connections (640 addresses with the page's real total) kept the household out.
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import pytest
from helpers import wait_until
from support_capture import still_open
from support_web import page_config, serving

from instaflyd.config import load_config
from instaflyd.web import server

TOTAL = 64
HOUSEHOLD = "127.0.0.2"


def connect(port: int, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


def healthz(port: int) -> bytes:
    with connect(port, HOUSEHOLD) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        try:
            return sock.recv(4096)
        except OSError as exc:
            return repr(exc).encode()


@pytest.mark.slow
def test_a_crowd_of_single_connections_still_lets_the_household_in(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(server, "TOTAL_CONNECTIONS", TOTAL)
    config = load_config(page_config(tmp_path))
    crowd: list[socket.socket] = []
    try:
        with serving(config) as web:
            port = int(web.address.rsplit(":", 1)[1])
            for i in range(TOTAL):
                crowd.append(connect(port, f"127.0.1.{i + 1}"))
                time.sleep(0.005)  # one at a time, as the page's loop accepts them
            time.sleep(0.5)
            assert all(still_open(sock) for sock in crowd)
            # Full: a crowd address's second connection is refused, not swapped.
            second = connect(port, "127.0.1.1")
            wait_until(lambda: not still_open(second), 5, "the second connection refused")
            assert still_open(crowd[0])
            answers = [healthz(port) for _ in range(5)]
            closed = sum(not still_open(sock) for sock in crowd)
    finally:
        for sock in crowd:
            with contextlib.suppress(OSError):
                sock.close()
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 5, answers
    assert 1 <= closed <= 5, closed  # one of the crowd's for each of the phone's connections
