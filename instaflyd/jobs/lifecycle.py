"""A photo job's life, each step one transaction with the event that tells it.

queued -> running -> done | rejected | failed, with two side roads: waiting_model (no model can
be loaded yet) and back to queued (an attempt that ended without a result, a stop in the middle,
or a retry asked for on the page). The rows and their SQL live in `instaflyd.store.jobs`; this
module adds the rules: one job per content, who may end an attempt, when to give up, and that
each change is logged with it. The page's uploads and the drop folder's watcher queue through
`enqueue`; the enhancer claims with `claim_next` and ends with `finish`, `interrupt` or (through
`recovery.settle_attempt`) `end_attempt`; the worker's loop recovers the jobs of a dead process
with `recovery.recover_dead`.

Functions that take a `sqlite3.Connection` run inside the caller's transaction (so that an
upload's file name and its job commit together); the others open their own.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from pathlib import Path

from instaflyd.processes import claim_alive
from instaflyd.store import Database
from instaflyd.store.events import log_event
from instaflyd.store.jobs import (
    Job,
    JobState,
    claim_next_job,
    enqueue_job,
    finish_job,
    get_job,
    release_waiting_jobs,
    requeue_job,
    retry_job,
    running_jobs,
    wait_for_model,
)

log = logging.getLogger("instafly.jobs")

SOURCE = "worker"  # the events' source: the page shows them with the worker's


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def enqueue(
    conn: sqlite3.Connection, path: Path, sha256: str | None, *, via: str | None = None
) -> int | None:
    """Queue a job for `path` and log it (in the caller's transaction); None when a job for the
    same content exists already. `via` says where it came from, for the event."""
    job_id = enqueue_job(conn, str(path), sha256)
    if job_id is not None:
        how = f", {via}" if via else ""
        log_event(conn, SOURCE, "info", "job_queued", f"queued {path.name} (job {job_id}{how})")
    return job_id


def enqueue_file(db: Database, path: Path) -> int | None:
    """Queue a job for a file in the drop folder; None when one for the same content exists or
    the file is gone. A file that cannot be read is queued without a hash: the enhancer then
    rejects it, saying why."""
    try:
        sha256: str | None = file_sha256(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("%s: cannot read: %s", path, exc.strerror)
        sha256 = None
    with db.transaction() as conn:
        return enqueue(conn, path, sha256)


def claim_next(db: Database, worker_pid: int) -> Job | None:
    """Take the oldest queued job for this worker; no two workers ever get the same one."""
    with db.transaction() as conn:
        return claim_next_job(conn, worker_pid)


def finish(
    db: Database,
    job: Job,
    state: JobState,
    message: str,
    *,
    output_path: Path | None = None,
    sidecar_path: Path | None = None,
    score_before: float | None = None,
    score_after: float | None = None,
    model_version: int | None = None,
) -> None:
    """End a claimed job with its outcome (done, or rejected with `message` as the reason)."""
    name = Path(job.input_path).name
    with db.transaction() as conn:
        finish_job(
            conn,
            job.id,
            state,
            reason=None if state == "done" else message,
            output_path=str(output_path) if output_path else None,
            sidecar_path=str(sidecar_path) if sidecar_path else None,
            score_before=score_before,
            score_after=score_after,
            model_version=model_version,
        )
        log_event(conn, SOURCE, "info", f"job_{state}", f"{name}: {state}: {message}")
    log.info("%s: %s: %s", name, state, message)


def interrupt(db: Database, job: Job) -> None:
    """A stop asked for in the middle of an attempt: the job is queued again, its attempt given
    back (the files it reserved are released first, by the caller)."""
    name = Path(job.input_path).name
    with db.transaction() as conn:
        requeue_job(conn, job.id, count_attempt=False)
        log_event(conn, SOURCE, "info", "job_interrupted", f"{name}: queued again")
    log.info("%s: interrupted; queued again", name)


def end_attempt(
    conn: sqlite3.Connection, job: Job, reason: str, max_attempts: int, *, passing: bool = False
) -> JobState | None:
    """An attempt at `job` ended without a result (an error, or its process died): the one
    decision of what happens next. The job is queued again, or, once it has used
    `max_attempts`, failed with a reason that says it gave up. Returns the new state; None when
    the attempt was ended already (by another process that noticed first). Call in a
    transaction; the outcome goes to the event log."""
    current = get_job(conn, job.id)
    if current is None or current.state != "running" or current.started != job.started:
        return None
    name = Path(job.input_path).name
    if passing:  # a full disk, a read-only folder, a held lock: not the photo's fault
        requeue_job(conn, job.id, reason=reason, count_attempt=False)
        message = f"{name}: {reason}; waits and is tried again by itself (no attempt counted)"
        log_event(conn, SOURCE, "warning", "job_waiting", message)
        return "queued"
    used = current.attempts
    if used >= max_attempts:
        reason = f"gave up after {attempts(used)}: {reason}"
        finish_job(conn, job.id, "failed", reason=reason)
        log_event(conn, SOURCE, "error", "job_failed", f"{name}: {reason}")
        log.error("%s: %s", name, reason)
        return "failed"
    requeue_job(conn, job.id, reason=reason)
    message = f"{name}: {reason}; queued again (attempt {used + 1} of {max_attempts})"
    log_event(conn, SOURCE, "warning", "job_retried", message)
    log.warning("%s", message)
    return "queued"


def retry(db: Database, job_id: int) -> bool:
    """Queue a failed or rejected job again with its attempts reset (asked for on the page);
    False if it is neither."""
    with db.transaction() as conn:
        job = get_job(conn, job_id)
        if job is None or not retry_job(conn, job_id):
            return False
        name = Path(job.input_path).name
        log_event(conn, SOURCE, "info", "job_requeued", f"{name}: queued again from the page")
    return True


def wait_for_a_model(db: Database, why: str) -> int:
    """Move the queued jobs to waiting_model, saying why; returns how many."""
    with db.transaction() as conn:
        parked = wait_for_model(conn, why[:500] or "the model cannot be loaded")
        if parked:
            message = f"{'1 photo waits' if parked == 1 else f'{parked} photos wait'}: {why}"
            log_event(conn, SOURCE, "warning", "waiting_model", message)
            log.warning("%s", message)
    return parked


def release_waiting(conn: sqlite3.Connection) -> int:
    """Jobs waiting for a model -> queued, in the caller's transaction (whose event says which
    model was loaded); returns how many."""
    return release_waiting_jobs(conn)


def abandoned_jobs(db: Database) -> list[Job]:
    """Jobs left running by a process that is gone (killed, out of memory, power cut)."""
    return [row for row in running_jobs(db.conn) if not _worker_alive(row)]


def live_workers(db: Database) -> set[int]:
    """The pids of processes that are running a job right now."""
    return {
        row.worker_pid
        for row in running_jobs(db.conn)
        if row.worker_pid is not None and _worker_alive(row)
    }


def stopped_while_enhancing(job: Job) -> str:
    """Why a job whose process died has no result."""
    return (
        f"the worker (pid {job.worker_pid}) stopped while enhancing this photo"
        " (crashed, ran out of memory or was killed)"
    )


def attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def _worker_alive(job: Job) -> bool:
    """Whether the process that claimed `job` still runs (and is not a newer one with its pid)."""
    return claim_alive(job.worker_pid, job.started)
