"""Writing and reading posts and accounts: one row per post, counts updated by later captures."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Literal

from instaflyd.store.labels import LIKES_AND_IMAGE_KNOWN
from instaflyd.store.records import AccountRecord, PostRecord, image_file_name
from instaflyd.store.rows import record


def upsert_account(
    conn: sqlite3.Connection, account: AccountRecord, now: float | None = None
) -> bool:
    """Insert or update an account, keeping known values the record leaves out; True if new."""
    now = time.time() if now is None else now
    existed = conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account.id,)).fetchone()
    conn.execute(
        "INSERT INTO accounts (id, username, full_name, follower_count, first_seen, last_seen)"
        " VALUES (:id, :username, :full_name, :follower_count, :now, :now)"
        " ON CONFLICT(id) DO UPDATE SET"
        "   username = COALESCE(excluded.username, username),"
        "   full_name = COALESCE(excluded.full_name, full_name),"
        "   follower_count = COALESCE(excluded.follower_count, follower_count),"
        "   last_seen = excluded.last_seen",
        {
            "id": account.id,
            "username": account.username,
            "full_name": account.full_name,
            "follower_count": account.follower_count,
            "now": now,
        },
    )
    return existed is None


def upsert_post(
    conn: sqlite3.Connection, post: PostRecord, now: float | None = None, imported: bool = False
) -> Literal["new", "updated"]:
    """Insert or update a post (and a stub of its owner); register its image file names.

    A later capture updates the counts and `last_seen` (which never goes back: an old dump
    imported later does not make a post look older); `first_seen` stays. A value the record
    leaves out (None) never erases a known one. `imported`: seen in an imported dump, not by
    the proxy; a post the proxy has seen stays captured whatever is imported later.
    """
    now = time.time() if now is None else now
    if post.owner is not None:
        upsert_account(conn, post.owner, now)
    existed = conn.execute("SELECT 1 FROM posts WHERE id = ?", (post.id,)).fetchone() is not None
    conn.execute(
        "INSERT INTO posts (id, shortcode, owner_id, media_type, like_count, comment_count,"
        "                   taken_at, image_url, source, first_seen, last_seen, imported)"
        " VALUES (:id, :shortcode, :owner_id, :media_type, :like_count, :comment_count,"
        "         :taken_at, :image_url, :source, :now, :now, :imported)"
        " ON CONFLICT(id) DO UPDATE SET"
        "   shortcode = COALESCE(excluded.shortcode, shortcode),"
        "   owner_id = COALESCE(excluded.owner_id, owner_id),"
        "   media_type = excluded.media_type,"
        "   like_count = COALESCE(excluded.like_count, like_count),"
        "   comment_count = COALESCE(excluded.comment_count, comment_count),"
        "   taken_at = COALESCE(excluded.taken_at, taken_at),"
        "   image_url = COALESCE(excluded.image_url, image_url),"
        "   source = COALESCE(excluded.source, source),"
        "   last_seen = MAX(last_seen, excluded.last_seen),"
        "   imported = MIN(imported, excluded.imported)",
        {
            "id": post.id,
            "shortcode": post.shortcode,
            "owner_id": post.owner.id if post.owner else None,
            "media_type": post.media_type,
            "like_count": post.like_count,
            "comment_count": post.comment_count,
            "taken_at": post.taken_at,
            "image_url": post.image_urls[0] if post.image_urls else None,
            "source": post.source,
            "now": now,
            "imported": int(imported),
        },
    )
    conn.executemany(
        "INSERT OR IGNORE INTO image_names (name, post_id) VALUES (?, ?)",
        [(image_file_name(url), post.id) for url in post.image_urls],
    )
    return "updated" if existed else "new"


def post_for_image_name(conn: sqlite3.Connection, name: str) -> str | None:
    """The id of the post whose cover image has this CDN file name."""
    row = conn.execute("SELECT post_id FROM image_names WHERE name = ?", (name,)).fetchone()
    return None if row is None else row["post_id"]


def cover_area(conn: sqlite3.Connection, post_id: str) -> int | None:
    """The pixel count of the post's cover image; None when it has none."""
    row = conn.execute(
        "SELECT i.width * i.height FROM posts AS p JOIN images AS i"
        " ON i.sha256 = p.image_sha256 WHERE p.id = ?",
        (post_id,),
    ).fetchone()
    return None if row is None else int(row[0])


def larger_image_wins(area: int, current: int | None) -> bool:
    """The rule for a post's cover (and for an image waiting for its post): a variant replaces
    the one there only when it has more pixels; the first one is always taken."""
    return current is None or area > current


def attach_image(conn: sqlite3.Connection, post_id: str, sha256: str) -> bool:
    """Make the image the post's cover unless the post already has one at least as large
    (`larger_image_wins`). Returns True when the post's image changed. The image's row must
    exist; call in a transaction."""
    row = conn.execute("SELECT width * height FROM images WHERE sha256 = ?", (sha256,)).fetchone()
    if row is None or not larger_image_wins(int(row[0]), cover_area(conn, post_id)):
        return False
    cursor = conn.execute("UPDATE posts SET image_sha256 = ? WHERE id = ?", (sha256, post_id))
    return cursor.rowcount == 1


@dataclass(frozen=True)
class StoredPost:
    """A post as the store holds it, merged from every capture that described it."""

    id: str
    shortcode: str | None
    owner_id: str | None
    media_type: str
    like_count: int | None  # None when hidden, never 0 for hidden
    comment_count: int | None
    taken_at: int | None
    image_url: str | None
    image_sha256: str | None
    source: str | None
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class StoredAccount:
    """An account as the store holds it (the latest follower count seen)."""

    id: str
    username: str | None
    full_name: str | None
    follower_count: int | None
    first_seen: float
    last_seen: float


def get_post(conn: sqlite3.Connection, post_id: str) -> StoredPost | None:
    row = conn.execute(
        "SELECT id, shortcode, owner_id, media_type, like_count, comment_count, taken_at,"
        " image_url, image_sha256, source, first_seen, last_seen FROM posts WHERE id = ?",
        (post_id,),
    ).fetchone()
    return None if row is None else record(StoredPost, row)


def get_account(conn: sqlite3.Connection, account_id: str) -> StoredAccount | None:
    row = conn.execute(
        "SELECT id, username, full_name, follower_count, first_seen, last_seen"
        " FROM accounts WHERE id = ?",
        (account_id,),
    ).fetchone()
    return None if row is None else record(StoredAccount, row)


@dataclass(frozen=True)
class WaitingAccount:
    """An account whose profile, once opened through the proxy, labels this many posts."""

    id: str
    username: str | None
    waiting: int


def accounts_to_visit(conn: sqlite3.Connection, limit: int) -> list[WaitingAccount]:
    """The accounts whose follower count alone keeps the most posts from being labelled.

    Their photo posts have likes and an image, but the owner's follower count only comes with
    a profile response: opening the profile once labels all of them.
    """
    return [
        record(WaitingAccount, row)
        for row in conn.execute(
            # from the accounts still waiting (few), each one's posts by the owner index
            "SELECT a.id, a.username, (SELECT COUNT(*) FROM posts AS p"
            f"   WHERE p.owner_id = a.id AND {LIKES_AND_IMAGE_KNOWN}) AS waiting"
            " FROM accounts AS a"
            " WHERE COALESCE(a.follower_count, 0) <= 0 AND waiting > 0"
            " ORDER BY waiting DESC, a.username LIMIT ?",
            (limit,),
        )
    ]
