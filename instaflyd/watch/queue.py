"""The drop folder's job queue: one job per content, claimed atomically, recovered after a crash.

The rows and their SQL live in `instaflyd.store.jobs`; this module adds what needs the file
system or the process table: hashing a dropped file, and telling a job whose worker died (killed,
out of memory, power cut) from one that is still being worked on.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from pathlib import Path

from instaflyd.processes import claim_alive
from instaflyd.store import Database
from instaflyd.store.events import log_event
from instaflyd.store.jobs import claim_next_job, enqueue_job, finish_job, requeue_job, running_jobs

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


def claim_job(db: Database, worker_pid: int) -> sqlite3.Row | None:
    """Take the oldest queued job for this worker; no two workers ever get the same one."""
    with db.transaction() as conn:
        return claim_next_job(conn, worker_pid)


def recover_abandoned_jobs(
    db: Database, max_attempts: int, idle_pid: int | None = None
) -> list[int]:
    """Jobs left running by a worker that died: queued again, or failed after `max_attempts`.

    `idle_pid` is the caller's own pid, between jobs: any job still running under it was
    abandoned too (an error cut its attempt short, or a dead worker had the same pid).
    """

    def abandoned(row: sqlite3.Row) -> bool:
        return row["worker_pid"] == idle_pid or not _worker_alive(row)

    if not any(abandoned(row) for row in running_jobs(db.conn)):
        return []
    recovered = []
    with db.transaction() as conn:
        for row in running_jobs(conn):
            if not abandoned(row):
                continue
            name = Path(row["input_path"]).name
            if row["attempts"] >= max_attempts:
                reason = (
                    f"gave up after {attempts(row['attempts'])}: the worker stopped every time"
                    " while enhancing this photo (crashed, ran out of memory or was killed)"
                )
                finish_job(conn, row["id"], "failed", reason=reason)
                level, kind, message = "error", "job_failed", f"{name}: {reason}"
            else:
                requeue_job(conn, row["id"], reason="the worker stopped during the last attempt")
                level, kind, message = (
                    "warning",
                    "job_retried",
                    f"{name}: the worker (pid {row['worker_pid']}) stopped while enhancing it;"
                    f" queued again (attempt {row['attempts'] + 1} of {max_attempts})",
                )
            log_event(conn, "worker", level, kind, message)
            log.warning("%s", message)
            recovered.append(row["id"])
    return recovered


def live_workers(db: Database) -> set[int]:
    """The pids of workers that are running a job right now."""
    return {row["worker_pid"] for row in running_jobs(db.conn) if _worker_alive(row)}


def _worker_alive(job: sqlite3.Row) -> bool:
    """Whether the process that claimed `job` still runs (and is not a newer one with its pid)."""
    return claim_alive(job["worker_pid"], job["started"])


def attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"
