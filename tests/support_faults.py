"""Real faults for tests: a small tmpfs that fills up, a read-only bind mount.

Both need the right to mount (root, as in CI's container); without it the test is skipped, or
fails under INSTAFLY_STRICT=1.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*argv: str) -> None:
    result = subprocess.run(["mount", *argv], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        message = f"cannot mount ({' '.join(argv)}): {result.stderr.strip()}"
        if os.environ.get("INSTAFLY_STRICT") == "1":
            pytest.fail(message)
        pytest.skip(message)


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


@contextlib.contextmanager
def small_tmpfs(target: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of `megabytes` MB mounted on `target` (created) for the block."""
    target.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={megabytes}m,mode=0755", "tmpfs", str(target))
    try:
        yield target
    finally:
        _umount(target)


@contextlib.contextmanager
def read_only(target: Path) -> Iterator[Path]:
    """`target` bind-mounted read-only on itself for the block (writable again after it)."""
    _mount("--bind", str(target), str(target))
    try:
        _mount("-o", "remount,ro,bind", str(target))
        yield target
    finally:
        _umount(target)


def fill(folder: Path, leave_bytes: int = 0) -> Path:
    """Fill the file system of `folder` up to `leave_bytes` free; returns the filler file."""
    filler = folder / "filler.bin"
    stats = os.statvfs(folder)
    size = max(0, stats.f_bavail * stats.f_frsize - leave_bytes)
    with filler.open("wb") as out:
        chunk = b"\0" * (1 << 20)
        while size > 0:
            try:
                size -= out.write(chunk[: min(len(chunk), size)])
            except OSError:  # ENOSPC: full
                break
    return filler
