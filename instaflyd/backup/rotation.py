"""The daily backups: named by the time they were made, in `backup.dir`, the newest `keep` kept.

`scheduled_backup` is what the daemon's backup child runs (`instaflyd backup --scheduled`): it
skips the backup when the folder's disk would be left with less than `backup.min_free_mb`,
writes `instafly-backup-YYYYMMDD-HHMMSS.tar` (UTC) and then removes the oldest beyond `keep`,
so a failed backup never costs a good one. `latest_backup` is what the page offers for download
(made self-contained on the fly, `export`) and what a damaged store is restored from.

The daily backups share their data files (`pieces`): each file holds the database, the config
and the list of the data folder's files; the files are in `backup.dir/files/`, each once. After
the oldest backups are removed, so are the files no remaining backup lists; when a remaining
backup's list cannot be read, no file is removed (it may be one that backup needs). One daily
backup runs at a time (a lock on the folder).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from instaflyd.backup.archive import data_folder_files, make_daily_backup
from instaflyd.backup.manifest import BackupError, BackupManifest, read_manifest
from instaflyd.backup.pieces import Piece, PieceStore, backup_pieces
from instaflyd.config import Config
from instaflyd.fsutil import remove_stale_temps

log = logging.getLogger("instafly.backup")

PREFIX = "instafly-backup-"
SUFFIX = ".tar"
STAMP = "%Y%m%d-%H%M%S"


@dataclass(frozen=True)
class BackupFile:
    """A backup in the daily folder."""

    path: Path
    bytes: int  # the file itself
    manifest: BackupManifest

    @property
    def download_bytes(self) -> int:
        """About the size of the self-contained file the page gives for it (its shared files
        inside, with a tar header or two each)."""
        if not self.manifest.pieces:
            return self.bytes
        return self.bytes + self.manifest.file_bytes + 1024 * self.manifest.pieces


def backup_name(when: float) -> str:
    return PREFIX + time.strftime(STAMP, time.gmtime(when)) + SUFFIX


def list_backups(config: Config) -> list[BackupFile]:
    """The readable backups in `backup.dir`, newest first (by the time in their name)."""
    found = []
    for path in _named_backups(config.backup.dir):
        with contextlib.suppress(BackupError, OSError):
            found.append(BackupFile(path, path.stat().st_size, read_manifest(path)))
    return found


def latest_backup(config: Config) -> Path | None:
    """The newest readable backup in `backup.dir`, or None when there is none."""
    for path in _named_backups(config.backup.dir):
        with contextlib.suppress(BackupError, OSError):
            read_manifest(path)
            return path
    return None


def scheduled_backup(config: Config, now: float | None = None) -> Path:
    """Make the daily backup and remove the oldest beyond `backup.keep`; returns its path."""
    folder = config.backup.dir
    try:
        folder.mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError as exc:
        raise BackupError(f"cannot create the backup folder {folder}: {exc.strerror}") from None
    with _one_at_a_time(folder):
        remove_stale_temps(folder)  # what a backup killed midway (SIGTERM, power cut) left
        store = PieceStore(folder)
        previous = _previous_pieces(config)
        needed = _estimate_bytes(config, folder, previous)
        free = shutil.disk_usage(folder).free
        floor = config.backup.min_free_mb * 1_000_000
        if free - needed < floor:
            raise BackupError(
                f"backup skipped: it needs about {needed / 1e6:.0f} MB and {folder} has"
                f" {free / 1e6:.0f} MB free (at least backup.min_free_mb ="
                f" {config.backup.min_free_mb} MB must stay free); free some space or choose"
                " another backup.dir"
            )
        target = folder / backup_name(time.time() if now is None else now)
        make_daily_backup(config, target, store, previous)
        removed = rotate(config)
        if removed:
            log.info("removed %d old backups (backup.keep = %d)", len(removed), config.backup.keep)
        prune_pieces(config)
    return target


def rotate(config: Config) -> list[Path]:
    """Remove the backups beyond the newest `backup.keep` readable ones; returns those removed."""
    removed = []
    for old in list_backups(config)[config.backup.keep :]:
        with contextlib.suppress(FileNotFoundError):
            old.path.unlink()
            removed.append(old.path)
    return removed


def prune_pieces(config: Config) -> tuple[int, int]:
    """Remove the shared files no backup in the folder lists; (files, bytes) removed.

    Every readable backup's list is read; when one cannot be (its manifest read, its list
    damaged), nothing is removed: that backup may need any of them. A file whose manifest cannot
    be read is no backup anyone can restore, and needs nothing."""
    needed: set[str] = set()
    for path in _named_backups(config.backup.dir):
        try:
            manifest = read_manifest(path)
        except BackupError:
            continue
        try:
            needed.update(p.sha256 for p in backup_pieces(path, manifest.pieces))
        except BackupError as exc:
            log.warning("shared backup files kept: %s", exc)
            return 0, 0
    removed, freed = PieceStore(config.backup.dir).prune(needed)
    if removed:
        log.info("removed %d shared backup files no backup needs (%.1f MB)", removed, freed / 1e6)
    return removed, freed


def _previous_pieces(config: Config) -> dict[str, Piece]:
    """The newest readable daily backup's files by name (none: every file is hashed)."""
    for backup in list_backups(config):
        with contextlib.suppress(BackupError):
            return {p.name: p for p in backup_pieces(backup.path, backup.manifest.pieces)}
    return {}


@contextlib.contextmanager
def _one_at_a_time(folder: Path) -> Iterator[None]:
    """A lock held while a daily backup writes and prunes (a second one at the same time, e.g.
    by hand while the daemon's runs, is refused rather than pruning what the first just added)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)  # the folder itself: no lock file
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(
                f"another backup is being written into {folder} right now; try again later"
            ) from None
        yield
    finally:
        os.close(fd)


def _named_backups(folder: Path) -> list[Path]:
    """The files named like a daily backup, newest first."""
    try:
        names = [
            p for p in folder.iterdir() if p.name.startswith(PREFIX) and p.name.endswith(SUFFIX)
        ]
    except OSError:
        return []
    return sorted(names, key=lambda p: p.name, reverse=True)


def _estimate_bytes(config: Config, folder: Path, previous: dict[str, Piece]) -> int:
    """About what a daily backup adds to the folder: the database and the data files new or
    changed since the last one (the others are shared)."""
    total = 0
    with contextlib.suppress(OSError):
        total += config.db_path.stat().st_size
    for item in data_folder_files(config, folder, []):
        known = previous.get(item.name)
        if known is None or known.size != item.size or known.mtime_ns != item.mtime_ns:
            total += item.size
    return total
