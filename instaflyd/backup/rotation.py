"""The daily backups: named by the time they were made, in `backup.dir`, the newest `keep` kept.

`scheduled_backup` is what the daemon's backup child runs (`instaflyd backup --scheduled`): it
skips the backup when the folder's disk would be left with less than `backup.min_free_mb`,
writes `instafly-backup-YYYYMMDD-HHMMSS.tar` (UTC) and then removes the oldest beyond `keep`,
so a failed backup never costs a good one. `latest_backup` is what the page offers for download
and what a damaged store is restored from.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from instaflyd.backup.archive import make_backup
from instaflyd.backup.manifest import BackupError, BackupManifest, read_manifest
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
    bytes: int
    manifest: BackupManifest


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
    remove_stale_temps(folder)  # what a backup killed midway (SIGTERM, power cut) left
    needed = _estimate_bytes(config)
    free = shutil.disk_usage(folder).free
    floor = config.backup.min_free_mb * 1_000_000
    if free - needed < floor:
        raise BackupError(
            f"backup skipped: it needs about {needed / 1e6:.0f} MB and {folder} has"
            f" {free / 1e6:.0f} MB free (at least backup.min_free_mb = {config.backup.min_free_mb}"
            " MB must stay free); free some space or choose another backup.dir"
        )
    target = folder / backup_name(time.time() if now is None else now)
    make_backup(config, target)
    removed = rotate(config)
    if removed:
        log.info("removed %d old backups (backup.keep = %d)", len(removed), config.backup.keep)
    return target


def rotate(config: Config) -> list[Path]:
    """Remove the backups beyond the newest `backup.keep` readable ones; returns those removed."""
    removed = []
    for old in list_backups(config)[config.backup.keep :]:
        with contextlib.suppress(FileNotFoundError):
            old.path.unlink()
            removed.append(old.path)
    return removed


def _named_backups(folder: Path) -> list[Path]:
    """The files named like a daily backup, newest first."""
    try:
        names = [
            p for p in folder.iterdir() if p.name.startswith(PREFIX) and p.name.endswith(SUFFIX)
        ]
    except OSError:
        return []
    return sorted(names, key=lambda p: p.name, reverse=True)


def _estimate_bytes(config: Config) -> int:
    """About the size of a backup: the database and the images (models and secrets are small)."""
    total = 0
    with contextlib.suppress(OSError):
        total += config.db_path.stat().st_size
    with contextlib.suppress(OSError):
        total += sum(p.stat().st_size for p in config.images_dir.rglob("*") if p.is_file())
    return total
