"""Every post as a CSV row, for people who want the data in a spreadsheet or a notebook."""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Iterator
from typing import TextIO

from instaflyd.store.images import ImageFiles

EXPORT_COLUMNS = (
    "id", "shortcode", "owner_id", "username", "media_type", "like_count",
    "follower_count", "like_rate", "taken_at", "image_path",
)  # fmt: skip


def export_rows(conn: sqlite3.Connection, images: ImageFiles) -> Iterator[dict[str, object]]:
    """One dict per post; like_rate only where both counts are known and followers > 0."""
    query = (
        "SELECT p.id, p.shortcode, p.owner_id, a.username, p.media_type, p.like_count,"
        "       a.follower_count, p.taken_at, p.image_sha256, i.ext"
        " FROM posts AS p"
        " LEFT JOIN accounts AS a ON a.id = p.owner_id"
        " LEFT JOIN images AS i ON i.sha256 = p.image_sha256"
        " ORDER BY p.first_seen, p.id"
    )
    for row in conn.execute(query):
        likes, followers = row["like_count"], row["follower_count"]
        known = likes is not None and followers
        yield {
            "id": row["id"],
            "shortcode": row["shortcode"],
            "owner_id": row["owner_id"],
            "username": row["username"],
            "media_type": row["media_type"],
            "like_count": likes,
            "follower_count": followers,
            "like_rate": likes / followers if known else None,
            "taken_at": row["taken_at"],
            "image_path": images.path_for(row["image_sha256"], row["ext"]) if row["ext"] else None,
        }


def write_csv(conn: sqlite3.Connection, images: ImageFiles, out: TextIO) -> int:
    """Write the header and every post; returns the number of posts written."""
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    written = 0
    for row in export_rows(conn, images):
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
        written += 1
    return written
