"""A consistent copy of the database while other processes write it, and what a copy holds.

`copy_database` uses SQLite's online backup API in one step: in WAL mode that is one read
transaction, so writers go on while it copies and the copy is the database as it was at one
moment (a copy made in several steps would start over each time another process writes). The
copy is written to a temp file beside the target and renamed, so a crash never leaves half a
database under the target's name. `store_counts` is what a backup's manifest records and a
restore is checked against.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from instaflyd.store.stats import count, labelled_count

COPY_MODE = 0o600  # a copy of the household's data is as private as the database


class SnapshotError(Exception):
    """The database could not be copied or the copy is not a readable Instafly database."""


@dataclass(frozen=True)
class StoreCounts:
    """What a database holds, in the terms a household checks a backup by."""

    schema_version: int
    posts: int
    accounts: int
    images: int
    labelled: int
    model_versions: int
    promoted_models: int
    training_runs: int
    jobs: int
    history: int
    events: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def store_counts(conn: sqlite3.Connection) -> StoreCounts:
    """The counts of an open database at its current schema."""
    promoted = conn.execute("SELECT COUNT(*) FROM model_versions WHERE promoted = 1").fetchone()
    return StoreCounts(
        schema_version=int(conn.execute("PRAGMA user_version").fetchone()[0]),
        posts=count(conn, "posts"),
        accounts=count(conn, "accounts"),
        images=count(conn, "images"),
        labelled=labelled_count(conn),
        model_versions=count(conn, "model_versions"),
        promoted_models=int(promoted[0]),
        training_runs=count(conn, "training_runs"),
        jobs=count(conn, "jobs"),
        history=count(conn, "history"),
        events=count(conn, "events"),
    )


def promoted_model_paths(conn: sqlite3.Connection) -> list[str]:
    """The folders (relative to the data folder, e.g. models/v0003) of every promoted version."""
    rows = conn.execute("SELECT path FROM model_versions WHERE promoted = 1 ORDER BY version")
    return [str(row[0]) for row in rows]


def copy_database(source: sqlite3.Connection, target: Path) -> None:
    """Copy the database `source` is connected to into the file `target` (replaced atomically).

    The copy is a single-file database (journal mode DELETE, no -wal beside it), 0600.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".tmp-{target.name}-{os.getpid()}")
    _remove_with_sidecars(temp)
    try:
        fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, COPY_MODE)
        os.close(fd)
        copy = sqlite3.connect(temp, isolation_level=None)
        try:
            source.backup(copy)  # pages=-1: all of it under one read transaction
            copy.execute("PRAGMA journal_mode = DELETE")
        finally:
            copy.close()
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except (sqlite3.Error, OSError) as exc:
        _remove_with_sidecars(temp)
        raise SnapshotError(f"cannot copy the database to {target}: {exc}") from exc


def check_copy(path: Path) -> StoreCounts:
    """Open a copied database read-only, check its integrity and count what it holds."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise SnapshotError(f"{path}: cannot open the copied database: {exc}") from exc
    try:
        verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
        if verdict != "ok":
            raise SnapshotError(f"{path}: the copied database is damaged: {verdict}")
        return store_counts(conn)
    except sqlite3.Error as exc:
        raise SnapshotError(f"{path}: not a readable Instafly database: {exc}") from exc
    finally:
        conn.close()


def replace_database_file(source: Path, target: Path) -> None:
    """Put the database file `source` in place of `target`, which no process may have open.

    The target's -wal and -shm files go first: SQLite would otherwise replay the old database's
    log onto the new file. `source` is renamed (same folder) or copied then renamed.
    """
    _remove_with_sidecars(target, keep_main=True)
    if source.parent != target.parent:
        temp = target.with_name(f".tmp-{target.name}-{os.getpid()}")
        with open(source, "rb") as src, open(temp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        source = temp
    os.chmod(source, COPY_MODE)
    os.replace(source, target)


def _remove_with_sidecars(path: Path, *, keep_main: bool = False) -> None:
    names = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal")]
    if not keep_main:
        names.append(path)
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            name.unlink()


def schema_version_of(path: Path) -> int:
    """The schema version of the database file at `path`, read without changing it."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise SnapshotError(f"{path}: cannot read the schema version: {exc}") from exc


def copy_database_file(path: Path, target: Path) -> None:
    """`copy_database` of the database file at `path`, opened read-only (not migrated)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise SnapshotError(f"{path}: cannot open the database: {exc}") from exc
    try:
        copy_database(conn, target)
    finally:
        conn.close()
