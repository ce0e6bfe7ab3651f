"""A photo replaced in the drop folder by another of the same name and byte size (a re-export,
a copy that keeps the old file's times) is queued again for its new content.

The watcher knows a file it has hashed by (size, mtime, ctime), and a scan after a restart
skips a file whose job was queued after its ctime: a replacement keeps the size and may keep
the mtime (`cp -p`, `rsync -t`, Samba setting the times), but any write or rename changes the
ctime, which no tool can set back. The queue itself is one job per content (SHA-256), so the
new content gets a job of its own. Real watchdog observer, real folder, real SQLite.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import jpeg_bytes, wait_until

from instaflyd.config import Config, build_config
from instaflyd.jobs import file_sha256
from instaflyd.watch.watcher import DropWatcher


def two_photos_of_one_size() -> tuple[bytes, bytes]:
    """Two different JPEGs padded to the same byte size (bytes after the end are ignored)."""
    first, second = jpeg_bytes(64, 64, 1), jpeg_bytes(64, 64, 2)
    size = max(len(first), len(second))
    first, second = first.ljust(size, b"\0"), second.ljust(size, b"\0")
    assert first != second
    return first, second


def overwritten_in_place(path: Path, content: bytes) -> None:
    """Written over, then its old mtime set back (what `cp -p` onto it does)."""
    before = path.stat()
    path.write_bytes(content)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def renamed_over(path: Path, content: bytes) -> None:
    """Written under a temp name with the old mtime, then renamed over it (an editor's save)."""
    before = path.stat()
    temp = path.with_name(".beach.jpg.part")
    temp.write_bytes(content)
    os.utime(temp, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(temp, path)


def jobs(config: Config) -> list[tuple[str, str]]:
    with sqlite3.connect(config.db_path) as conn:
        rows = conn.execute("SELECT input_path, sha256 FROM jobs ORDER BY id").fetchall()
    return [(Path(path).name, sha) for path, sha in rows]


def drop_config(tmp_path: Path) -> Config:
    config = build_config(
        {"watch": {"drop_dir": "drop", "output_dir": "enhanced", "settle_seconds": 0.3}},
        data_dir=tmp_path,
    )
    config.watch.drop_dir.mkdir(parents=True)
    return config


@pytest.mark.parametrize("replace", [overwritten_in_place, renamed_over])
def test_a_photo_replaced_by_one_of_the_same_size_and_mtime_is_queued_again(
    tmp_path: Path, replace: Callable[[Path, bytes], None]
) -> None:
    config = drop_config(tmp_path)
    first, second = two_photos_of_one_size()
    photo = config.watch.drop_dir / "beach.jpg"
    queued = threading.Event()
    watcher = DropWatcher(config.watch, config.db_path, on_queued=queued.set)
    watcher.start()
    try:
        photo.write_bytes(first)
        wait_until(lambda: len(jobs(config)) == 1, 10, "the photo queued")
        before = photo.stat()
        queued.clear()
        replace(photo, second)
        after = photo.stat()
        assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
        wait_until(lambda: len(jobs(config)) == 2, 10, "the new content queued")
        assert queued.is_set()  # the worker is woken for it
    finally:
        watcher.stop()
    assert jobs(config) == [
        ("beach.jpg", hashlib.sha256(first).hexdigest()),
        ("beach.jpg", file_sha256(photo)),
    ]


def test_a_photo_replaced_while_the_worker_was_down_is_queued_at_the_next_start(
    tmp_path: Path,
) -> None:
    config = drop_config(tmp_path)
    first, second = two_photos_of_one_size()
    photo = config.watch.drop_dir / "beach.jpg"
    photo.write_bytes(first)
    watcher = DropWatcher(config.watch, config.db_path)
    watcher.start()
    try:
        wait_until(lambda: len(jobs(config)) == 1, 10, "the photo queued")
    finally:
        watcher.stop()
    overwritten_in_place(photo, second)  # while no watcher runs
    again = DropWatcher(config.watch, config.db_path)
    again.start()  # its first scan finds the folder as it is now
    try:
        wait_until(lambda: len(jobs(config)) == 2, 10, "the new content queued after a restart")
    finally:
        again.stop()
    assert [sha for _, sha in jobs(config)] == [
        hashlib.sha256(first).hexdigest(),
        file_sha256(photo),
    ]


@pytest.mark.slow  # waits to see that nothing happens
def test_a_photo_left_as_it_was_is_not_queued_again_after_a_restart(tmp_path: Path) -> None:
    config = drop_config(tmp_path)
    photo = config.watch.drop_dir / "beach.jpg"
    photo.write_bytes(jpeg_bytes(64, 64, 1))
    for _ in range(2):
        watcher = DropWatcher(config.watch, config.db_path)
        watcher.start()
        try:
            wait_until(lambda: len(jobs(config)) == 1, 10, "the photo queued")
            # Long enough for the start's scan to have settled it: nothing more is queued.
            threading.Event().wait(1.0)
        finally:
            watcher.stop()
    assert len(jobs(config)) == 1
