"""The daily backups' shared files: each data file kept once, by its content, for every backup.

A daily backup (`rotation.scheduled_backup`) holds the database, the config and an index of the
data folder's files (`pieces.jsonl.gz`: one `Piece` a line); the files themselves are kept once
in `<backup.dir>/files/<sha256[:2]>/<sha256>`, shared by all the daily backups that hold them.
A photo captured a year ago is stored once, not once a day: the backups folder grows by the new
photos of each day and the database, not by the whole image folder.

- `PieceStore.add(path)`: copy a file into the store (hashed while copied; one already there by
  its content is not copied again); the caller syncs once for all of them.
- `PieceStore.check(pieces)`: every piece there, at its size; else a `BackupError` naming them.
- `PieceStore.open_checked(piece)`: read a piece; its hash is compared when the last byte is read.
- `PieceStore.prune(needed)`: remove the pieces no kept backup needs.
- `write_index` / `read_index`: the index member, gzip'd JSON lines, names checked when read.

A file unchanged since the previous backup (same name, size and modification time) is not read
again: its hash is taken from that backup's index (as rsync and restic do).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Protocol

from instaflyd.backup.manifest import DATA_PREFIX, PIECES_MEMBER, BackupError
from instaflyd.fsutil import TEMP_PREFIX, remove_stale_temps

PIECES_FOLDER = "files"
PIECE_MODE = 0o600  # the CA key and the password's hash are pieces too
CHUNK = 1 << 20
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_INDEX_LINE = 4096


class ByteSource(Protocol):
    """What a file's content is copied from: a file, a tar member, a checked piece."""

    def read(self, n: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class Piece:
    """One data-folder file of a backup: its member name, content hash, size, mode and time."""

    name: str  # data/<path in the data folder>, as in a self-contained backup
    sha256: str
    size: int
    mode: int
    mtime_ns: int

    def to_line(self) -> bytes:
        fields = [self.name, self.sha256, self.size, self.mode, self.mtime_ns]
        return json.dumps(fields, ensure_ascii=False).encode("utf-8") + b"\n"

    @classmethod
    def from_line(cls, line: bytes, where: str) -> Piece:
        try:
            name, sha256, size, mode, mtime_ns = json.loads(line)
            piece = cls(str(name), str(sha256), int(size), int(mode), int(mtime_ns))
        except (ValueError, TypeError) as exc:
            raise BackupError(
                f"{where}: a line of the backup's file list is damaged: {exc}"
            ) from None
        path = PurePosixPath(piece.name)
        if (
            not piece.name.startswith(DATA_PREFIX)
            or path.is_absolute()
            or ".." in path.parts
            or "" in piece.name.split("/")
            or not SHA256.fullmatch(piece.sha256)
            or piece.size < 0
        ):
            raise BackupError(f"{where}: unexpected entry {piece.name!r} in the backup's file list")
        return piece


def write_index(pieces: Iterable[Piece], handle: IO[bytes]) -> None:
    """The index member's bytes (gzip, deterministic: no name or time in its header)."""
    with gzip.GzipFile(fileobj=handle, mode="wb", mtime=0, compresslevel=6) as out:
        for piece in pieces:
            out.write(piece.to_line())


def read_index(handle: IO[bytes], where: str) -> list[Piece]:
    """The pieces an index member lists, every name checked; damage is a `BackupError`."""
    pieces = []
    try:
        with gzip.GzipFile(fileobj=handle, mode="rb") as lines:
            while line := lines.readline(MAX_INDEX_LINE):
                if not line.endswith(b"\n"):
                    raise BackupError(f"{where}: the backup's file list is damaged (cut short)")
                pieces.append(Piece.from_line(line, where))
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise BackupError(f"{where}: the backup's file list is damaged: {exc}") from None
    return pieces


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class PieceStore:
    """`<backup.dir>/files`: the data files of the daily backups, each once, named by content."""

    def __init__(self, backup_folder: Path) -> None:
        self.folder = backup_folder / PIECES_FOLDER
        self._made: set[str] = set()  # subfolders known to exist

    def path_for(self, sha256: str) -> Path:
        return self.folder / sha256[:2] / sha256

    def has(self, sha256: str, size: int) -> bool:
        try:
            return os.stat(f"{self.folder}/{sha256[:2]}/{sha256}").st_size == size
        except OSError:
            return False

    def add(self, source: Path) -> tuple[str, int, bool]:
        """Copy `source` into the store (unsynced: the caller syncs once); its sha256, its size
        and whether it was new to the store (False: a piece of that content was there).

        The copy is hashed as it is written, so what is stored is what the hash names."""
        if not self._made:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._made.add("")
        temp = f"{self.folder}/{TEMP_PREFIX}{os.getpid()}-piece"
        digest, size = hashlib.sha256(), 0
        try:
            with open(source, "rb") as src:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PIECE_MODE)
                with open(fd, "wb") as out:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
            sha256 = digest.hexdigest()
            new = not self.has(sha256, size)
            if not new:
                os.unlink(temp)
            else:
                if sha256[:2] not in self._made:
                    os.makedirs(f"{self.folder}/{sha256[:2]}", mode=0o700, exist_ok=True)
                    self._made.add(sha256[:2])
                os.replace(temp, f"{self.folder}/{sha256[:2]}/{sha256}")
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        return sha256, size, new

    def check(self, pieces: Iterable[Piece], where: str) -> None:
        """Every piece present at its size, or a `BackupError` that names the first missing."""
        pieces = list(pieces)
        if pieces and not self.folder.is_dir():
            raise BackupError(
                f"{where} is a daily backup: its photos and other files are in the folder"
                f" {self.folder} beside it, which is not there. Copy the whole backup folder, or"
                " use the page's download (one file with everything in it)"
            )
        missing = [p for p in pieces if not self.has(p.sha256, p.size)]
        if missing:
            first = missing[0]
            raise BackupError(
                f"{where}: {len(missing)} of the backup's files are missing or damaged in"
                f" {self.folder} (first: {first.name}, stored as {self.path_for(first.sha256)});"
                " choose an older backup, or one made with `instaflyd backup FILE`"
            )

    @contextlib.contextmanager
    def open_checked(self, piece: Piece, where: str) -> Iterator[ByteSource]:
        """The piece's content; reading past its end checks it against its hash."""
        path = self.path_for(piece.sha256)
        try:
            handle = open(path, "rb")  # noqa: SIM115 (closed below, after the check)
        except OSError as exc:
            raise BackupError(
                f"{where}: the backup's file {piece.name} ({path}) cannot be read:"
                f" {exc.strerror or exc}"
            ) from None
        with handle:
            yield _Checked(handle, piece, path, where)

    def prune(self, needed: set[str]) -> tuple[int, int]:
        """Remove the pieces not in `needed` (and temps a killed backup left); (files, bytes)."""
        removed = freed = 0
        remove_stale_temps(self.folder)
        with contextlib.suppress(FileNotFoundError):
            for sub in os.scandir(self.folder):
                if not sub.is_dir(follow_symlinks=False):
                    continue
                for entry in os.scandir(sub.path):
                    if entry.name in needed:
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        size = entry.stat(follow_symlinks=False).st_size
                        os.unlink(entry.path)
                        removed, freed = removed + 1, freed + size
                with contextlib.suppress(OSError):
                    os.rmdir(sub.path)  # only when empty
        return removed, freed

    def disk_bytes(self) -> int:
        total = 0
        with contextlib.suppress(FileNotFoundError):
            for sub in os.scandir(self.folder):
                if sub.is_dir(follow_symlinks=False):
                    total += sum(e.stat().st_size for e in os.scandir(sub.path))
        return total


