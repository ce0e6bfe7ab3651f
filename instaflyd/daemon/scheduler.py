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
from typing import ClassVar, Literal

from instaflyd.config import Config
from instaflyd.daemon.backoff import Backoff
from instaflyd.daemon.children import ChildProcess, instaflyd_argv
from instaflyd.daemon.event_writer import EventSink
from instaflyd.daemon.handover import TRAINER_IGNORES, release_if_unchanged
from instaflyd.daemon.lifelines import Lifelines, Silent
from instaflyd.policy.training import training_plan
from instaflyd.status.document import TrainerStatus
from instaflyd.store import Database
from instaflyd.store.versions import record_training_cpu
from instaflyd.weights.status import weights_status

log = logging.getLogger("instafly.daemon")

MAX_FAILURE_BACKOFF = 16  # after repeated failures, wait at most 16 check intervals


class TrainingScheduler:
    """Decides when to train and runs one trainer process at a time."""

    COMMAND: ClassVar[tuple[str, ...]] = ("train", "--scheduled")
    IGNORES: ClassVar[frozenset[str]] = TRAINER_IGNORES

    def __init__(
        self,
        config: Config,
        db: Database | None,
        events: EventSink,
        lifelines: Lifelines | None = None,
    ) -> None:
        self.config = config
        self.db = db  # read only, from the daemon's loop: is training due? (None: not open yet)
        self.events = events
        self.lifelines = lifelines
        self.hung_for: float | None = None  # the running trainer was killed for not answering
        self.child: ChildProcess | None = None
        self.forced = False  # the running trainer was asked for ("Train now")
        self.runs = 0
        self.failed_runs = Backoff(1.0, MAX_FAILURE_BACKOFF)  # in check intervals
        self.last_exit: int | None = None
        self.last_exit_at: float | None = None
        self.last_error: str | None = None
        self.last_cpu_seconds: float | None = None  # the last trainer's CPU time (kernel's)
        self.cpu_writer: threading.Thread | None = None
        self.last_reason: str | None = None  # why it did or did not start a run at the last check
        self.next_check = 0.0  # monotonic; 0 = check at the first tick
        self.stopped = False
        self._requested = threading.Event()
        self._lock = threading.Lock()

    def argv(self, forced: bool) -> list[str]:
        return instaflyd_argv(self.config, *self.COMMAND, *(["--force"] if forced else []))

    def request(self) -> tuple[bool, str]:
        """ "Train now" (from the status page's thread): start a run at the next tick."""
        with self._lock:
            if self.stopped:
                return False, "the daemon is stopping"
            if self.child is not None:
                return False, f"training is already running (pid {self.child.pid})"
            self._requested.set()
            if self.db is None:  # kept until the store opens (see `tick`)
                return True, "training starts as soon as the database opens"
            return True, "training starts now"

    def tick(self, now: float | None = None) -> None:
        """Notice the trainer's end; if a check is due, ask the store and start one. The lock is
        held only to read and change the state: the store is asked, and an event recorded,
        without it (the page's thread reads `snapshot()` under it)."""
        now = time.monotonic() if now is None else now
        failed: str | None = None
        ended: ChildProcess | None = None
        with self._lock:
            if self.stopped:
                return
            if self.child is not None:
                if self.child.poll() is None:
                    return
                ended = self.child
                failed = self._finished(now)
            forced = self._requested.is_set()
            due = forced or now >= self.next_check
            if due:
                self._requested.clear()
                self.next_check = now + self.config.train.check_interval_seconds
        if ended is not None:
            self._record_cpu(ended)
        if failed:
            self.events.record("trainer", "error", "training_failed", failed)
        if not due:
            return
        if self.db is None:  # the store cannot be opened yet (a read-only data folder)
            with self._lock:
                self.last_reason = "waiting for the database to open"
                if forced:  # "Train now" is kept, not dropped: it starts once the store opens
                    self._requested.set()
            return
        weights = weights_status(self.config)
        status = training_plan(
            self.config, self.db.conn, weights_ok=weights.ok, weights_message=weights.message
        )
        with self._lock:
            self.last_reason = status.reason
            if self.stopped or self.child is not None:
                return
            if status.running or not (forced or status.due):
                return
            self.child = ChildProcess(
                "trainer", self.argv(forced), nice=self.config.train.nice, listener=self.lifelines
            )
            self.hung_for = None
            self.forced = forced
            if self.lifelines is not None:
                self.lifelines.expect("trainer", self.child.pid)
            self.runs += 1
            log.info("trainer started (pid %d): %s", self.child.pid, status.reason)

    def _finished(self, now: float) -> str | None:
        """Note the trainer's end (under the lock); returns the event to record, if any."""
        assert self.child is not None
        self.last_exit = self.child.poll()
        self.last_exit_at = time.time()
        self.last_cpu_seconds = self.child.cpu_seconds
        if self.hung_for is not None:
            self.last_error = f"stopped answering for {self.hung_for:.0f} s (hung)"
        else:
            self.last_error = self.child.last_error() if self.last_exit else None
        if self.lifelines is not None:
            self.lifelines.ended("trainer")
        self.child = None
        interval = self.config.train.check_interval_seconds
        self.next_check = now + interval  # from the run's end, not its start
        if self.last_exit == 0:
            self.failed_runs.succeeded()
            # the trainer logged its result; this is the supervisor's account of its cost
            log.debug("trainer finished: %.1f CPU seconds", self.last_cpu_seconds or 0.0)
            return None
        wait = interval * self.failed_runs.failed()
        self.next_check = now + wait
        message = (
            f"training failed (exit status {self.last_exit}): {self.last_error or 'no output'}; "
            f"next try in {wait:.0f} s"
        )
        log.error("%s", message)
        return message

    def hung(self, silent: Silent) -> bool:
        """The trainer stopped answering: kill it (its run is then recovered and retried)."""
        with self._lock:
            if self.child is None or silent.pid != self.child.pid:
                return False
            self.hung_for = silent.silent_for
            self.child.kill()
        log.error("the trainer (pid %d) stopped answering for %.0f s; killing it", silent.pid,
                  silent.silent_for)  # fmt: skip
        return True

    def _record_cpu(self, child: ChildProcess) -> None:
        """The ended child's CPU time on its run, for the daily budget: written by a short thread
        on its own connection, so the loop never waits for the store (the trainer has recorded
        its own, smaller figure already; this one also covers a killed trainer's)."""
        if child.cpu_seconds is None:
            return
        self.cpu_writer = threading.Thread(
            target=_write_cpu, args=(self.config, child.pid, child.cpu_seconds),
            name="trainer-cpu", daemon=True,
        )  # fmt: skip
        self.cpu_writer.start()

    def release(self, new: Config) -> ChildProcess | None:
        """A reload to `new`: the running trainer, let go for the next daemon's scheduler if
        `new` changes nothing it reads (`daemon.handover`); None if it is to be stopped."""
        with self._lock:
            return release_if_unchanged(self, new)

    def adopt(self, child: ChildProcess) -> None:
        """Take over the trainer an earlier scheduler let go of (a reload): its run goes on,
        under our lifelines, and its end is noted as any other's."""
        with self._lock:
            self.child = child
            child.listener = self.lifelines
            if self.lifelines is not None:
                self.lifelines.expect("trainer", child.pid)
            self.runs += 1
        log.info("trainer kept running (pid %d): its settings did not change", child.pid)

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
                failures=self.failed_runs.failures,
                last_exit=self.last_exit,
                last_exit_at=self.last_exit_at,
                last_error=self.last_error,
                last_check=self.last_reason,
                next_check_in=None if self.child else round(max(0.0, self.next_check - now), 1),
            )


def _write_cpu(config: Config, pid: int, seconds: float) -> None:
    try:
        with Database(config.db_path) as db, db.transaction() as conn:
            record_training_cpu(conn, seconds, pid=pid)
    except sqlite3.Error as exc:
        log.error("could not record the trainer's CPU time (%.1f s): %s", seconds, exc)
