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
