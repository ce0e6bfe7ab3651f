"""Put a backup back: the whole appliance onto a fresh install, or only its database.

Every member's name is checked before anything is written: only regular files, only under
`data/` and `config/` (or the database), no absolute paths, no `..`, nothing through a symlink;
anything else refuses the whole file. The database is unpacked beside its place, checked
(SQLite's quick_check, its counts against the manifest) and only then renamed into place with
the old -wal and -shm removed; the store is then opened once, which migrates a backup from an
older release to the current schema. The daemon must not run meanwhile (`systemctl stop
instaflyd`); a restore over a store that already holds posts is refused unless forced.

A daily backup's data files are in the `files/` folder beside it (`pieces`): all of them must be
there at their size before anything is written, and each is compared with its hash as it is
copied; a missing or damaged one stops the restore with its name, before the database is put
in place (the store stays as it was; run the restore again from an older backup).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from instaflyd.backup.manifest import (
    CONFIG_PREFIX,
    DATA_PREFIX,
    DATABASE_MEMBER,
    MANIFEST_MEMBER,
    PIECES_MEMBER,
    BackupError,
    BackupManifest,
    read_manifest,
)
from instaflyd.backup.pieces import ByteSource, PieceStore, backup_pieces
from instaflyd.config import Config
from instaflyd.fsutil import TEMP_PREFIX, atomic_writer
from instaflyd.processes import processes_with_open
from instaflyd.store import Database, StoreError
from instaflyd.store.snapshot import (
    SnapshotError,
    StoreCounts,
    check_copy,
    replace_database_file,
    store_counts,
)

log = logging.getLogger("instafly.backup")

SECRET_MODE = 0o600
FILE_MODE = 0o640
CHUNK = 1 << 20
# What a restore checks the restored database against: these counts must match the manifest's.
CHECKED_COUNTS = ("posts", "accounts", "images", "labelled", "model_versions", "jobs", "history")


@dataclass(frozen=True)
class RestoreResult:
    """What a restore put back."""

    manifest: BackupManifest
    counts: StoreCounts  # of the restored store, after migrating it to the current schema
    files: int  # data folder files written
    config_written: Path | None  # where the backup's config file went (None: it had none)


def restore(config: Config, file: Path, *, force: bool = False) -> RestoreResult:
    """Restore the backup `file` into `config`'s data folder (and config file)."""
    manifest = read_manifest(file)
    _refuse_an_open_store(config.db_path)
    _refuse_a_used_store(config, force)
    pieces = backup_pieces(file, manifest.pieces)
    store = PieceStore(file.parent)
    store.check(pieces, str(file))
    with _open(file) as tar:
        members = _checked_members(tar, file)
        needed = sum(m.size for m in members) + sum(p.size for p in pieces)
        config.data_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        free = shutil.disk_usage(config.data_dir).free
        if needed > free:
            raise BackupError(
                f"the backup needs {needed / 1e6:.0f} MB in {config.data_dir} but only "
                f"{free / 1e6:.0f} MB are free; nothing was restored"
            )
        files, config_written, folders = 0, None, set[Path]()
        staged_db = config.db_path.with_name(f"{TEMP_PREFIX}restore-{os.getpid()}.db")
        try:
            for member in members:
                source = tar.extractfile(member)
                assert source is not None
                if member.name == DATABASE_MEMBER:  # the second member: checked before the rest
                    _copy_to(source, staged_db, SECRET_MODE)
                    _check_staged(staged_db, manifest, str(file))
                elif member.name.startswith(DATA_PREFIX):
                    target = _data_target(config.data_dir, member.name, folders)
                    _write_unsynced(source, target, _mode_of(member.mode))
                    files += 1
                elif member.name.startswith(CONFIG_PREFIX):
                    config_written = _restore_config(config, member, source) or config_written
            for piece in pieces:
                target = _data_target(config.data_dir, piece.name, folders)
                with store.open_checked(piece, str(file)) as checked:
                    _write_unsynced(checked, target, _mode_of(piece.mode))
                files += 1
            if not staged_db.exists():
                raise BackupError(f"{file}: the backup holds no database")
            os.sync()  # the files, once for all of them (an fsync each took 10 ms per image)
            counts = _put_in_place(staged_db, config.db_path)
        finally:
            staged_db.unlink(missing_ok=True)
    log.info("restored %s: %d posts, %d files", file, counts.posts, files)
    return RestoreResult(manifest, counts, files, config_written)


def restore_database(config: Config, backup: Path, target_db: Path) -> StoreCounts:
    """Put only the database of `backup` at `target_db` (no process may have it open).

    For a store found damaged: the caller moves the damaged file aside first (or not: it is
    replaced, its -wal and -shm removed). Returns the counts of the restored database, migrated
    to the current schema. `config` is the running one (for the log); nothing else is touched.
    """
    manifest = read_manifest(backup)
    staged = target_db.with_name(f"{TEMP_PREFIX}restore-{os.getpid()}.db")
    try:
        with _open(backup) as tar:
            member = next((m for m in tar if m.name == DATABASE_MEMBER), None)
            if member is None or not member.isfile():
                raise BackupError(f"{backup}: the backup holds no database")
            source = tar.extractfile(member)
            assert source is not None
            _copy_to(source, staged, SECRET_MODE)
        _check_staged(staged, manifest, str(backup))
        counts = _put_in_place(staged, target_db)
    finally:
        staged.unlink(missing_ok=True)
    log.info(
        "database %s restored from %s (%d posts; data dir %s)",
        target_db,
        backup,
        counts.posts,
        config.data_dir,
    )
    return counts


