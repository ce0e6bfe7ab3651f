"""Read-only counts of the store, for the status document and the training schedule."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from instaflyd.store.rows import record

COUNTED_TABLES = ("posts", "accounts", "images")  # rows kept in row_counts (migration v6)


def count(conn: sqlite3.Connection, table: str) -> int:
    """Rows of a table: of posts, accounts and images as triggers keep them, not recounted."""
    if table in COUNTED_TABLES:
        row = conn.execute("SELECT value FROM row_counts WHERE name = ?", (table,)).fetchone()
        return int(row[0])
    return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def labelled_count(conn: sqlite3.Connection) -> int:
    """Rows of the `labelled_posts` view, from the per-owner counts triggers keep (migration v6):
    counting the view itself joins every post, hundreds of milliseconds on a big store."""
    return int(conn.execute("SELECT COALESCE(SUM(labelled), 0) FROM owner_labels").fetchone()[0])


def labelled_owner_count(conn: sqlite3.Connection) -> int:
    """Distinct owners in the `labelled_posts` view (kept like `labelled_count`)."""
    return int(conn.execute("SELECT COUNT(*) FROM owner_labels WHERE labelled > 0").fetchone()[0])


def last_capture_time(conn: sqlite3.Connection) -> float | None:
    """When the proxy last saw a post (Unix time), None before the first; posts only ever seen
    in an imported dump do not count (their times are the dump's)."""
    value = conn.execute("SELECT MAX(last_seen) FROM posts WHERE imported = 0").fetchone()[0]
    return None if value is None else float(value)


@dataclass(frozen=True)
class LabelledPostLine:
    """A labelled post with its owner's username, for the status page."""

    id: str
    username: str | None
    like_count: int
    follower_count: int
    like_rate: float
    image_sha256: str


def recent_labelled_posts(conn: sqlite3.Connection, limit: int) -> list[LabelledPostLine]:
    """The newest labelled posts with their owner's username, newest first."""
    rows = conn.execute(
        "SELECT l.id, a.username, l.like_count, l.follower_count, l.like_rate, l.image_sha256"
        " FROM labelled_posts AS l JOIN accounts AS a ON a.id = l.owner_id"
        " ORDER BY l.first_seen DESC, l.id DESC LIMIT ?",
        (limit,),
    )
    return [record(LabelledPostLine, row) for row in rows]
