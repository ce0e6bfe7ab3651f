"""The SQLite database every Instafly process shares: WAL mode, a busy timeout, foreign keys.

Each process (and each thread) opens its own `Database`. Reads run in autocommit mode; writes go
through `Database.transaction()`, which takes the write lock up front (BEGIN IMMEDIATE) so that two
writers queue on the busy timeout instead of failing on a lock upgrade. A process killed at any
moment leaves every committed transaction intact and no uncommitted one visible.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from instaflyd.store.migrations import SchemaTooNew, migrate, write_transaction

BUSY_TIMEOUT_MS = 30_000
DATA_DIR_MODE = 0o750  # the household's captured data: not for other users of the box
DATABASE_MODE = 0o600  # SQLite gives its -wal and -shm files the database file's mode


class StoreError(Exception):
    """The database cannot be opened or used."""


class Database:
    """One connection to `instafly.db`, migrated to the current schema on open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
        _create_private(path)
        try:
            # The timeout is SQLite's busy timeout: how long a writer waits for another's lock.
            self.conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            migrate(self.conn)
        except (sqlite3.DatabaseError, SchemaTooNew) as exc:
            raise StoreError(f"{path}: cannot open the database: {exc}") from exc

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        return write_transaction(self.conn)

    def one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def schema_version(self) -> int:
        return int(self.scalar("PRAGMA user_version"))


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would use 0644), or tighten it."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, DATABASE_MODE))
        return
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(OSError):  # not ours to change (another user's file): leave it
            if name.stat().st_mode & 0o077:
                os.chmod(name, DATABASE_MODE)