class _Checked:
    """A piece's file read to its end, then compared with the hash and size it is stored under."""

    def __init__(self, handle: IO[bytes], piece: Piece, path: Path, where: str) -> None:
        self.handle, self.piece, self.path, self.where = handle, piece, path, where
        self.digest = hashlib.sha256()
        self.size = 0
        self.checked = False

    def read(self, n: int = -1, /) -> bytes:
        chunk = self.handle.read(n)
        self.digest.update(chunk)
        self.size += len(chunk)
        if self.size > self.piece.size or (not chunk and n != 0 and self.size < self.piece.size):
            self._damaged()
        if self.size == self.piece.size and not self.checked:
            self.checked = True
            if self.digest.hexdigest() != self.piece.sha256:
                self._damaged()
        return chunk

    def _damaged(self) -> None:
        raise BackupError(
            f"{self.where}: the backup's file {self.piece.name} ({self.path}) is damaged: its"
            " content no longer matches what was backed up; choose an older backup"
        )


def backup_pieces(file: Path, expected: int) -> list[Piece]:
    """The pieces the daily backup `file` lists; `expected` (its manifest's `pieces`) are there,
    or the list is damaged. A self-contained backup (expected 0) lists none."""
    if not expected:
        return []
    where = str(file)
    pieces = None
    try:
        with tarfile.open(file, "r:") as tar:
            for member in tar:
                if member.name == PIECES_MEMBER and member.isfile():
                    handle = tar.extractfile(member)
                    assert handle is not None
                    pieces = read_index(handle, where)
                    break
    except (tarfile.TarError, EOFError) as exc:
        raise BackupError(f"{where}: the backup file is damaged: {exc}") from None
    except OSError as exc:
        raise BackupError(f"{where}: cannot read the backup file: {exc.strerror or exc}") from None
    if pieces is None or len(pieces) != expected:
        found = "no list" if pieces is None else f"{len(pieces)} in its list"
        raise BackupError(
            f"{where}: the backup's file list is damaged ({found}, its manifest says {expected})"
        )
    return pieces
