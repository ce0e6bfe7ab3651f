"""One self-contained backup file from a daily backup: what the page's download gives.

A daily backup holds the database and the list of its files, the files being shared in the
backup folder (`pieces`). To move the box to a new SD card, a household needs one file with
everything in it: `SelfContained(daily)` streams it, made on the fly (no second copy on the
box's disk), as a format-1 backup (`manifest`): the same manifest (without `pieces`), the
database, the config, then every data file as a `data/<path>` member. Its exact length is known
before the first byte (the page sends a Content-Length); each file is compared with its hash as
it is streamed, and a damaged one ends the stream with a `BackupError` (a cut download, never a
complete-looking file with a bad photo in it). A self-contained daily backup (made before the
files were shared) is streamed as it is.

- `SelfContained(daily)`: checks that every file is there at its size (else a `BackupError`);
  `.size`, `.chunks()`.
- `export_backup(daily, target)`: the same into a file, written atomically.
"""

from __future__ import annotations

import dataclasses
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

from instaflyd.backup.manifest import (
    MANIFEST_MEMBER,
    PIECES_MEMBER,
    SELF_CONTAINED_VERSION,
    BackupError,
    BackupManifest,
    read_manifest,
)
from instaflyd.backup.pieces import ByteSource, PieceStore, backup_pieces
from instaflyd.fsutil import atomic_writer

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
CHUNK = 1 << 20
EXPORT_MODE = 0o600


class SelfContained:
    """The self-contained backup file for the daily backup `daily`, as a stream of bytes."""

    def __init__(self, daily: Path) -> None:
        self.daily = daily
        self.manifest = read_manifest(daily)
        self.pieces = backup_pieces(daily, self.manifest.pieces)
        self.store = PieceStore(daily.parent)
        self.store.check(self.pieces, str(daily))
        if not self.manifest.pieces:
            self.size = daily.stat().st_size
            return
        self._manifest_bytes = dataclasses.replace(
            self.manifest, format_version=SELF_CONTAINED_VERSION, pieces=0, added_bytes=0
        ).to_json()
        try:
            with tarfile.open(daily, "r:") as tar:
                self._members = [
                    m for m in tar.getmembers() if m.name not in (MANIFEST_MEMBER, PIECES_MEMBER)
                ]
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BackupError(f"{daily}: the backup file is damaged: {exc}") from None
        body = _member_bytes(MANIFEST_MEMBER, len(self._manifest_bytes))
        body += sum(_member_bytes(m.name, m.size) for m in self._members)
        body += sum(_member_bytes(p.name, p.size) for p in self.pieces)
        self.size = _padded(body + 2 * BLOCK, RECORD)

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes, in chunks of at most about a megabyte."""
        if not self.manifest.pieces:
            with open(self.daily, "rb") as handle:
                while chunk := handle.read(CHUNK):
                    yield chunk
            return
        sent = 0
        now = int(time.time())
        yield (head := _header(MANIFEST_MEMBER, len(self._manifest_bytes), 0o600, now))
        yield (body := self._manifest_bytes + _padding(len(self._manifest_bytes)))
        sent += len(head) + len(body)
        try:
            with tarfile.open(self.daily, "r:") as tar:
                for member in self._members:
                    source = tar.extractfile(member)
                    if source is None:
                        raise BackupError(f"{self.daily}: {member.name} is not a file")
                    mtime = int(member.mtime)
                    for chunk in _member(member.name, member.size, member.mode, mtime, source):
                        sent += len(chunk)
                        yield chunk
        except (tarfile.TarError, EOFError) as exc:
            raise BackupError(f"{self.daily}: the backup file is damaged: {exc}") from None
        for piece in self.pieces:
            with self.store.open_checked(piece, str(self.daily)) as checked:
                mtime = piece.mtime_ns // 1_000_000_000
                for chunk in _member(piece.name, piece.size, piece.mode, mtime, checked):
                    sent += len(chunk)
                    yield chunk
        yield bytes(self.size - sent)  # the end-of-archive blocks and the record's padding


def export_backup(daily: Path, target: Path) -> BackupManifest:
    """Write the self-contained file of `daily` to `target`; the manifest it holds."""
    export = SelfContained(daily)
    try:
        with atomic_writer(target, EXPORT_MODE) as handle:
            for chunk in export.chunks():
                handle.write(chunk)
    except OSError as exc:
        raise BackupError(f"cannot write {target}: {exc.strerror or exc}") from None
    return read_manifest(target)


def _header(name: str, size: int, mode: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode & 0o777, mtime
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def _member(name: str, size: int, mode: int, mtime: int, source: ByteSource) -> Iterator[bytes]:
    yield _header(name, size, mode, mtime)
    left = size
    while left:
        chunk = source.read(min(CHUNK, left))
        if not chunk:
            raise BackupError(f"{name}: ended {left} bytes early while the backup was streamed")
        left -= len(chunk)
        yield chunk
    yield _padding(size)


def _member_bytes(name: str, size: int) -> int:
    return len(_header(name, size, 0o600, 0)) + _padded(size, BLOCK)


def _padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


def _padded(size: int, unit: int) -> int:
    return size + (-size % unit)