@contextlib.contextmanager
def _open(file: Path) -> Iterator[tarfile.TarFile]:
    try:
        with tarfile.open(file, "r:") as tar:
            yield tar
    except (tarfile.TarError, EOFError) as exc:
        raise BackupError(f"{file}: the backup file is damaged: {exc}") from None
    except OSError as exc:
        raise BackupError(f"{file}: cannot read the backup file: {exc.strerror or exc}") from None


def _refuse_an_open_store(db_path: Path) -> None:
    """A running daemon keeps writing to the database it has open, and its log would be
    replayed onto the restored file: stop it first."""
    names = [db_path, db_path.with_name(db_path.name + "-wal")]
    holders = processes_with_open(names)
    if holders:
        raise BackupError(
            f"{db_path} is open in process {', '.join(map(str, holders))} (the daemon?): stop it"
            " first (sudo systemctl stop instaflyd), then restore; nothing was restored"
        )


def _refuse_a_used_store(config: Config, force: bool) -> None:
    if force or not config.db_path.exists():
        return
    try:
        with Database(config.db_path) as db:
            posts = store_counts(db.conn).posts
    except StoreError:
        return  # a database that cannot be opened holds nothing to keep
    if posts:
        raise BackupError(
            f"{config.db_path} already holds {posts} posts: restore is for a fresh install. "
            "Stop the daemon (systemctl stop instaflyd) and restore with --force to replace them"
        )


def _checked_members(tar: tarfile.TarFile, file: Path) -> list[tarfile.TarInfo]:
    members = []
    for member in tar:
        if member.name in (MANIFEST_MEMBER, PIECES_MEMBER):
            continue
        if member.isdir():
            continue
        name = PurePosixPath(member.name)
        allowed = member.name == DATABASE_MEMBER or member.name.startswith(
            (DATA_PREFIX, CONFIG_PREFIX)
        )
        if (
            not member.isfile()
            or not allowed
            or name.is_absolute()
            or ".." in name.parts
            or "" in member.name.split("/")
        ):
            raise BackupError(
                f"{file}: unexpected entry {member.name!r} in the backup; nothing was restored"
            )
        members.append(member)
    return members


def _data_target(data_dir: Path, name: str, folders: set[Path]) -> Path:
    """Where the member `data/<path>` goes; its folder checked and made once."""
    relative = name[len(DATA_PREFIX) :]
    target = data_dir / relative
    if target.parent not in folders:
        _inside(data_dir, relative)
        target.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        folders.add(target.parent)
    return target


def _inside(root: Path, relative: str) -> Path:
    """`root/relative`, refusing a path that leaves root through a symlink already there."""
    path = root / relative
    resolved_root = root.resolve()
    parent = path.parent.resolve() if path.parent.exists() else None
    if parent is not None and not parent.is_relative_to(resolved_root):
        raise BackupError(f"refusing to write {path}: it leads outside {root}")
    return path


def _mode_of(mode: int) -> int:
    return SECRET_MODE if not mode & 0o077 else FILE_MODE


def _copy_to(source: IO[bytes], target: Path, mode: int) -> None:
    target.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    with atomic_writer(target, mode) as handle:
        while chunk := source.read(CHUNK):
            handle.write(chunk)


def _write_unsynced(source: ByteSource, target: Path, mode: int) -> None:
    """Write under a temp name and rename, without an fsync (the restore syncs once at the end;
    a restore cut short is run again)."""
    temp = target.with_name(TEMP_PREFIX + target.name)
    try:
        with open(temp, "wb") as handle:
            shutil.copyfileobj(source, handle, CHUNK)
        os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _restore_config(config: Config, member: tarfile.TarInfo, source: IO[bytes]) -> Path | None:
    """The backup's config goes where this install reads its config; the file there before is
    kept as <name>.before-restore. Without a config file, it goes to the data folder."""
    name = PurePosixPath(member.name).name
    folder = config.source.parent if config.source else config.data_dir / "restored-config"
    target = folder / (config.source.name if config.source and name == "instafly.yaml" else name)
    if target.exists():
        with contextlib.suppress(OSError):
            shutil.copy2(target, target.with_name(target.name + ".before-restore"))
    mode = SECRET_MODE if name != "instafly.yaml" else FILE_MODE
    _copy_to(source, target, mode)
    return target if name == "instafly.yaml" else None


def _check_staged(staged: Path, manifest: BackupManifest, where: str) -> None:
    try:
        copied = check_copy(staged)
    except SnapshotError as exc:
        raise BackupError(f"{where}: {exc}; nothing was restored") from None
    expected, got = manifest.counts.as_dict(), copied.as_dict()
    wrong = [
        f"{k} {got[k]} (manifest: {expected[k]})" for k in CHECKED_COUNTS if got[k] != expected[k]
    ]
    if wrong:
        raise BackupError(
            f"{where}: the backup's database does not match its manifest ({', '.join(wrong)});"
            " nothing was restored"
        )


def _put_in_place(staged: Path, target: Path) -> StoreCounts:
    replace_database_file(staged, target)
    try:
        with Database(target) as db:  # migrates a backup of an older release
            return store_counts(db.conn)
    except StoreError as exc:
        raise BackupError(f"the restored database cannot be opened: {exc}") from None
