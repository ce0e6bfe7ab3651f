"""The drop folder's job queue: one job per content, claimed atomically, recovered after a crash.

The rows and their SQL live in `instaflyd.store.jobs`; this module adds what needs the file
system or the process table: hashing a dropped file, telling a job whose worker died (killed,
out of memory, power cut) from one that is still being worked on, and `end_attempt`, the one
place that decides whether an attempt that ended without a result is retried or failed.
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
    requeue_job,
    running_jobs,
    wait_for_model,
)

log = logging.getLogger("instafly.watch.queue")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def queue_file(db: Database, path: Path) -> int | None:
    """Queue a job for a dropped file; None when a job for the same content exists already.

    A file that cannot be read is queued without a hash: the worker then rejects it, saying why.
    """
    try:
        sha256: str | None = file_sha256(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("%s: cannot read: %s", path, exc.strerror)
        sha256 = None
    with db.transaction() as conn:
        job_id = enqueue_job(conn, str(path), sha256)
        if job_id is not None:
            log_event(conn, "worker", "info", "job_queued", f"queued {path.name} (job {job_id})")
    return job_id


def claim_job(db: Database, worker_pid: int) -> Job | None:
    """Take the oldest queued job for this worker; no two workers ever get the same one."""
    with db.transaction() as conn:
        return claim_next_job(conn, worker_pid)


def abandoned_jobs(db: Database) -> list[Job]:
    """Jobs left running by a process that is gone (killed, out of memory, power cut)."""
    return [row for row in running_jobs(db.conn) if not _worker_alive(row)]


def end_attempt(
    conn: sqlite3.Connection, job: Job, reason: str, max_attempts: int
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
    used = current.attempts
    if used >= max_attempts:
        reason = f"gave up after {attempts(used)}: {reason}"
        finish_job(conn, job.id, "failed", reason=reason)
        log_event(conn, "worker", "error", "job_failed", f"{name}: {reason}")
        log.error("%s: %s", name, reason)
        return "failed"
    requeue_job(conn, job.id, reason=reason)
    message = f"{name}: {reason}; queued again (attempt {used + 1} of {max_attempts})"
    log_event(conn, "worker", "warning", "job_retried", message)
    log.warning("%s", message)
    return "queued"


def stopped_while_enhancing(job: Job) -> str:
    """Why a job whose process died has no result."""
    return (
        f"the worker (pid {job.worker_pid}) stopped while enhancing this photo"
        " (crashed, ran out of memory or was killed)"
    )


def live_workers(db: Database) -> set[int]:
    """The pids of workers that are running a job right now."""
    return {
        row.worker_pid
        for row in running_jobs(db.conn)
        if row.worker_pid is not None and _worker_alive(row)
    }


def _worker_alive(job: Job) -> bool:
    """Whether the process that claimed `job` still runs (and is not a newer one with its pid)."""
    return claim_alive(job.worker_pid, job.started)


def attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def wait_for_a_model(db: Database, why: str) -> int:
    """Move the queued jobs to waiting_model, saying why; returns how many."""
    with db.transaction() as conn:
        parked = wait_for_model(conn)
        if parked:
            message = f"{'1 photo waits' if parked == 1 else f'{parked} photos wait'}: {why}"
            log_event(conn, "worker", "warning", "waiting_model", message)
            log.warning("%s", message)
    return parked
