"""The SQLite database every Instafly process shares: WAL mode, a busy timeout, foreign keys.

Each process (and each thread) opens its own `Database`. Reads run in autocommit mode; writes go
through `Database.transaction()`, which takes the write lock up front (BEGIN IMMEDIATE) so that two
writers queue on the busy timeout instead of failing on a lock upgrade. A process killed at any
moment leaves every committed transaction intact and no uncommitted one visible.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from instaflyd.store.migrations import SchemaTooNew, migrate, write_transaction

BUSY_TIMEOUT_MS = 30_000


class StoreError(Exception):
    """The database cannot be opened or used."""


class Database:
    """One connection to `instafly.db`, migrated to the current schema on open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
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
        return self.conn.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def schema_version(self) -> int:
        return int(self.scalar("PRAGMA user_version"))
