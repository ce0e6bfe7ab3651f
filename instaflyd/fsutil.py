"""Crash-safe file writes: write a hidden temp file in the target's folder, fsync, rename.

A reader (or a crash at any moment) sees either the old file or the complete new one, never a
half-written file. Every process in Instafly writes files through these helpers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_PREFIX = ".tmp-"


def current_umask() -> int:
    """The process's umask, read without changing it (other threads may be creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def default_mode() -> int:
    """What a new file gets under the process's umask (0640 under the unit's UMask=0027)."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_writer(path: Path, mode: int | None = None) -> Iterator[BinaryIO]:
    """Open a temp file beside `path`; on success it is fsynced and renamed onto `path`.

    The file gets `mode`, or by default what the umask gives a new file (photos and models
    0640 under the unit's UMask=0027), never more open than the process was told."""
    mode = default_mode() if mode is None else mode
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=path.suffix, dir=path.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    with atomic_writer(path, mode) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str, mode: int | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def remove_stale_temps(folder: Path, min_age_seconds: float = 3600) -> int:
    """Delete temp files a crashed writer left in `folder` (not recursive); returns how many.

    Only temps older than `min_age_seconds` go: a younger one may belong to a live writer.
    """
    removed = 0
    cutoff = time.time() - min_age_seconds
    with contextlib.suppress(FileNotFoundError):
        for entry in folder.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if entry.name.startswith(TEMP_PREFIX) and entry.stat().st_mtime <= cutoff:
                    entry.unlink()
                    removed += 1
    return removed


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Build a folder under a hidden temp name; on success fsync it and rename it to `path`.

    `path` must not exist yet. Readers (and a crash at any moment) see either no folder or the
    complete one; a failure removes the temp folder, a crash leaves it hidden.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=path.parent))
    os.chmod(temp, 0o777 & ~current_umask())  # mkdtemp makes it 0700; a folder gets the umask's
    try:
        yield temp
        for entry in temp.rglob("*"):
            if entry.is_file():
                with entry.open("rb") as handle:
                    os.fsync(handle.fileno())
        _fsync_dir(temp)
        os.rename(temp, path)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    _fsync_dir(path.parent)


def file_inside(path: str | Path | None, roots: Iterable[Path]) -> Path | None:
    """`path` resolved (symlinks and ".."), if it is an existing file inside one of `roots`;
    else None. What a row or a URL names is served or shown only through this check."""
    if not path:
        return None
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        return None
    return resolved if resolved.is_file() else None
