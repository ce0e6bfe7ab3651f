"""The training scheduler: starts `instaflyd train --scheduled` when training is due.

Every `train.check_interval_seconds` it asks `training_status` (plain SQL, no TensorFlow) whether
enough new labelled posts have arrived. When they have, it starts one trainer process at the
CPU niceness `train.nice`, never two at a time. "Train now" on the status page asks for a run
regardless (`train --force`). A failed run is retried later, each failure doubling the wait.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Literal

from instaflyd.config import Config
from instaflyd.daemon.children import ChildProcess, instaflyd_argv
from instaflyd.status.document import TrainerStatus
from instaflyd.status.training import training_status
from instaflyd.store import Database
from instaflyd.store.events import record_event

log = logging.getLogger("instafly.daemon")

MAX_FAILURE_BACKOFF = 16  # after repeated failures, wait at most 16 check intervals


class TrainingScheduler:
    """Decides when to train and runs one trainer process at a time."""

    def __init__(self, config: Config, db: Database) -> None:
        self.config = config
        self.db = db
        self.child: ChildProcess | None = None
        self.runs = 0
        self.failures = 0  # consecutive failed runs
        self.last_exit: int | None = None
        self.last_exit_at: float | None = None
        self.last_error: str | None = None
        self.last_reason: str | None = None  # why it did or did not start a run at the last check
        self.next_check = 0.0  # monotonic; 0 = check at the first tick
        self.stopped = False
        self._requested = threading.Event()
        self._lock = threading.Lock()

    def argv(self, forced: bool) -> list[str]:
        return instaflyd_argv(self.config, "train", "--force" if forced else "--scheduled")

    def request(self) -> tuple[bool, str]:
        """ "Train now" (from the status page's thread): start a run at the next tick."""
        with self._lock:
            if self.stopped:
                return False, "the daemon is stopping"
            if self.child is not None:
                return False, f"training is already running (pid {self.child.pid})"
            self._requested.set()
            return True, "training starts now"

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if self.stopped:
                return
            if self.child is not None:
                if self.child.poll() is None:
                    return
                self._finished(now)
            forced = self._requested.is_set()
            if not forced and now < self.next_check:
                return
            self._requested.clear()
            self.next_check = now + self.config.train.check_interval_seconds
            status = training_status(self.config, self.db.conn)
            self.last_reason = status.reason
            if status.running or not (forced or status.due):
                return
            # `train --scheduled` lowers its own priority; a forced run gets it from here.
            nice = self.config.train.nice if forced else 0
            self.child = ChildProcess("trainer", self.argv(forced), nice=nice)
            self.runs += 1
            log.info("trainer started (pid %d): %s", self.child.pid, status.reason)

    def _finished(self, now: float) -> None:
        assert self.child is not None
        self.last_exit = self.child.poll()
        self.last_exit_at = time.time()
        self.last_error = self.child.last_line() if self.last_exit else None
        self.child = None
        interval = self.config.train.check_interval_seconds
        if self.last_exit == 0:
            self.failures = 0
            log.info("trainer finished")
            return
        self.failures += 1
        wait = interval * min(2 ** (self.failures - 1), MAX_FAILURE_BACKOFF)
        self.next_check = now + wait
        message = (
            f"training failed (exit status {self.last_exit}): {self.last_error or 'no output'}; "
            f"next try in {wait:.0f} s"
        )
        log.error("%s", message)
        record_event(self.db, "trainer", "error", "training_failed", message)

    def stop(self) -> ChildProcess | None:
        """Start no more runs; returns the running trainer for the caller to stop with the rest."""
        with self._lock:
            self.stopped = True
            child, self.child = self.child, None
        return child

    def snapshot(self) -> TrainerStatus:
        now = time.monotonic()
        with self._lock:
            state: Literal["running", "idle", "stopped"] = (
                "stopped" if self.stopped else "running" if self.child else "idle"
            )
            return TrainerStatus(
                state=state,
                pid=self.child.pid if self.child else None,
                runs=self.runs,
                failures=self.failures,
                last_exit=self.last_exit,
                last_exit_at=self.last_exit_at,
                last_error=self.last_error,
                last_check=self.last_reason,
                next_check_in=None if self.child else round(max(0.0, self.next_check - now), 1),
            )
