"""The `instaflyd worker` process: watch the drop folder, and have each queued photo enhanced once.

This process never loads TensorFlow, so it stays small while the box is idle. One loop in the
main thread: recover the jobs of a process that died while enhancing, and when photos are queued,
start the enhancer process (`enhancer`), which loads the model, enhances them and ends after
`watch.idle_unload_seconds` without work, giving all its memory back. While there is no model
(none trained yet, or it cannot be loaded) queued photos wait, visibly, as `waiting_model`. The
watcher queues new photos from its own thread and wakes the loop. SIGTERM (or Ctrl-C) stops the
enhancer (a job in progress goes back to the queue, unchanged) within the shutdown budget.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from types import FrameType

from instaflyd import heartbeat, jobs, shutdown
from instaflyd.config import Config
from instaflyd.jobs.files import JobFiles
from instaflyd.logs import FaultLog
from instaflyd.store import Database
from instaflyd.store.events import Level, record_event
from instaflyd.store.jobs import jobs_by_state
from instaflyd.store.opening import StoreOpening, StoreShut
from instaflyd.store.versions import current_model_version
from instaflyd.watch.enhancer_process import EXIT_NO_MODEL, EnhancerProcess
from instaflyd.watch.watcher import DropWatcher

log = logging.getLogger("instafly.worker")

POLL_SECONDS = 0.5  # how often the queue and the enhancer are checked without a wake-up
LOAD_RETRY_SECONDS = 30.0  # after the model failed to load
CRASH_PAUSE = 5.0  # after the enhancer crashed, or an unexpected error in the loop
PRELOAD_WINDOW_SECONDS = 120.0  # an upload announced longer ago than this starts nothing
STORE_RETRY_SECONDS = 2.0  # while the store cannot be opened (a read-only data folder)


class Worker:
    """The drop-folder worker; `run()` returns the exit status once stopped."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pid = os.getpid()
        self.wake = threading.Event()
        self.stopped = threading.Event()  # a signal asked it to stop (also ends a store wait)
        self.enhancer = EnhancerProcess(config)
        self._started_for: int | None = None  # the model version the enhancer was started for
        self._load_failed: int | None = None  # the version that could not be loaded...
        self._not_before = 0.0  # ...and when (monotonic) the enhancer may start again
        self._wanted_seen = 0.0  # the page's last "an upload begins" (mtime) acted on
        self.db: Database
        self.files: JobFiles

    def run(self) -> int:
        watch = self.config.watch
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        watcher = DropWatcher(watch, self.config.db_path, on_queued=self.wake.set)
        watcher.start()  # it waits for the store by itself, and finds what came meanwhile
        opened = self._open_store()
        if opened is None:  # stopped while waiting for the store
            watcher.stop()
            return 0
        self.db = opened
        with contextlib.suppress(OSError):  # a read-only disk: the enhancer says so per job
            watch.output_dir.mkdir(parents=True, exist_ok=True)
        self.files = JobFiles(watch, self.db, self.pid)
        self._event(
            "info",
            "worker_started",
            f"worker started (pid {self.pid}): {watch.drop_dir} -> {watch.output_dir}",
        )
        try:
            while not self.stopped.is_set():
                heartbeat.beat("worker")  # from the loop: a stuck loop goes quiet
                self.wake.clear()
                try:
                    self.step()
                except Exception:  # the store is locked or broken: say so, wait, try again
                    log.exception("the worker loop failed; trying again in %.0f s", CRASH_PAUSE)
                    self.wake.wait(CRASH_PAUSE)
                self.wake.wait(POLL_SECONDS)
        finally:
            watcher.stop()
            self.enhancer.stop(shutdown.for_children(shutdown.WORKER_SHARE))
            jobs.recover_dead(self.db, self.files, watch.max_attempts)
            self._event("info", "worker_stopped", f"worker stopped (pid {self.pid})")
            self.db.close()
        return 0

    def _open_store(self) -> Database | None:
        """The worker's connection; while a passing fault (a read-only or full data folder)
        keeps the store shut: said once, tried again every few seconds, beating meanwhile
        (the worker waits, it does not hang), instead of an exit into a restart loop. None if
        stopped while waiting."""
        waiting = FaultLog(log, "cannot open the store; waiting until it can")

        def still_waiting(shut: StoreShut) -> None:
            waiting.failed(shut.exception)
            heartbeat.beat("worker")

        heartbeat.beat("worker")
        return StoreOpening(
            lambda: Database(self.config.db_path),
            every=STORE_RETRY_SECONDS,
            waiting=still_waiting,
            opened=lambda shut: waiting.ok(),
        ).wait(self.stopped)

    def step(self) -> None:
        """Notice the enhancer's end, recover what a dead process left, start one if needed."""
        code = self.enhancer.reap()
        if code is not None:
            self._enhancer_ended(code)
        jobs.recover_dead(self.db, self.files, self.config.watch.max_attempts)
        if self.enhancer.running:
            return
        counts = jobs_by_state(self.db.conn)
        if counts.waiting == 0 and not self._upload_begins():
            return
        current = current_model_version(self.db.conn)
        if current is None:
            if counts.queued:
                jobs.wait_for_a_model(self.db, "no model has been trained yet")
            return
        version = current.version
        if time.monotonic() < self._not_before and version == self._load_failed:
            if counts.queued:
                jobs.wait_for_a_model(
                    self.db, f"model version {version} cannot be loaded (see the log)"
                )
            return
        if time.monotonic() < self._not_before and self._load_failed is None:
            return  # the enhancer crashed a moment ago
        self._started_for = version
        self.enhancer.start()

    def _upload_begins(self) -> bool:
        """The page announced an upload (touched `enhancer_wanted_path`) since the last look:
        start loading the model now, while the photo is still on its way. The enhancer then
        stays for `watch.idle_unload_seconds`, so the rest of a burst finds it loaded."""
        try:
            touched = self.config.enhancer_wanted_path.stat().st_mtime
        except OSError:
            return False
        if touched <= self._wanted_seen:
            return False
        self._wanted_seen = touched
        return time.time() - touched < PRELOAD_WINDOW_SECONDS

    def _enhancer_ended(self, code: int) -> None:
        self._load_failed = None
        if code == 0:
            return
        if code == EXIT_NO_MODEL:
            self._load_failed = self._started_for
            self._not_before = time.monotonic() + LOAD_RETRY_SECONDS
            return
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        self._event("error", "enhancer_crashed", f"the enhancer {how}; starting it again")
        self._not_before = time.monotonic() + CRASH_PAUSE

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("%s received; stopping", signal.Signals(signum).name)
        self.stopped.set()
        self.wake.set()

    def _event(self, level: Level, kind: str, message: str) -> None:
        record_event(self.db, "worker", level, kind, message, echo=True)


def run_worker(config: Config) -> int:
    """The body of `instaflyd worker`."""
    return Worker(config).run()
