"""The daemon's own writes (its events, and its chores such as pruning the event log), done by a
thread of their own: the supervisor's loop never waits for the store.

Another program holding the database's write lock makes a write wait up to the busy timeout
(30 s). Written from the supervisor's loop (as it once was, under the supervisor's lock), one
event held up the restart of every child and, through the lock, /healthz and /api/status. Now
`record()` only appends to a bounded queue and returns; the writer thread stores the events in
order on its own connection, and what does not fit in the queue while the store is stuck is
counted and said in one log line when the store answers again. `chores(db)` runs on the same
thread about once a second between events, on the writer's own connection.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from instaflyd.logs import FaultLog
from instaflyd.store import Database
from instaflyd.store.events import Level, record_event
from instaflyd.store.faults import looks_writable

log = logging.getLogger("instafly.daemon")

MAX_WAITING = 1000  # events kept while the store does not answer
CHORES_EVERY_SECONDS = 1.0


class EventSink(Protocol):
    def record(self, component: str, level: Level, kind: str, message: str) -> None: ...


@dataclass(frozen=True)
class _Event:
    component: str
    level: Level
    kind: str
    message: str


OPEN_RETRY_SECONDS = 2.0  # while the store cannot be opened or written, events wait this long


def _takes_writes(db: Database) -> bool:
    """False while the connection is read-only and its folder still is (one statvfs)."""
    return not db.read_only or looks_writable(db.path.parent, "read_only")


class EventWriter:
    """A thread that writes the daemon's events; `record` never blocks."""

    def __init__(
        self,
        db_path: Path,
        max_waiting: int = MAX_WAITING,
        chores: Callable[[Database], None] | None = None,
    ) -> None:
        self.db_path = db_path
        self.max_waiting = max_waiting
        self.chores = chores
        self.dropped = 0  # events that did not fit while the store was stuck
        self._waiting: collections.deque[_Event] = collections.deque()
        self._cond = threading.Condition()
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._fault = FaultLog(log, "could not write the daemon's events or prune the event log")

    def start(self) -> EventWriter:
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._thread.start()
        return self

    def record(self, component: str, level: Level, kind: str, message: str) -> None:
        with self._cond:
            if len(self._waiting) >= self.max_waiting:
                self.dropped += 1
                return
            self._waiting.append(_Event(component, level, kind, message))
            self._cond.notify_all()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event recorded so far is written (or given up); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._waiting and not self._busy, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is waiting (within `timeout`), then end the thread."""
        self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=1)

    def _run(self) -> None:
        db: Database | None = None
        next_chores = time.monotonic()
        try:
            while True:
                if db is None or not _takes_writes(db):  # events wait in the queue meanwhile
                    try:
                        db = db or Database(self.db_path)
                    except Exception as exc:  # the store cannot be opened: said once, tried again
                        self._fault.failed(exc)
                    if db is None or not _takes_writes(db):
                        with self._cond:
                            if self._cond.wait_for(lambda: self._stopping, OPEN_RETRY_SECONDS):
                                if self._waiting:
                                    log.error(
                                        "%d events were not recorded: the store could not be"
                                        " written until the daemon stopped",
                                        len(self._waiting),
                                    )
                                return
                        continue
                with self._cond:
                    timeout = max(0.0, next_chores - time.monotonic()) if self.chores else None
                    self._cond.wait_for(lambda: self._waiting or self._stopping, timeout)
                    if self._stopping and not self._waiting:
                        return
                    event = self._waiting.popleft() if self._waiting else None
                    self._busy = True
                    dropped, self.dropped = self.dropped, 0
                try:
                    if db is None:
                        db = Database(self.db_path)
                    if dropped:
                        log.warning("%d events were not recorded: the store was stuck", dropped)
                    if event is not None:
                        record_event(db, event.component, event.level, event.kind, event.message)
                    if self.chores is not None and time.monotonic() >= next_chores:
                        next_chores = time.monotonic() + CHORES_EVERY_SECONDS
                        self.chores(db)
                except Exception as exc:  # the store cannot be opened: said once, tried again
                    self._fault.failed(exc)
                else:
                    self._fault.ok()
                finally:
                    with self._cond:
                        self._busy = False
                        self._cond.notify_all()
        finally:
            if db is not None:
                db.close()
