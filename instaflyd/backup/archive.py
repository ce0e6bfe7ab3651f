"""Write a backup file while the daemon runs: the manifest, the database, the config, the files.

The database is copied first (SQLite's online backup API: one consistent moment, writers go on),
then the data folder's files are listed and streamed into the tar file one by one, so memory
stays flat whatever the store's size. Images are content-addressed and never rewritten, so a
file listed is a file complete; one pruned meanwhile is left out. The backup is written under a
temp name beside `target` and renamed at the end: a crash or a full disk never leaves a
truncated file under a backup's name.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sqlite3
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from instaflyd import __version__
from instaflyd.backup.manifest import (
    CONFIG_PREFIX,
    DATA_PREFIX,
    DATABASE_MEMBER,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_MEMBER,
    PIECES_MEMBER,
    SELF_CONTAINED_VERSION,
    BackupError,
    BackupManifest,
)
from instaflyd.backup.pieces import Piece, PieceStore, write_index
from instaflyd.config import Config
from instaflyd.fsutil import TEMP_PREFIX, atomic_writer
from instaflyd.store import Database, StoreError
from instaflyd.store.snapshot import (
    SnapshotError,
    check_copy,
    copy_database,
    promoted_model_paths,
)

log = logging.getLogger("instafly.backup")

BACKUP_MODE = 0o600  # it holds the household's data, the CA's key and the password's hash
# Beside the config file, also kept: the shared folder's password (install.sh --share).
CONFIG_SIBLINGS = ("share-password",)
# Data folder entries never backed up: the database (copied through SQLite instead), its
# journal files and the copy kept by an upgrade, and the feature cache (rebuilt from the images
# when training next runs).
SKIPPED_TOP = frozenset(
    {
        "instafly.db",
        "instafly.db-wal",
        "instafly.db-shm",
        "instafly.db-journal",
        "instafly.db.before-upgrade",  # the copy `instaflyd migrate` keeps (backup.upgrade)
        "features",
    }
)


@dataclass(frozen=True)
class _File:
    path: str
    name: str  # member name
    size: int
    mtime: int
    mode: int
    mtime_ns: int = 0


def make_backup(config: Config, target: Path) -> BackupManifest:
    """Write a backup of the appliance to `target` (replaced atomically); returns its manifest."""
    return _write(config, target, None, {})


def make_daily_backup(
    config: Config, target: Path, store: PieceStore, previous: dict[str, Piece]
) -> BackupManifest:
    """A daily backup at `target`: its data files go to the shared `store` (the ones not there
    yet), the file holds the database, the config and the list of those files.

    `previous`: the last daily backup's pieces by name; a file of the same name, size and time
    is not read again (its hash is taken from there) when its piece is still in the store."""
    return _write(config, target, store, previous)


def _write(
    config: Config, target: Path, store: PieceStore | None, previous: dict[str, Piece]
) -> BackupManifest:
    target = target.expanduser().absolute()
    if target.is_dir():
        raise BackupError(f"{target} is a folder; name the backup file, e.g. {target}/instafly.tar")
    if not config.db_path.exists():
        raise BackupError(f"{config.db_path}: there is no database to back up yet")
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    database_copy = target.with_name(f"{TEMP_PREFIX}{target.name}-{os.getpid()}.db")
    try:
        try:
            with Database(config.db_path) as db:
                copy_database(db.conn, database_copy)
                models = promoted_model_paths(db.conn)
            counts = check_copy(database_copy)
        except (StoreError, SnapshotError, sqlite3.Error) as exc:
            raise BackupError(f"cannot copy the database: {exc}") from None
        config_files = list(_config_files(config))
        data_files = list(data_folder_files(config, target.parent, models))
        pieces: list[Piece] = []
        added = 0
        if store is not None:
            try:
                pieces, added = _store_pieces(store, data_files, previous)
            except OSError as exc:
                raise BackupError(
                    f"cannot write the backup's files to {store.folder}: {exc.strerror or exc}"
                ) from None
            data_files = []
        manifest = BackupManifest(
            format=FORMAT,
            format_version=FORMAT_VERSION if store is not None else SELF_CONTAINED_VERSION,
            instafly_version=__version__,
            schema_version=counts.schema_version,
            created=time.time(),
            counts=counts,
            files=len(pieces) if store is not None else len(data_files),
            file_bytes=sum(p.size for p in pieces) + sum(f.size for f in data_files),
            database_bytes=database_copy.stat().st_size,
            config_files=len(config_files),
            pieces=len(pieces),
            added_bytes=added,
        )
        try:
            with (
                atomic_writer(target, BACKUP_MODE) as handle,
                tarfile.open(fileobj=handle, mode="w:", format=tarfile.GNU_FORMAT) as tar,
            ):
                _add_bytes(tar, MANIFEST_MEMBER, manifest.to_json())
                _add_file(tar, _file_of(database_copy, DATABASE_MEMBER))
                for item in (*config_files, *data_files):
                    with contextlib.suppress(FileNotFoundError):  # pruned since listed
                        _add_file(tar, item)
                if store is not None:
                    index = io.BytesIO()
                    write_index(pieces, index)
                    _add_bytes(tar, PIECES_MEMBER, index.getvalue())
        except OSError as exc:
            raise BackupError(f"cannot write the backup {target}: {exc.strerror or exc}") from None
    finally:
        database_copy.unlink(missing_ok=True)
    log.info(
        "backup %s written in %.1f s: %d posts, %d files, %.1f MB (%.1f MB of new files shared)",
        target,
        time.monotonic() - started,
        counts.posts,
        manifest.files,
        target.stat().st_size / 1e6,
        added / 1e6,
    )
    return manifest


def _store_pieces(
    store: PieceStore, files: list[_File], previous: dict[str, Piece]
) -> tuple[list[Piece], int]:
    """Each file as a piece of the store (the new ones copied); the pieces and the bytes added.

    The copies are synced once, together, before the backup that lists them is written."""
    pieces, added = [], 0
    for item in files:
        known = previous.get(item.name)
        if (
            known is not None
            and known.size == item.size
            and known.mtime_ns == item.mtime_ns
            and store.has(known.sha256, known.size)
        ):
            mode = item.mode & 0o777
            pieces.append(Piece(item.name, known.sha256, item.size, mode, item.mtime_ns))
            continue
        try:
            sha256, size, new = store.add(Path(item.path))
        except FileNotFoundError:  # pruned since listed
            continue
        added += size if new else 0
        pieces.append(Piece(item.name, sha256, size, item.mode & 0o777, item.mtime_ns))
    os.sync()
    return pieces, added


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def _file_of(path: Path, name: str) -> _File:
    stat = path.stat()
    return _File(str(path), name, stat.st_size, int(stat.st_mtime), stat.st_mode)


def _add_file(tar: tarfile.TarFile, item: _File) -> None:
    """Add a regular file by its listed stat (no user or group name looked up per file)."""
    info = tarfile.TarInfo(item.name)
    info.mtime = item.mtime
    info.mode = item.mode & 0o777
    with open(item.path, "rb") as handle:
        info.size = os.fstat(handle.fileno()).st_size
        tar.addfile(info, handle)


def _config_files(config: Config) -> Iterator[_File]:
    if config.source is None:
        return
    candidates = [(config.source, "instafly.yaml")]
    candidates += [(config.source.parent / name, name) for name in CONFIG_SIBLINGS]
    for path, name in candidates:
        with contextlib.suppress(OSError):
            if path.is_file():
                yield _file_of(path, CONFIG_PREFIX + name)


def data_folder_files(config: Config, backup_folder: Path, models: list[str]) -> Iterator[_File]:
    """Every regular file of the data folder a restore needs, sorted (images stream in order)."""
    root = config.data_dir
    # Folders inside the data folder that are not the appliance's state.
    excluded = {
        _resolved(p)
        for p in (backup_folder, config.backup.dir, config.watch.drop_dir, config.watch.output_dir)
    }
    promoted = {Path(path).parts[-1] for path in models}
    skip = len(str(root)) + 1  # an entry's path inside the data folder: its path past the root
    for top in _entries(str(root)):
        if top.name in SKIPPED_TOP or _resolved(Path(top.path)) in excluded:
            continue
        if top.name == "models" and top.is_dir(follow_symlinks=False):
            for model in _entries(top.path):
                if model.name in promoted:
                    yield from _walk(model, skip)
        else:
            yield from _walk(top, skip)


def _entries(folder: str) -> list[os.DirEntry[str]]:
    """The folder's entries by name, without temp files (a folder gone meanwhile: none)."""
    try:
        with os.scandir(folder) as scan:
            entries = [e for e in scan if not e.name.startswith(TEMP_PREFIX)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(entries, key=lambda e: e.name)


def _walk(entry: os.DirEntry[str], skip: int) -> Iterator[_File]:
    """Regular files at or below `entry` (symlinks, sockets and the like are not followed)."""
    try:
        if entry.is_file(follow_symlinks=False):
            stat = entry.stat(follow_symlinks=False)
            name = DATA_PREFIX + entry.path[skip:]
            yield _File(
                entry.path, name, stat.st_size, int(stat.st_mtime), stat.st_mode, stat.st_mtime_ns
            )
            return
        if not entry.is_dir(follow_symlinks=False):
            return
    except FileNotFoundError:
        return
    for child in _entries(entry.path):
        yield from _walk(child, skip)


def _resolved(path: Path) -> Path:
    with contextlib.suppress(OSError):
        return path.resolve()
    return path
