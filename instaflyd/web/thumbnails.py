"""Previews of captured images and drop-folder photos for the page, in a few fixed widths,
drawn within a memory budget and kept on disk within a byte budget.

- **Widths.** Only `WIDTHS` are drawn (the page's `srcset` offers them, `srcset(url)` writes
  it); any other width is refused, so a client cannot make the box draw and keep one
  thumbnail per number it sends.
- **Memory.** A thumbnail is drawn in the page's process only when decoding it holds at most
  `IN_PROCESS_BYTES` (a phone's JPEG decodes at a fraction of its size, see
  `instaflyd.imaging_thumbnail`); anything bigger (a 10,000 x 10,000 PNG is 400 MB decoded) is
  drawn by a short-lived child process limited to `CHILD_MEMORY_BYTES`, one at a time, and an
  image that would need more than that (a 100 MP picture with transparency) gets no preview,
  said from its header without decoding it. At most
  `MAX_DRAWING` thumbnails are drawn at once and at most `MAX_WAITING` requests wait for one;
  beyond that the answer is `Busy` at once, so previews never hold every request thread.
- **Disk.** Each thumbnail is kept in `data_dir/thumbnails/` under a hash of its file's path,
  size, modification time and width; the folder is trimmed to `CACHE_BYTES`, oldest first.
  An image that cannot be previewed is remembered too (in memory, bounded), so asking again
  costs nothing.

Only files inside the folders the caller allows are ever read: the path is resolved (symlinks
and "..") first, so a crafted job row or URL cannot make the page serve another file. Images are
opened through `instaflyd.imaging.open_image` with the caller's pixel limit, so a picture that
claims too many pixels is refused before it is decoded.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from instaflyd.fsutil import TEMP_PREFIX, atomic_write_bytes, file_inside, remove_stale_temps
from instaflyd.imaging import TooManyPixels
from instaflyd.imaging_thumbnail import (
    CHILD_BASE_BYTES,
    CHILD_MEMORY_BYTES,
    EXIT_TOO_MANY_PIXELS,
    TooLargeHere,
    render_thumbnail,
)

WIDTHS = (360, 720, 1080)  # the page's srcset; the first is the default
DEFAULT_WIDTH = WIDTHS[0]
IN_PROCESS_BYTES = 24 * 1024 * 1024  # decoded pixels the page's own process may hold for one
MAX_DRAWING = 2  # thumbnails drawn at once (the child, for big ones, one at a time among them)
MAX_WAITING = 4  # requests drawing or waiting to; beyond that: Busy
WAIT_SECONDS = 20.0
CHILD_SECONDS = 60.0
CACHE_BYTES = 128 * 1024 * 1024
CACHE_FOLDER = "thumbnails"
FAILURES_KEPT = 1024
REFRESH_AFTER = 3600.0  # a kept thumbnail's time is renewed when read, at most this often


class NotAllowed(Exception):
    """The file is outside the allowed folders, or is not there."""


class NoPreview(Exception):
    """The file cannot be previewed (not an image, too many pixels, too big to draw)."""


class Busy(Exception):
    """Too many previews are being drawn right now; ask again in a moment."""


def allowed_file(path: str | Path, roots: Iterable[Path]) -> Path:
    """`path` resolved, if it is an existing file inside one of `roots`; else NotAllowed."""
    found = file_inside(path, roots)
    if found is None:
        raise NotAllowed(f"{path} is not a file inside the allowed folders")
    return found


def width_from(value: str | None) -> int:
    """The width a request asked for (`?w=`), if it is one of WIDTHS; else NotAllowed."""
    if value is None or value == "":
        return DEFAULT_WIDTH
    if value.isdigit() and int(value) in WIDTHS:
        return int(value)
    raise NotAllowed(f"width {value[:20]!r} is not one of {WIDTHS}")


def srcset(url: str) -> str:
    """The `srcset` attribute for a thumbnail URL: one candidate per width."""
    join = "&" if "?" in url else "?"
    return ", ".join(f"{url}{join}w={width} {width}w" for width in WIDTHS)


class Thumbnails:
    """The drawing budget and the disk cache of one page."""

    def __init__(self, folder: Path, max_bytes: int = CACHE_BYTES) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.busy = 0  # requests turned away while MAX_WAITING were drawing or waiting
        self.drawn = 0
        self.drawn_by_child = 0
        self._drawing = threading.BoundedSemaphore(MAX_DRAWING)
        self._child = threading.Lock()
        self._lock = threading.Lock()
        self._waiting = 0
        self._failures: OrderedDict[str, str] = OrderedDict()
        self._sizes: OrderedDict[Path, int] | None = None  # kept files, oldest first
        self._total = 0  # their bytes

    def jpeg(self, path: Path, width: int, max_pixels: int) -> bytes:
        """The thumbnail of `path` (already checked by `allowed_file`) at `width`.

        Raises NoPreview, Busy, or OSError when the file went away."""
        if width not in WIDTHS:
            raise NotAllowed(f"width {width} is not one of {WIDTHS}")
        stat = path.stat()
        key = hashlib.sha256(
            f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{width}\0{max_pixels}".encode()
        ).hexdigest()
        kept = self._read(key)
        if kept is not None:
            return kept
        with self._lock:
            if key in self._failures:
                raise NoPreview(self._failures[key])
            if self._waiting >= MAX_WAITING:
                self.busy += 1
                raise Busy(f"{MAX_WAITING} previews are being drawn")
            self._waiting += 1
        try:
            if not self._drawing.acquire(timeout=WAIT_SECONDS):
                with self._lock:
                    self.busy += 1
                raise Busy(f"no preview could be drawn within {WAIT_SECONDS:g} s")
            try:
                kept = self._read(key)  # drawn by another request while this one waited
                if kept is not None:
                    return kept
                data = self._draw(key, path, width, max_pixels)
            finally:
                self._drawing.release()
        finally:
            with self._lock:
                self._waiting -= 1
        self._keep(key, data)
        return data

    def _draw(self, key: str, path: Path, width: int, max_pixels: int) -> bytes:
        try:
            try:
                data = render_thumbnail(path, width, max_pixels, IN_PROCESS_BYTES)
            except TooLargeHere as exc:
                if exc.needed > CHILD_MEMORY_BYTES - CHILD_BASE_BYTES:
                    raise NoPreview(f"too large to preview: {exc}") from None
                with self._child:
                    data = self._draw_in_child(path, width, max_pixels)
        except (TooManyPixels, NoPreview, OSError, ValueError) as exc:
            if not path.exists():
                raise FileNotFoundError(str(path)) from exc
            reason = str(exc) or type(exc).__name__
            with self._lock:
                self._failures[key] = reason
                while len(self._failures) > FAILURES_KEPT:
                    self._failures.popitem(last=False)
            raise NoPreview(reason) from exc
        self.drawn += 1
        return data

    def _draw_in_child(self, path: Path, width: int, max_pixels: int) -> bytes:
        command = [sys.executable, "-m", "instaflyd.imaging_thumbnail"]
        try:
            done = subprocess.run(
                [*command, str(path), str(width), str(max_pixels)],
                capture_output=True,
                timeout=CHILD_SECONDS,
                check=False,
                env={**os.environ, "PYTHONPATH": _package_root()},
            )
        except subprocess.TimeoutExpired:
            raise NoPreview(f"drawing took longer than {CHILD_SECONDS:g} s") from None
        self.drawn_by_child += 1
        if done.returncode == 0 and done.stdout[:2] == b"\xff\xd8":
            return done.stdout
        why = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no reason"]
        if done.returncode == EXIT_TOO_MANY_PIXELS:
            raise NoPreview(why[0])
        raise NoPreview(
            f"cannot be drawn within {CHILD_MEMORY_BYTES // 2**20} MiB "
            f"(exit status {done.returncode}): {why[0]}"
        )

    # --- the disk cache --------------------------------------------------------------------

    def _file(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.jpg"

    def _read(self, key: str) -> bytes | None:
        file = self._file(key)
        try:
            data = file.read_bytes()
            if time.time() - file.stat().st_mtime > REFRESH_AFTER:
                os.utime(file)  # recently used: trimmed last
        except OSError:
            return None
        with self._lock:
            sizes = self._kept()
            if file in sizes:
                sizes.move_to_end(file)
        return data

    def _keep(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        file = self._file(key)
        try:
            atomic_write_bytes(file, data, mode=0o640)
        except OSError:
            return  # a full disk costs the cache, not the preview
        with self._lock:
            sizes = self._kept()
            self._total += len(data) - sizes.get(file, 0)
            sizes[file] = len(data)
            sizes.move_to_end(file)
            while self._total > self.max_bytes and sizes:
                old, size = sizes.popitem(last=False)
                self._total -= size
                with contextlib.suppress(OSError):
                    old.unlink()

    def kept_bytes(self) -> int:
        with self._lock:
            self._kept()
            return self._total

    def _kept(self) -> OrderedDict[Path, int]:
        """The kept files, oldest first, read from the folder once (under self._lock)."""
        if self._sizes is None:
            found = []
            for sub in self.folder.glob("??"):
                remove_stale_temps(sub)
                for file in sub.glob("*.jpg"):
                    if file.name.startswith(TEMP_PREFIX):
                        continue
                    with contextlib.suppress(OSError):
                        stat = file.stat()
                        found.append((stat.st_mtime, file, stat.st_size))
            self._sizes = OrderedDict((file, size) for _, file, size in sorted(found))
            self._total = sum(self._sizes.values())
        return self._sizes


def _package_root() -> str:
    """The folder holding the instaflyd package, for the child's import path."""
    here = Path(__file__).resolve().parent.parent.parent
    existing = os.environ.get("PYTHONPATH")
    return f"{here}{os.pathsep}{existing}" if existing else str(here)
