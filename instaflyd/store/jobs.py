"""The enhancement job queue: queued -> running -> done | rejected | failed.

Jobs are claimed inside a write transaction, so two workers never take the same one. A job
whose worker died while running is taken again until it has used `max_attempts`.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Literal, get_args

from instaflyd.store.rows import record

JobState = Literal["queued", "waiting_model", "running", "done", "rejected", "failed"]
JOB_STATES: tuple[JobState, ...] = get_args(JobState)
FINAL_STATES: tuple[JobState, ...] = ("done", "rejected", "failed")


@dataclass(frozen=True)
class Job:
    """One drop-folder job as its row was when read (a snapshot: read it again to see changes)."""

    id: int
    input_path: str
    sha256: str | None  # of the input's content; None when the file could not be read
    state: JobState
    attempts: int
    created: float
    updated: float
    started: float | None
    finished: float | None
    worker_pid: int | None
    reason: str | None
    output_path: str | None
    sidecar_path: str | None
    score_before: float | None
    score_after: float | None
    model_version: int | None

    @property
    def score_change(self) -> float | None:
        """How much enhancing raised the score; None until both scores are known."""
        if self.score_before is None or self.score_after is None:
            return None
        return self.score_after - self.score_before


def _job(row: sqlite3.Row | None) -> Job | None:
    return None if row is None else record(Job, row)


def enqueue_job(
    conn: sqlite3.Connection, input_path: str, sha256: str | None, now: float | None = None
) -> int | None:
    """Queue a job for a file; None when a job for the same content already exists."""
    now = time.time() if now is None else now
    cursor = conn.execute(
        "INSERT OR IGNORE INTO jobs (input_path, sha256, state, created, updated)"
        " VALUES (?, ?, 'queued', ?, ?)",
        (input_path, sha256, now, now),
    )
    return cursor.lastrowid if cursor.rowcount == 1 else None


def claim_next_job(
    conn: sqlite3.Connection, worker_pid: int, now: float | None = None
) -> Job | None:
    """Mark the oldest queued job running for this worker and return it (call in a transaction)."""
    now = time.time() if now is None else now
    return _job(
        conn.execute(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, started = :now,"
            "   updated = :now, worker_pid = :pid"
            " WHERE id = (SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1)"
            " RETURNING *",
            {"now": now, "pid": worker_pid},
        ).fetchone()
    )


def finish_job(
    conn: sqlite3.Connection,
    job_id: int,
    state: JobState,
    *,
    reason: str | None = None,
    output_path: str | None = None,
    sidecar_path: str | None = None,
    score_before: float | None = None,
    score_after: float | None = None,
    model_version: int | None = None,
    now: float | None = None,
) -> None:
    now = time.time() if now is None else now
    conn.execute(
        "UPDATE jobs SET state = ?, reason = ?, output_path = ?, sidecar_path = ?,"
        "   score_before = ?, score_after = ?, model_version = ?, finished = ?, updated = ?"
        " WHERE id = ?",
        (
            state,
            reason,
            output_path,
            sidecar_path,
            score_before,
            score_after,
            model_version,
            now if state in FINAL_STATES else None,
            now,
            job_id,
        ),
    )


def retry_job(conn: sqlite3.Connection, job_id: int, now: float | None = None) -> bool:
    """Queue a failed or rejected job again with its attempts reset; False if it is neither."""
    now = time.time() if now is None else now
    cursor = conn.execute(
        "UPDATE jobs SET state = 'queued', attempts = 0, reason = NULL, worker_pid = NULL,"
        "   started = NULL, finished = NULL, updated = ?"
        " WHERE id = ? AND state IN ('failed', 'rejected')",
        (now, job_id),
    )
    return cursor.rowcount == 1


def get_job(conn: sqlite3.Connection, job_id: int) -> Job | None:
    return _job(conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())


def job_for_content(conn: sqlite3.Connection, sha256: str) -> Job | None:
    """The job of a file with this content (there is at most one)."""
    return _job(conn.execute("SELECT * FROM jobs WHERE sha256 = ?", (sha256,)).fetchone())


def recent_jobs(conn: sqlite3.Connection, limit: int) -> list[Job]:
    """The newest jobs first: the last queued (or sent) photo leads."""
    rows = conn.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))
    return [record(Job, row) for row in rows]


@dataclass(frozen=True)
class JobCounts:
    """How many jobs are in each state."""

    queued: int = 0
    waiting_model: int = 0
    running: int = 0
    done: int = 0
    rejected: int = 0
    failed: int = 0

    @property
    def waiting(self) -> int:
        """Jobs that still need an enhancer: queued, or waiting for a model."""
        return self.queued + self.waiting_model

    def items(self) -> list[tuple[JobState, int]]:
        """Every state with its count, in the order of a job's life."""
        return [(state, getattr(self, state)) for state in JOB_STATES]


