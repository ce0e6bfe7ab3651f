"""The training scheduler: starts `instaflyd train --scheduled` when training is due.

Every `train.check_interval_seconds`, counted from the end of the last run (monotonic clock), it
asks the training policy (`policy.training`: plain SQL, no TensorFlow) whether training is due:
new posts since the last run, the back-off after models that were not better, the daily CPU
budget. When it is, it starts one trainer process at the CPU niceness `train.nice`, never two at
a time. "Train now" on the status page asks for a run regardless (`--force`). When a trainer
ends, its CPU time (the kernel's account of the child, killed or not) is recorded on its run for
the budget. A failed run is retried later, each failure doubling the wait.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Literal

from instaflyd.config import Config
from instaflyd.daemon.children import ChildProcess, instaflyd_argv
from instaflyd.policy.training import training_plan
from instaflyd.status.document import TrainerStatus
from instaflyd.status.weights import weights_status
from instaflyd.store import Database
from instaflyd.store.events import record_event
from instaflyd.store.versions import record_training_cpu

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
        return instaflyd_argv(self.config, "train", "--scheduled", *(["--force"] if forced else []))

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
            weights = weights_status(self.config)
            status = training_plan(
                self.config, self.db.conn, weights_ok=weights.ok, weights_message=weights.message
            )
            self.last_reason = status.reason
            if status.running or not (forced or status.due):
                return
            self.child = ChildProcess("trainer", self.argv(forced), nice=self.config.train.nice)
            self.runs += 1
            log.info("trainer started (pid %d): %s", self.child.pid, status.reason)

    def _finished(self, now: float) -> None:
        assert self.child is not None
        child, self.child = self.child, None
        self.last_exit = child.poll()
        self.last_exit_at = time.time()
        self.last_error = child.last_line() if self.last_exit else None
        self._record_cpu(child)
        interval = self.config.train.check_interval_seconds
        self.next_check = now + interval  # from the run's end, not its start
        if self.last_exit == 0:
            self.failures = 0
            # the trainer logged its result; this is the supervisor's account of its cost
            log.debug("trainer finished: %.1f CPU seconds", child.cpu_seconds or 0.0)
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

    def _record_cpu(self, child: ChildProcess) -> None:
        """The child's CPU time on its run, for the daily budget (never stops the loop)."""
        if child.cpu_seconds is None:
            return
        try:
            with self.db.transaction() as conn:
                record_training_cpu(conn, child.cpu_seconds, pid=child.pid)
        except sqlite3.Error as exc:
            log.error("could not record the trainer's CPU time: %s", exc)

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
