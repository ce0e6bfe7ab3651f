"""Content-addressed image files: `images/<sha256[:2]>/<sha256>.<ext>`, written atomically.

The same bytes are stored once, whoever writes them and however often. A crash while writing
leaves at most a hidden temp file, never a half file under a real name.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from instaflyd.fsutil import atomic_write_bytes
from instaflyd.store.database import Database


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    ext: str
    path: Path
    created: bool  # False when identical bytes were already stored


class ImageFiles:
    """The image folder under data_dir."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str, ext: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.{ext}"

    def put(self, data: bytes, ext: str) -> StoredImage:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.path_for(sha256, ext)
        if path.is_file() and path.stat().st_size == len(data):
            return StoredImage(sha256, ext, path, created=False)
        atomic_write_bytes(path, data)
        return StoredImage(sha256, ext, path, created=True)

    def remove(self, images: list[tuple[str, str]]) -> None:
        """Delete the files of these (sha256, ext) images; a file already gone is fine."""
        for sha256, ext in images:
            self.path_for(sha256, ext).unlink(missing_ok=True)


def stored_image_ext(conn: sqlite3.Connection, sha256: str) -> str | None:
    """The extension an image is stored under; None when the store has no such image."""
    row = conn.execute("SELECT ext FROM images WHERE sha256 = ?", (sha256,)).fetchone()
    return None if row is None else row["ext"]


def record_image(
    conn: sqlite3.Connection, image: StoredImage, width: int, height: int, size: int
) -> bool:
    """Add the image's row if it is new; returns True when it was."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO images (sha256, ext, width, height, bytes, stored_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (image.sha256, image.ext, width, height, size, time.time()),
    )
    return cursor.rowcount == 1


_UNUSED = "NOT EXISTS (SELECT 1 FROM posts WHERE posts.image_sha256 = images.sha256)"


def forget_unused_images(
    conn: sqlite3.Connection, sha256s: list[str] | None = None
) -> list[tuple[str, str]]:
    """Delete the rows of images no post uses (smaller variants a larger one replaced).

    Only the given images, or all of them (None: stores from before replaced variants were
    removed). Returns their (sha256, ext); the caller removes the files with
    `ImageFiles.remove` once the transaction has committed, so that a rolled-back transaction
    never leaves a post whose image file is gone.
    """
    if sha256s is None:
        rows = conn.execute(f"SELECT sha256, ext FROM images WHERE {_UNUSED}").fetchall()
    else:
        rows = [
            row
            for sha256 in sha256s
            for row in conn.execute(
                f"SELECT sha256, ext FROM images WHERE sha256 = ? AND {_UNUSED}", (sha256,)
            )
        ]
    conn.executemany("DELETE FROM images WHERE sha256 = ?", [(row[0],) for row in rows])
    return [(row[0], row[1]) for row in rows]


def prune_unused_images(db: Database, files: ImageFiles) -> int:
    """Remove every image no post uses, row and file; returns how many went."""
    with db.transaction() as conn:
        unused = forget_unused_images(conn)
    files.remove(unused)
    return len(unused)


@dataclass(frozen=True)
class ImageFilesCheck:
    """The image files of the labelled posts, checked against what was stored: a file that is
    gone, or whose size is no longer the stored size (truncated, overwritten), cannot stand for
    its post: training leaves such posts out, and the page says how many."""

    checked: int  # labelled posts' images looked at
    missing: frozenset[str]  # sha256 of the images whose file is gone
    changed: frozenset[str]  # sha256 of the images whose file no longer has the stored size

    @property
    def unusable(self) -> frozenset[str]:
        return self.missing | self.changed


def check_labelled_image_files(conn: sqlite3.Connection, files: ImageFiles) -> ImageFilesCheck:
    """One stat per labelled post's image (no reading: cheap enough for every training run and
    a check every few hours on a box with 100,000 posts)."""
    rows = conn.execute(
        "SELECT DISTINCT l.image_sha256 AS sha256, l.image_ext AS ext, i.bytes AS bytes"
        " FROM labelled_posts l JOIN images i ON i.sha256 = l.image_sha256"
    ).fetchall()
    missing, changed = set(), set()
    for row in rows:
        try:
            size = files.path_for(row["sha256"], row["ext"]).stat().st_size
        except FileNotFoundError:
            missing.add(row["sha256"])
            continue
        if size != row["bytes"]:
            changed.add(row["sha256"])
    return ImageFilesCheck(len(rows), frozenset(missing), frozenset(changed))