def jobs_by_state(conn: sqlite3.Connection) -> JobCounts:
    """Every state with its count (zero included)."""
    rows = conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
    counts = {str(state): int(n) for state, n in rows}
    return JobCounts(**{state: counts.get(state, 0) for state in JOB_STATES})


def recently_changed_jobs(conn: sqlite3.Connection, limit: int) -> list[Job]:
    """The jobs that changed last (finished, or updated while still open), newest first."""
    rows = conn.execute(
        "SELECT * FROM jobs ORDER BY COALESCE(finished, updated) DESC, id DESC LIMIT ?", (limit,)
    )
    return [record(Job, row) for row in rows]


def running_jobs(conn: sqlite3.Connection) -> list[Job]:
    rows = conn.execute("SELECT * FROM jobs WHERE state = 'running' ORDER BY id")
    return [record(Job, row) for row in rows]


def requeue_job(
    conn: sqlite3.Connection,
    job_id: int,
    *,
    reason: str | None = None,
    count_attempt: bool = True,
    now: float | None = None,
) -> None:
    """Put a job back in the queue; `count_attempt=False` gives back the attempt it used."""
    now = time.time() if now is None else now
    conn.execute(
        "UPDATE jobs SET state = 'queued', reason = ?, worker_pid = NULL, updated = ?,"
        "   attempts = attempts - ? WHERE id = ?",
        (reason, now, 0 if count_attempt else 1, job_id),
    )


def wait_for_model(
    conn: sqlite3.Connection, reason: str | None = None, now: float | None = None
) -> int:
    """Queued jobs -> waiting_model (no model can be loaded), each with the `reason` the page
    shows; returns how many."""
    now = time.time() if now is None else now
    return conn.execute(
        "UPDATE jobs SET state = 'waiting_model', updated = ?, reason = COALESCE(?, reason)"
        " WHERE state = 'queued'",
        (now, reason),
    ).rowcount


def release_waiting_jobs(conn: sqlite3.Connection, now: float | None = None) -> int:
    """Jobs waiting for a model -> queued (a model is loaded); returns how many."""
    now = time.time() if now is None else now
    return conn.execute(
        "UPDATE jobs SET state = 'queued', updated = ?, reason = NULL"
        " WHERE state = 'waiting_model'",
        (now,),
    ).rowcount


def reserve_outputs(
    conn: sqlite3.Connection, job_id: int, output_path: str | None, sidecar_path: str | None
) -> None:
    """Record where a running job will write, so a retry can remove what a dead attempt left."""
    conn.execute(
        "UPDATE jobs SET output_path = ?, sidecar_path = ? WHERE id = ?",
        (output_path, sidecar_path, job_id),
    )


def output_of_another_job(conn: sqlite3.Connection, job_id: int, path: str) -> bool:
    """Whether a job other than `job_id` wrote (or is about to write) `path`."""
    return (
        conn.execute(
            "SELECT 1 FROM jobs WHERE id != ? AND ? IN (output_path, sidecar_path)",
            (job_id, path),
        ).fetchone()
        is not None
    )


def last_queued_by_input(conn: sqlite3.Connection) -> dict[str, float]:
    """For each input path, when its newest job was queued."""
    return {
        row["input_path"]: row["created"]
        for row in conn.execute("SELECT input_path, MAX(created) AS created FROM jobs GROUP BY 1")
    }


@dataclass(frozen=True)
class EnhancedTotals:
    """Photos enhanced so far (jobs done with both scores) and the sum of their score gains."""

    photos: int
    score_gain: float


def enhanced_totals(conn: sqlite3.Connection) -> EnhancedTotals:
    row = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(score_after - score_before), 0.0) FROM jobs"
        " WHERE state = 'done' AND score_before IS NOT NULL AND score_after IS NOT NULL"
    ).fetchone()
    return EnhancedTotals(photos=int(row[0]), score_gain=float(row[1]))
