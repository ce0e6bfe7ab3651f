"""The `instaflyd worker` process: watch the drop folder and enhance each queued photo once.

One loop in the main thread: recover jobs whose worker died, wait (visibly, as `waiting_model`)
while there is no model, load the current model (again when a newer version is promoted), claim
one job, enhance it, record the result. The watcher queues new photos from its own thread and
wakes the loop. Every output goes through a temp file and a rename; the original is only read.
SIGTERM (or Ctrl-C) during an enhancement puts the job back in the queue, unchanged, and exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from instaflyd.config import Config
from instaflyd.enhance.io import RejectedImage
from instaflyd.enhance.outputs import output_paths, write_sidecar
from instaflyd.enhance.pipeline import EnhanceResult, enhance_file
from instaflyd.fsutil import remove_stale_temps
from instaflyd.model.scoring import NoModelError, Scorer, load_scorer
from instaflyd.store import Database
from instaflyd.store.events import Level, log_event
from instaflyd.store.jobs import (
    JobState,
    finish_job,
    get_job,
    jobs_by_state,
    output_of_another_job,
    release_waiting_jobs,
    requeue_job,
    reserve_outputs,
    wait_for_model,
)
from instaflyd.store.versions import current_model_version
from instaflyd.watch.model_slot import ModelSlot
from instaflyd.watch.queue import (
    attempts,
    claim_job,
    file_sha256,
    live_workers,
    recover_abandoned_jobs,
)
from instaflyd.watch.watcher import DropWatcher

log = logging.getLogger("instafly.worker")

POLL_SECONDS = 0.5  # how often the queue and the model version are checked without a wake-up
LOAD_RETRY_SECONDS = 30.0  # after a model failed to load
ERROR_PAUSE = 5.0  # after an unexpected error in the loop


class Stopping(BaseException):
    """SIGTERM or SIGINT arrived while a photo was being enhanced."""


class Worker:
    """The drop-folder worker; `run()` returns the exit status once stopped."""

    def __init__(self, config: Config, loader: Callable[[Config], Scorer] = load_scorer) -> None:
        self.config = config
        self.pid = os.getpid()
        self.models = ModelSlot(config, loader)
        self.wake = threading.Event()
        self.stopping = False
        self._enhancing = False
        self._load_failed: tuple[int, float, str] | None = None  # (version, when, why)
        self.db: Database

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        watch = self.config.watch
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        watch.output_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.config.db_path)
        watcher = DropWatcher(watch, self.config.db_path, on_queued=self.wake.set)
        self._event(
            "info",
            "worker_started",
            f"worker started (pid {self.pid}): {watch.drop_dir} -> {watch.output_dir}",
        )
        try:
            self._recover()
            watcher.start()
            while not self.stopping:
                self.wake.clear()
                try:
                    busy = self.step()
                except Exception:  # the store is locked or broken: say so, wait, try again
                    log.exception("the worker loop failed; trying again in %.0f s", ERROR_PAUSE)
                    busy = False
                    time.sleep(ERROR_PAUSE)
                if not busy:
                    self.wake.wait(POLL_SECONDS)
        except Stopping:
            pass
        finally:
            watcher.stop()
            self.models.unload("the worker stopped")
            self._event("info", "worker_stopped", f"worker stopped (pid {self.pid})")
            self.db.close()
        return 0

    def step(self) -> bool:
        """Do one job if there is one to do now; False when there was nothing to do."""
        self._recover()
        current = current_model_version(self.db.conn)
        counts = jobs_by_state(self.db.conn)
        if counts["queued"] + counts["waiting_model"] == 0:
            if self.models.unload_if_idle():
                self._event("info", "model_unloaded", "model freed: no work for a while")
            return False
        scorer = self._scorer(current, counts["queued"])
        if scorer is None:
            return False
        if counts["waiting_model"]:
            with self.db.transaction() as conn:
                released = release_waiting_jobs(conn)
                log_event(
                    conn,
                    "worker",
                    "info",
                    "model_ready",
                    f"model version {scorer.version} ready; {released} waiting photos queued",
                )
        job = claim_job(self.db, self.pid)
        if job is None:
            return False
        self.process(job, scorer)
        return True

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("%s received; stopping", signal.Signals(signum).name)
        self.stopping = True
        if self._enhancing:
            self._enhancing = False
            raise Stopping

    # --- the model -----------------------------------------------------------------------------

    def _scorer(self, current: sqlite3.Row | None, queued: int) -> Scorer | None:
        """The current model, loaded; None while there is none (queued jobs then wait for it)."""
        if current is None:
            return self._wait_for_model(queued, "no model has been trained yet")
        version = current["version"]
        failed = self._load_failed
        if failed and failed[0] == version and time.monotonic() < failed[1] + LOAD_RETRY_SECONDS:
            return self._wait_for_model(queued, failed[2])
        loaded = self.models.version
        try:
            scorer = self.models.scorer(version)
        except Exception as exc:
            if not isinstance(exc, NoModelError):
                log.exception("cannot load model version %s", version)
            why = str(exc) if isinstance(exc, NoModelError) else f"{type(exc).__name__}: {exc}"
            self._load_failed = (version, time.monotonic(), why)
            return self._wait_for_model(queued, f"model version {version} cannot be loaded: {why}")
        self._load_failed = None
        if scorer.version != loaded:
            self._event("info", "model_loaded", f"model version {scorer.version} loaded")
        return scorer

    def _wait_for_model(self, queued: int, why: str) -> None:
        """Move the queued jobs to waiting_model, saying why."""
        if not queued:
            return
        with self.db.transaction() as conn:
            parked = wait_for_model(conn)
            log_event(conn, "worker", "warning", "waiting_model", f"{_photos_wait(parked)}: {why}")
        log.warning("%s: %s", _photos_wait(parked), why)

    # --- one job -------------------------------------------------------------------------------

    def process(self, job: sqlite3.Row, scorer: Scorer) -> None:
        """Enhance the photo of a claimed job and record how it ended, whatever happens."""
        try:
            self._enhance(job, scorer)
        except Exception as exc:
            log.exception("job %d (%s) failed", job["id"], job["input_path"])
            self._release_outputs(get_job(self.db.conn, job["id"]))
            self._fail_or_retry(job, f"enhancement failed: {type(exc).__name__}: {exc}")

    def _enhance(self, job: sqlite3.Row, scorer: Scorer) -> None:
        source = Path(job["input_path"])
        self._release_outputs(job)  # a report of an earlier outcome, when retried from the page
        problem = self._input_problem(job)
        if problem:
            self._finish(job, "rejected", problem)
            return
        output_dir = self._output_dir_for(source)
        # Recorded before anything is written: a retry after a crash removes what is left.
        output, sidecar = output_paths(output_dir, source.stem)
        with self.db.transaction() as conn:
            reserve_outputs(conn, job["id"], str(output), str(sidecar))
        try:
            self._enhancing = True
            try:
                if self.stopping:  # asked to stop between the claim and here
                    raise Stopping
                result = enhance_file(source, output_dir, scorer, self.config)
            finally:
                self._enhancing = False
        except Stopping:
            self._release_outputs(get_job(self.db.conn, job["id"]))
            with self.db.transaction() as conn:
                requeue_job(conn, job["id"], count_attempt=False)
                log_event(conn, "worker", "info", "job_interrupted", f"{source.name}: queued again")
            log.info("%s: interrupted; queued again", source.name)
            raise
        except RejectedImage as exc:
            write_sidecar(sidecar, {"status": "rejected", "input": str(source), "reason": str(exc)})
            self._finish(job, "rejected", str(exc), sidecar=sidecar)
            return
        self._finish(
            job,
            "done",
            f"score {result.score_before} -> {result.score_after}",
            result=result,
            model_version=scorer.version,
        )

    def _input_problem(self, job: sqlite3.Row) -> str | None:
        """Why the queued file cannot be enhanced any more (gone, or changed since queued)."""
        try:
            sha256 = file_sha256(Path(job["input_path"]))
        except FileNotFoundError:
            return "the file was removed from the drop folder before it could be enhanced"
        except OSError:
            return None  # enhancement refuses it, with the reason, in a sidecar
        if job["sha256"] and sha256 != job["sha256"]:
            return "the file changed after it was queued; its new content is queued separately"
        return None

    def _output_dir_for(self, source: Path) -> Path:
        """The output folder mirrors the drop folder's subfolders."""
        watch = self.config.watch
        if source.parent.is_relative_to(watch.drop_dir):
            return watch.output_dir / source.parent.relative_to(watch.drop_dir)
        return watch.output_dir

    def _finish(
        self,
        job: sqlite3.Row,
        state: JobState,
        message: str,
        *,
        sidecar: Path | None = None,
        result: EnhanceResult | None = None,
        model_version: int | None = None,
    ) -> None:
        name = Path(job["input_path"]).name
        if result is not None:
            sidecar = result.sidecar
        with self.db.transaction() as conn:
            finish_job(
                conn,
                job["id"],
                state,
                reason=None if state == "done" else message,
                output_path=str(result.output) if result else None,
                sidecar_path=str(sidecar) if sidecar else None,
                score_before=result.score_before if result else None,
                score_after=result.score_after if result else None,
                model_version=model_version,
            )
            log_event(conn, "worker", "info", f"job_{state}", f"{name}: {state}: {message}")
        log.info("%s: %s: %s", name, state, message)

    def _fail_or_retry(self, job: sqlite3.Row, reason: str) -> None:
        if job["attempts"] >= self.config.watch.max_attempts:
            reason = f"gave up after {attempts(job['attempts'])}: {reason}"
            self._finish(job, "failed", reason, sidecar=self._failure_sidecar(job, reason))
            return
        with self.db.transaction() as conn:
            requeue_job(conn, job["id"], reason=reason)
            log_event(conn, "worker", "warning", "job_retried", f"{job['input_path']}: {reason}")

    # --- crashes -------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Jobs a dead worker left running: queue them again (or fail them), remove its files."""
        max_attempts = self.config.watch.max_attempts
        for job_id in recover_abandoned_jobs(self.db, max_attempts, idle_pid=self.pid):
            job = get_job(self.db.conn, job_id)
            self._release_outputs(job)
            if job is not None and job["state"] == "failed":
                sidecar = self._failure_sidecar(job, job["reason"])
                with self.db.transaction() as conn:
                    reserve_outputs(conn, job_id, None, str(sidecar) if sidecar else None)

    def _failure_sidecar(self, job: sqlite3.Row, reason: str) -> Path | None:
        """A photo that could not be enhanced still gets a sidecar, in the output folder where
        its result would have been, saying why (if that folder takes it: the job's reason is in
        the store and on the page either way)."""
        source = Path(job["input_path"])
        try:
            _, sidecar = output_paths(self._output_dir_for(source), source.stem)
            write_sidecar(sidecar, {"status": "failed", "input": str(source), "reason": reason})
        except OSError as exc:
            log.warning("%s: could not write its failed sidecar: %s", source.name, exc)
            return None
        return sidecar

    def _release_outputs(self, job: sqlite3.Row | None) -> None:
        """Remove the files the job's row records, and forget them: what an unfinished attempt
        reserved (and its temp files), or the sidecar of an earlier failed or rejected outcome,
        so that the next attempt writes under the same names."""
        if job is None or not (job["output_path"] or job["sidecar_path"]):
            return
        for name in filter(None, (job["output_path"], job["sidecar_path"])):
            if not output_of_another_job(self.db.conn, job["id"], name):
                with contextlib.suppress(FileNotFoundError):
                    Path(name).unlink()
        if job["output_path"]:
            # Temps of a live writer are young; with no other worker running, none are.
            others = live_workers(self.db) - {self.pid}
            remove_stale_temps(Path(job["output_path"]).parent, 3600 if others else 0)
        with self.db.transaction() as conn:
            reserve_outputs(conn, job["id"], None, None)

    def _event(self, level: Level, kind: str, message: str) -> None:
        with self.db.transaction() as conn:
            log_event(conn, "worker", level, kind, message)
        log.log(logging.getLevelName(level.upper()), message)


def run_worker(config: Config) -> int:
    """The body of `instaflyd worker`."""
    return Worker(config).run()


def _photos_wait(count: int) -> str:
    return "1 photo waits" if count == 1 else f"{count} photos wait"
