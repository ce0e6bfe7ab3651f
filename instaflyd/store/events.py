"""The event log (what went wrong or worth knowing, shown on the status page) and counters.

Two ways in, one table: `log_event(conn, ...)` inside the transaction that made the change the
event is about (both commit or neither), and `record_event(db, ...)` for an event on its own,
in a transaction of its own that never raises. Both can echo the message to the Python log.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from instaflyd.store.rows import record

if TYPE_CHECKING:
    from instaflyd.store.database import Database

log = logging.getLogger("instafly.store")

Level = Literal["debug", "info", "warning", "error"]
KEEP_EVENTS = 10_000


@dataclass(frozen=True)
class Event:
    """One entry of the event log."""

    id: int
    ts: float
    component: str
    level: Level
    kind: str
    message: str


_LOG_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def log_event(
    conn: sqlite3.Connection,
    component: str,
    level: Level,
    kind: str,
    message: str,
    *,
    echo: bool = False,
) -> None:
    """Append an event; the oldest beyond KEEP_EVENTS are dropped. With `echo`, the message
    also goes to the `instafly.<component>` logger at the event's level (journald sees it)."""
    if echo:
        logging.getLogger(f"instafly.{component}").log(_LOG_LEVELS[level], message)
    cursor = conn.execute(
        "INSERT INTO events (ts, component, level, kind, message) VALUES (?, ?, ?, ?, ?)",
        (time.time(), component, level, kind, message[:2000]),
    )
    if cursor.lastrowid and cursor.lastrowid % 1000 == 0:
        conn.execute("DELETE FROM events WHERE id <= ?", (cursor.lastrowid - KEEP_EVENTS,))


def record_event(
    db: Database,
    component: str,
    level: Level,
    kind: str,
    message: str,
    *,
    echo: bool = False,
) -> None:
    """`log_event` in a transaction of its own, for the long-running loops (supervisor,
    scheduler, worker, capture writer) that the event log must never take down: a store error
    is logged instead."""
    try:
        with db.transaction() as conn:
            log_event(conn, component, level, kind, message, echo=echo)
    except Exception as exc:
        log.warning("could not write the event log: %s", exc)


def recent_events(
    conn: sqlite3.Connection, limit: int = 20, min_level: Level = "debug"
) -> list[Event]:
    """The newest events at `min_level` or above, newest first."""
    levels = get_args(Level)
    wanted = levels[levels.index(min_level) :]
    marks = ",".join("?" * len(wanted))
    rows = conn.execute(
        f"SELECT id, ts, component, level, kind, message FROM events"
        f" WHERE level IN ({marks}) ORDER BY id DESC LIMIT ?",
        (*wanted, limit),
    )
    return [record(Event, row) for row in rows]


def add_to_counter(conn: sqlite3.Connection, name: str, amount: int = 1) -> None:
    conn.execute(
        "INSERT INTO counters (name, value) VALUES (?, ?)"
        " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        (name, amount),
    )


def counters(conn: sqlite3.Connection) -> dict[str, int]:
    return {row["name"]: row["value"] for row in conn.execute("SELECT name, value FROM counters")}


PRUNE_BATCH = 5_000
KEEP_NEWEST = 1_000  # never pruned by age, whatever the clock says


def prune_events(db: Database, older_than: float, keep_newest: int = KEEP_NEWEST) -> int:
    """Delete the events older than `older_than` (unix seconds), except the newest
    `keep_newest` (a clock stepped far ahead must not empty the log); returns how many. In
    batches, each its own transaction, so that a long backlog never holds the write lock long."""
    deleted = 0
    while True:
        with db.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM events WHERE id IN"
                " (SELECT id FROM events WHERE ts < ?"
                "   AND id <= (SELECT COALESCE(MAX(id), 0) FROM events) - ?"
                "  ORDER BY ts LIMIT ?)",
                (older_than, keep_newest, PRUNE_BATCH),
            )
        deleted += cursor.rowcount
        if cursor.rowcount < PRUNE_BATCH:
            return deleted
