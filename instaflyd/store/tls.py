"""TLS handshake failures by host: how the status page tells that the Instagram app pins its
certificates and refuses the proxy.

The table is bounded: a client chooses the name it sends (1,000 random `*.instagram.com` names
made 1,000 rows), so at most MAX_HOSTS names get a row of their own; failures for any further
name are counted together under OTHER_HOSTS. A name is cut to MAX_HOST_CHARS.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from instaflyd.store.rows import record

MAX_HOSTS = 200  # names with a row of their own (one more row: OTHER_HOSTS)
MAX_HOST_CHARS = 253  # the longest DNS name
OTHER_HOSTS = "(other names)"


@dataclass(frozen=True)
class TlsFailure:
    """Failed TLS handshakes with clients for one host."""

    host: str
    count: int
    first_seen: float
    last_seen: float
    last_error: str | None


def count_tls_failure(
    conn: sqlite3.Connection, host: str, error: str, now: float | None = None
) -> None:
    """One more failed TLS handshake with a client for `host` (e.g. a pinning app)."""
    now = time.time() if now is None else now
    host = host[:MAX_HOST_CHARS]
    if host != OTHER_HOSTS:
        known = conn.execute("SELECT 1 FROM tls_failures WHERE host = ?", (host,)).fetchone()
        if known is None:
            (rows,) = conn.execute("SELECT COUNT(*) FROM tls_failures").fetchone()
            if rows >= MAX_HOSTS:
                host = OTHER_HOSTS
    conn.execute(
        "INSERT INTO tls_failures (host, count, first_seen, last_seen, last_error)"
        " VALUES (?, 1, ?, ?, ?)"
        " ON CONFLICT(host) DO UPDATE SET count = count + 1, last_seen = excluded.last_seen,"
        "   last_error = excluded.last_error",
        (host, now, now, error[:500]),
    )


def tls_failures(conn: sqlite3.Connection, limit: int = 50) -> list[TlsFailure]:
    """The hosts with the most failures first."""
    rows = conn.execute(
        "SELECT host, count, first_seen, last_seen, last_error FROM tls_failures"
        " ORDER BY count DESC, host LIMIT ?",
        (limit,),
    )
    return [record(TlsFailure, row) for row in rows]
