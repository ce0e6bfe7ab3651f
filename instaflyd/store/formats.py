"""Formats not understood: Instagram documents that looked like they held posts or users the
parsers could not read, counted by URL path and shape fingerprint, so they can be reported.

The table is bounded: one row per (path, fingerprint), at most MAX_ROWS rows (the least recently
seen go first). Paths are stored without their query string and with numeric segments (ids)
written as `{id}`; fingerprints hold key paths, never values (instaflyd.capture.fingerprint).
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass

from instaflyd.store.rows import record

MAX_ROWS = 200
MAX_PATH = 200
MAX_FINGERPRINT = 4000
_ID_SEGMENT = re.compile(r"(?<=/)[0-9][0-9_]*(?=/|$)")


@dataclass(frozen=True)
class UnreadFormat:
    """One format not understood: where it came from, its shape, how often and when seen."""

    path: str
    fingerprint: str
    count: int
    first_seen: float
    last_seen: float


def format_path(path: str) -> str:
    """`/api/v1/feed/user/123/?max_id=9` -> `/api/v1/feed/user/{id}/`: no query, no ids."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    return _ID_SEGMENT.sub("{id}", path)[:MAX_PATH]


def count_unread_format(
    conn: sqlite3.Connection, path: str, fingerprint: str, now: float | None = None
) -> None:
    """One more document of this shape from this path that was not (fully) understood."""
    now = time.time() if now is None else now
    conn.execute(
        "INSERT INTO unread_formats (path, fingerprint, count, first_seen, last_seen)"
        " VALUES (?, ?, 1, ?, ?)"
        " ON CONFLICT(path, fingerprint) DO UPDATE SET count = count + 1,"
        "   last_seen = MAX(last_seen, excluded.last_seen)",
        (format_path(path), fingerprint[:MAX_FINGERPRINT], now, now),
    )
    conn.execute(
        "DELETE FROM unread_formats WHERE rowid IN (SELECT rowid FROM unread_formats"
        " ORDER BY last_seen DESC, rowid DESC LIMIT -1 OFFSET ?)",
        (MAX_ROWS,),
    )


def unread_formats(conn: sqlite3.Connection, limit: int = MAX_ROWS) -> list[UnreadFormat]:
    """The formats not understood, most recently seen first."""
    rows = conn.execute(
        "SELECT path, fingerprint, count, first_seen, last_seen FROM unread_formats"
        " ORDER BY last_seen DESC, path LIMIT ?",
        (limit,),
    ).fetchall()
    return [record(UnreadFormat, row) for row in rows]
