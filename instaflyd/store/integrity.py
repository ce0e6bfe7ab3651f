"""Is the database damaged? SQLite's quick_check, the errors that mean damage, moving it aside.

Two kinds of damage are told apart. A damaged header ("file is not a database") means nothing
can be read: the file is moved aside, kept under a dated name for an expert, and the box starts
again from the latest backup or empty (`daemon.store_recovery`). Damage in the middle of the
file leaves most of it readable: `quick_check` finds it (at start and every few hours), and the
page says so with what to do, instead of failing with a generic error.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Literal

from instaflyd.store.faults import exception_chain

Damage = Literal["not_a_database", "corrupt"]

_DAMAGE_CODES: dict[int, Damage] = {
    11: "corrupt",  # SQLITE_CORRUPT: "database disk image is malformed"
    26: "not_a_database",  # SQLITE_NOTADB: "file is not a database"
}
SIDECARS = ("-wal", "-shm", "-journal")
PROBLEMS_SHOWN = 3  # quick_check stops after this many problems: enough to say it is damaged


def damage_of(exc: BaseException) -> Damage | None:
    """The damage `exc` (or its cause) reports, None for any other error."""
    for current in exception_chain(exc):
        if isinstance(current, sqlite3.DatabaseError):
            code = getattr(current, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in _DAMAGE_CODES:
                return _DAMAGE_CODES[code & 0xFF]
    return None


def quick_check(conn: sqlite3.Connection, limit: int = PROBLEMS_SHOWN) -> list[str]:
    """SQLite's quick_check: [] when the database is sound, else up to `limit` problems.

    It reads every page once (about a second per 100 MB on an SD card), so it runs at start and
    every few hours, not per request. Damage that stops the check itself is a problem too.
    """
    try:
        rows = conn.execute(f"PRAGMA quick_check({int(limit)})").fetchall()
    except sqlite3.DatabaseError as exc:
        if damage_of(exc) is None:
            raise
        return [str(exc)]
    problems = [str(row[0]) for row in rows]
    return [] if problems == ["ok"] else problems


def move_aside(path: Path, now: float | None = None) -> Path:
    """Rename the database (and its -wal, -shm) to `<name>.damaged-YYYYMMDD-HHMMSS`, kept
    beside it; returns the new name of the database file."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    for suffix in SIDECARS:
        with contextlib.suppress(FileNotFoundError):
            os.replace(path.with_name(path.name + suffix), target.with_name(target.name + suffix))
    os.replace(path, target)
    return target
