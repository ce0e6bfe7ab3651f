"""Names a client makes up cannot make the proxy sign a certificate each, nor the store keep a
row each (issue 20, item 7), for real.

A LAN device opens 150 TLS connections through the real proxy, each naming a new random
`*.instagram.com`: the first NEW_NAMES are intercepted (the proxy signs a certificate for each),
the rest pass through undecrypted to the server they asked for, and are counted. Before, every
one got its certificate. And 1,000 TLS failures for random names leave at most MAX_HOSTS + 1
rows: the table had a row per name (+4.2 MB for 1,000).
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import ssl
from pathlib import Path

import pytest
from helpers import free_port, wait_until
from support_capture import InstagramStandIn, proxy_config, running_proxy

from instaflyd.capture.cert_budget import NEW_NAMES
from instaflyd.store import Database
from instaflyd.store.tls import MAX_HOSTS, OTHER_HOSTS, count_tls_failure, tls_failures


def peer_certificate(proxy_port: int, target: str, name: str) -> bytes:
    """CONNECT `target`, a TLS handshake naming `name`, accepting any certificate: the one got."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=30) as sock:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 200"), reply
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with context.wrap_socket(sock, server_hostname=name) as tls:
            return tls.getpeercert(binary_form=True) or b""


@pytest.mark.slow
def test_random_names_get_a_certificate_only_within_the_budget(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "data" / "instafly.db"
    with InstagramStandIn(tmp_path / "origin") as origin:
        config = proxy_config(tmp_path, port, box_ports_allowed=[origin.port])
        with running_proxy(config, port, tmp_path / "proxy.log"):
            target = f"127.0.0.1:{origin.port}"
            made = [
                peer_certificate(port, target, f"r{n}x.instagram.com") != origin.leaf_der
                for n in range(150)
            ]
            assert made == [True] * NEW_NAMES + [False] * (150 - NEW_NAMES)
            # A name it has seen is still intercepted, budget spent or not.
            assert peer_certificate(port, target, "r0x.instagram.com") != origin.leaf_der

            def refused() -> int:
                with contextlib.closing(sqlite3.connect(db)) as conn:
                    row = conn.execute(
                        "SELECT value FROM counters WHERE name = 'certificates_refused'"
                    ).fetchone()
                return row[0] if row else 0

            wait_until(lambda: refused() == 150 - NEW_NAMES, 20, "the refusals counted")


def test_tls_failures_for_random_names_stay_within_their_rows(tmp_path: Path) -> None:
    with Database(tmp_path / "instafly.db") as db:
        with db.transaction() as conn:
            for n in range(1000):
                count_tls_failure(conn, f"r{n}.instagram.com" + "x" * 400, "unknown ca")
            count_tls_failure(conn, "r0.instagram.com" + "x" * 400, "unknown ca")
        rows = tls_failures(db.conn, limit=10_000)
        (stored,) = db.conn.execute("SELECT COUNT(*) FROM tls_failures").fetchone()
    assert stored == MAX_HOSTS + 1
    by_host = {row.host: row.count for row in rows}
    assert by_host[OTHER_HOSTS] == 1000 - MAX_HOSTS
    assert sum(by_host.values()) == 1001  # every failure counted, none lost
    assert max(len(host) for host in by_host) == 253
    assert by_host[("r0.instagram.com" + "x" * 400)[:253]] == 2
