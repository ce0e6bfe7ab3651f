"""Running one claimed drop-folder job, in the enhancer process: enhance it, record how it ended.

The outcome is one of: done (the photo and its sidecar written under the names reserved when the
attempt started), rejected (the input cannot be used: a sidecar says why), queued again or
failed (an error: `jobs.settle_attempt` decides), or, when the process is asked to stop in the
middle, queued again with its attempt given back and nothing left behind.
"""

from __future__ import annotations

import logging
from pathlib import Path

from instaflyd import jobs
from instaflyd.config import Config
from instaflyd.enhance.io import UNREADABLE, RejectedImage
from instaflyd.enhance.pipeline import EnhanceResult, enhance_file
from instaflyd.jobs.files import JobFiles
from instaflyd.jobs.outputs import Sidecar, write_sidecar
from instaflyd.logs import FaultLog
from instaflyd.model.scoring import Scorer
from instaflyd.store import Database
from instaflyd.store.faults import FAULT_SHORT, transient_fault
from instaflyd.store.jobs import Job, JobState, get_job

log = logging.getLogger("instafly.worker")

FIRST_WAIT_SECONDS = 2.0  # after a job failed for a passing reason (a full disk, ...)
MAX_WAIT_SECONDS = 60.0


class Stopping(BaseException):
    """SIGTERM or SIGINT arrived while a photo was being enhanced."""


class JobRunner:
    """Enhances claimed jobs with one scorer. `enhancing` is True while a stop must interrupt."""

    def __init__(self, config: Config, db: Database, files: JobFiles, scorer: Scorer) -> None:
        self.config = config
        self.db = db
        self.files = files
        self.scorer = scorer
        self.enhancing = False
        self.stopping = False
        self.wait_seconds = 0.0  # before the next claim: the store or disk refused the last job
        self._unsettled: tuple[Job, str] | None = None  # a job to queue again once the store can
        self._fault = FaultLog(log, "photos cannot be saved now; they wait and are tried again")

    def process(self, job: Job) -> None:
        """Enhance the photo of a claimed job and record how it ended, whatever happens."""
        try:
            self._enhance(job)
        except Exception as exc:
            fault = transient_fault(exc)
            if fault is not None:  # the disk, not the photo: wait, and do not count the attempt
                self._fault.failed(exc)
                self.wait_seconds = min(
                    max(FIRST_WAIT_SECONDS, self.wait_seconds * 2), MAX_WAIT_SECONDS
                )
                self._unsettled = (job, f"waiting: {FAULT_SHORT[fault]}")
                self.settle_waiting()
                return
            log.exception("job %d (%s) failed", job.id, job.input_path)
            reason = f"enhancement failed: {type(exc).__name__}: {exc}"
            jobs.settle_attempt(self.db, self.files, job, reason, self.config.watch.max_attempts)
        else:
            self.wait_seconds = 0.0
            self._fault.ok()

    def settle_waiting(self) -> bool:
        """Queue again the job that failed for a passing reason (its attempt not counted);
        False while the store refuses that too (the job stays ours, tried again later)."""
        if self._unsettled is None:
            return True
        job, reason = self._unsettled
        try:
            jobs.settle_attempt(
                self.db, self.files, job, reason, self.config.watch.max_attempts, passing=True
            )
        except Exception as exc:
            if transient_fault(exc) is None:
                raise
            self._fault.failed(exc)
            return False
        self._unsettled = None
        return True

    def _enhance(self, job: Job) -> None:
        source = Path(job.input_path)
        self.files.release(job)  # a report of an earlier outcome, when retried from the page
        problem = input_problem(job)
        if problem == UNREADABLE:  # still there: its sidecar says why there is no result
            _, sidecar = self.files.reserve(job)
            write_sidecar(sidecar, Sidecar("rejected", str(source), reason=problem))
            self._finish(job, "rejected", problem, sidecar=sidecar)
            return
        if problem:
            self._finish(job, "rejected", problem)
            return
        photo, sidecar = self.files.reserve(job)  # before anything is written
        try:
            self.enhancing = True
            try:
                if self.stopping:  # asked to stop between the claim and here
                    raise Stopping
                result = enhance_file(
                    source, photo.parent, self.scorer, self.config, names=(photo, sidecar)
                )
            finally:
                self.enhancing = False
        except Stopping:
            self.files.release(get_job(self.db.conn, job.id))
            jobs.interrupt(self.db, job)
            raise
        except RejectedImage as exc:
            write_sidecar(sidecar, Sidecar("rejected", str(source), reason=str(exc)))
            self._finish(job, "rejected", str(exc), sidecar=sidecar)
            return
        self._finish(job, "done", f"score {result.score_before} -> {result.score_after}", result)

    def _finish(
        self,
        job: Job,
        state: JobState,
        message: str,
        result: EnhanceResult | None = None,
        *,
        sidecar: Path | None = None,
    ) -> None:
        if result is None:
            jobs.finish(self.db, job, state, message, sidecar_path=sidecar)
            return
        jobs.finish(
            self.db,
            job,
            state,
            message,
            output_path=result.output,
            sidecar_path=result.sidecar,
            score_before=result.score_before,
            score_after=result.score_after,
            model_version=self.scorer.version,
        )


def input_problem(job: Job) -> str | None:
    """Why the queued file cannot be enhanced (gone, unreadable, or changed since queued)."""
    try:
        sha256 = jobs.file_sha256(Path(job.input_path))
    except FileNotFoundError:
        return "the file was removed from the drop folder before it could be enhanced"
    except PermissionError:
        return UNREADABLE
    except OSError:
        return None  # enhancement refuses it, with the reason, in a sidecar
    if job.sha256 and sha256 != job.sha256:
        return "the file changed after it was queued; its new content is queued separately"
    return None
