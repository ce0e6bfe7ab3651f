"""`instaflyd worker --enhancer`: the process that holds TensorFlow and the model while there is
work, started by the worker's loop.

TensorFlow's memory (the runtime, the model, the compiled gradient steps: hundreds of megabytes)
is never given back by a Python process that keeps running, so the model lives in a process of
its own that ends when its work is done. It loads the current model, releases the photos that
waited for one, and enhances queued jobs one by one. It ends by itself:

- after `watch.idle_unload_seconds` without a job (exit 0: the loop starts a new one for the next
  photo, which then waits the few seconds a start takes);
- when a newer model version is promoted (exit 0: a new one loads it);
- when the model cannot be loaded (exit EXIT_NO_MODEL: the photos wait, visibly, and the loop
  tries again later);
- on SIGTERM or SIGINT: a job in progress goes back to the queue, unchanged.

It dies with the worker (PR_SET_PDEATHSIG): a worker killed with SIGKILL never leaves it behind,
and the job it was on is recovered by the next worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING

from instaflyd import heartbeat, jobs
from instaflyd.config import Config
from instaflyd.jobs.files import JobFiles
from instaflyd.store import Database
from instaflyd.store.events import log_event
from instaflyd.store.faults import transient_fault
from instaflyd.store.jobs import jobs_by_state
from instaflyd.store.versions import current_model_version
from instaflyd.watch.enhancer_process import EXIT_NO_MODEL, WORKER_PID_ENV

if TYPE_CHECKING:
    from instaflyd.model.scoring import Scorer
    from instaflyd.watch.job import JobRunner

log = logging.getLogger("instafly.worker")

POLL_SECONDS = 0.5  # how often the queue and the model version are checked
_PR_SET_PDEATHSIG = 1


def run_enhancer(config: Config) -> int:
    """The body of `instaflyd worker --enhancer`; returns the exit status."""
    if not _die_with_parent():
        log.warning("the worker that started this enhancer is gone; not starting")
        return 0
    heartbeat.start_thread("enhancer")  # one enhancement can be minutes of TensorFlow
    return Enhancer(config).run()


class Enhancer:
    """Loads the model once, enhances jobs until idle, replaced or stopped."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pid = os.getpid()
        self.stopping = threading.Event()
        self.runner: JobRunner | None = None  # once the model is loaded

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        with Database(self.config.db_path) as db:
            files = JobFiles(self.config.watch, db, self.pid)
            scorer = self._load(db)
            if scorer is None:
                return EXIT_NO_MODEL
            from instaflyd.watch.job import JobRunner, Stopping

            self.runner = JobRunner(self.config, db, files, scorer)
            self._warm_up(db, scorer)
            with contextlib.suppress(Stopping):  # a job in progress was queued again
                self._serve(db, scorer.version)
        return 0

    def _load(self, db: Database) -> Scorer | None:
        """The current model (TensorFlow is imported here); None when it cannot be loaded."""
        from instaflyd.model.errors import NoModelError
        from instaflyd.model.scoring import load_scorer

        started = time.monotonic()
        try:
            scorer = load_scorer(self.config)
        except Exception as exc:
            if not isinstance(exc, NoModelError):
                log.exception("cannot load the model")
            why = str(exc) if isinstance(exc, NoModelError) else f"{type(exc).__name__}: {exc}"
            jobs.wait_for_a_model(db, f"the model cannot be loaded: {why}")
            return None
        seconds = time.monotonic() - started
        with db.transaction() as conn:
            released = jobs.release_waiting(conn)
            message = f"model version {scorer.version} loaded in {seconds:.1f} s (pid {self.pid})"
            if released:
                message += f"; {released} waiting photos queued"
            log_event(conn, "worker", "info", "model_loaded", message)
        log.info("%s", message)
        return scorer

    def _warm_up(self, db: Database, scorer: Scorer) -> None:
        """With no photo queued yet (started because an upload begins), compile the gradient
        step now, while the photo is on its way; a queued photo is started at once instead."""
        if jobs_by_state(db.conn).queued:
            return
        from instaflyd.enhance.pipeline import search_size, warm_up

        size = search_size(self.config, scorer)
        seconds = warm_up(scorer, self.config.enhance.mode, size)
        log.info("gradient step compiled in %.1f s, before the first photo", seconds)

    def _serve(self, db: Database, version: int | None) -> None:
        assert self.runner is not None
        idle_since = time.monotonic()
        while not self.stopping.is_set():
            current = current_model_version(db.conn)
            if current is not None and current.version != version:
                self._end(db, f"model version {current.version} was promoted")
                return
            if self.runner.wait_seconds:  # the last photo could not be saved: wait a little
                self.stopping.wait(self.runner.wait_seconds)
                if not self.runner.settle_waiting():
                    continue
            try:
                job = jobs.claim_next(db, self.pid)
            except Exception as exc:  # a full or read-only store: wait, and try again
                if transient_fault(exc) is None:
                    raise
                self.runner.wait_seconds = max(self.runner.wait_seconds, 2.0)
                continue
            if job is not None:
                self.runner.process(job)
                idle_since = time.monotonic()
                continue
            idle = time.monotonic() - idle_since
            if idle >= self.config.watch.idle_unload_seconds:
                self._end(db, f"idle for {idle:.0f} s")
                return
            self.stopping.wait(POLL_SECONDS)

    def _end(self, db: Database, why: str) -> None:
        assert self.runner is not None
        message = f"unloaded model version {self.runner.scorer.version}: {why}; the enhancer ends"
        with db.transaction() as conn:
            log_event(conn, "worker", "info", "model_unloaded", message)
        log.info("%s", message)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("%s received; stopping", signal.Signals(signum).name)
        self.stopping.set()
        runner = self.runner
        if runner is not None:
            runner.stopping = True
            if runner.enhancing:
                from instaflyd.watch.job import Stopping

                runner.enhancing = False
                raise Stopping


def _die_with_parent() -> bool:
    """Ask the kernel for SIGKILL when the worker ends; False if it has ended already."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the worker stops it on the way out
        pass
    expected = os.environ.get(WORKER_PID_ENV)
    return expected is None or str(os.getppid()) == expected
