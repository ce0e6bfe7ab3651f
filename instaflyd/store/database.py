"""The SQLite database every Instafly process shares: WAL mode, a busy timeout, foreign keys.

Each process (and each thread) opens its own `Database`. Reads run in autocommit mode; writes go
through `Database.transaction()`, which takes the write lock up front (BEGIN IMMEDIATE) so that two
writers queue on the busy timeout instead of failing on a lock upgrade. A process killed at any
moment leaves every committed transaction intact and no uncommitted one visible.

A data folder that is read-only (an SD card the kernel remounted after errors, or one the box
started on) makes SQLite open the database read-only without saying so, and such a connection
stays read-only after the folder is writable again. So a `Database` remembers when it was opened
on a read-only folder, or saw a write refused as read-only, and before its next write reopens
its connection once the folder is writable (`store.faults.looks_writable`: one statvfs).
Opening fails with a `StoreError` whose `fault` says when the cause is a passing one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from instaflyd.store.faults import Fault, looks_writable, transient_fault
from instaflyd.store.migrations import SchemaTooNew, migrate, write_transaction

log = logging.getLogger("instafly.store")

BUSY_TIMEOUT_MS = 30_000
REOPEN_SECONDS = 1.0  # after a failed reopen, the next try waits this long
DATA_DIR_MODE = 0o750  # the household's captured data: not for other users of the box
DATABASE_MODE = 0o600  # SQLite gives its -wal and -shm files the database file's mode


class StoreError(Exception):
    """The database cannot be opened or used; `fault` names a passing cause (a read-only or
    full disk: retrying later may work), None for any other."""

    def __init__(self, message: str, fault: Fault | None = None) -> None:
        super().__init__(message)
        self.fault = fault


class Database:
    """One connection to `instafly.db`, migrated to the current schema on open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stuck_read_only = False  # opened on a read-only folder, or a write was refused
        self._tried_reopen = 0.0
        try:
            path.parent.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
            _create_private(path)
        except OSError as exc:
            fault = transient_fault(exc)
            raise StoreError(f"{path}: cannot open the database: {exc}", fault) from exc
        self.conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        self._stuck_read_only = not looks_writable(self.path.parent, "read_only")
        try:
            # The timeout is SQLite's busy timeout: how long a writer waits for another's lock.
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except sqlite3.DatabaseError as exc:
            fault = transient_fault(exc)
            raise StoreError(f"{self.path}: cannot open the database: {exc}", fault) from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn)
        except (sqlite3.DatabaseError, SchemaTooNew) as exc:
            conn.close()
            raise StoreError(
                f"{self.path}: cannot open the database: {exc}", transient_fault(exc)
            ) from exc
        return conn

    @property
    def read_only(self) -> bool:
        """Whether this connection was opened on a read-only folder or had a write refused
        since (it is reopened before the next write once the folder is writable)."""
        return self._stuck_read_only

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        return self._write()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self._stuck_read_only:
            self._reopen_if_writable()
        try:
            with write_transaction(self.conn) as conn:
                yield conn
        except sqlite3.OperationalError as exc:
            if transient_fault(exc) == "read_only":
                self._stuck_read_only = True
            raise

    def _reopen_if_writable(self) -> None:
        """Swap in a new connection once the folder takes writes again (one statvfs to see;
        a failed reopen is tried again a second later); the old one stays if the new one
        cannot be opened."""
        now = time.monotonic()
        if now - self._tried_reopen < REOPEN_SECONDS:
            return
        if not looks_writable(self.path.parent, "read_only"):
            return
        try:
            conn = self._connect()
        except StoreError:
            self._stuck_read_only = True
            self._tried_reopen = now
            return
        old, self.conn = self.conn, conn
        with contextlib.suppress(sqlite3.Error):
            old.close()
        log.info("the data folder is writable again: reopened %s read-write", self.path.name)

    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would use 0644), or tighten it."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, DATABASE_MODE))
        return
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(OSError):  # not ours to change (another user's file): leave it
            if name.stat().st_mode & 0o077:
                os.chmod(name, DATABASE_MODE)
