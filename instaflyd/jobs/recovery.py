"""Ending an attempt that gave no result: the files it left go, the job is retried or failed.

Both ways an attempt can end without a result come here: an error while enhancing (the enhancer
process itself calls `settle_attempt`), and a process that died while enhancing (the worker's
loop finds its jobs with `recover_dead`). The decision between "queue it again" and "give up" is
made once, by `lifecycle.end_attempt`; a job that is given up on gets a sidecar saying why.
"""

from __future__ import annotations

from instaflyd.jobs.files import JobFiles
from instaflyd.jobs.lifecycle import abandoned_jobs, end_attempt, stopped_while_enhancing
from instaflyd.store import Database
from instaflyd.store.jobs import Job, get_job


def settle_attempt(
    db: Database,
    files: JobFiles,
    job: Job,
    reason: str,
    max_attempts: int,
    *,
    passing: bool = False,
) -> None:
    """Remove what the attempt at `job` left, then retry or fail it (with a failed sidecar);
    `passing`: it failed for a passing reason (`store.faults`), so it is queued again without
    counting the attempt."""
    current = get_job(db.conn, job.id)
    if current is None or (current.state, current.started) != ("running", job.started):
        return  # that attempt was settled already
    files.release(current)
    with db.transaction() as conn:
        state = end_attempt(conn, job, reason, max_attempts, passing=passing)
    if state == "failed":
        failed = get_job(db.conn, job.id)
        assert failed is not None and failed.reason is not None  # end_attempt gave one
        files.write_failure_sidecar(failed, failed.reason)


def recover_dead(db: Database, files: JobFiles, max_attempts: int) -> list[int]:
    """Jobs a dead process left running: settled as above. Returns their ids."""
    recovered = []
    for job in abandoned_jobs(db):
        settle_attempt(db, files, job, stopped_while_enhancing(job), max_attempts)
        recovered.append(job.id)
    return recovered
