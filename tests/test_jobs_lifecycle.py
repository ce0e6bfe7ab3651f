"""The job queue: atomic claims across processes, dead workers' jobs retried a bounded number of
times, and the visible wait for a model."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import sql_all, sql_scalar

from instaflyd.jobs.lifecycle import (
    abandoned_jobs,
    claim_next,
    end_attempt,
    enqueue_file,
    live_workers,
    stopped_while_enhancing,
)
from instaflyd.processes import process_start_time
from instaflyd.store import Database
from instaflyd.store.jobs import (
    claim_next_job,
    enqueue_job,
    finish_job,
    get_job,
    jobs_by_state,
    release_waiting_jobs,
    requeue_job,
    wait_for_model,
)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(tmp_path / "instafly.db")
    yield database
    database.close()


def _claim_until_empty(path: str, start: threading.Barrier) -> None:
    with Database(Path(path)) as db:
        start.wait()
        while (job := claim_next(db, os.getpid())) is not None:
            with db.transaction() as conn:
                finish_job(conn, job.id, "done")
            time.sleep(0.001)  # the work itself, outside the lock


@pytest.mark.slow
def test_concurrent_workers_never_take_the_same_job(db: Database) -> None:
    with db.transaction() as conn:
        for n in range(300):
            enqueue_job(conn, f"/drop/{n}.jpg", f"sha{n}")
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(3)
    workers = [
        context.Process(target=_claim_until_empty, args=(str(db.path), start)) for _ in range(3)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [p.exitcode for p in workers] == [0, 0, 0]
    rows = sql_all(db, "SELECT state, attempts, worker_pid FROM jobs")
    assert {(row["state"], row["attempts"]) for row in rows} == {("done", 1)}
    claimed_by = {row["worker_pid"] for row in rows}
    assert claimed_by <= {p.pid for p in workers} and len(claimed_by) > 1  # they did compete


def test_a_file_is_queued_once_per_content_and_an_unreadable_one_without_a_hash(
    db: Database, tmp_path: Path
) -> None:
    (tmp_path / "a.jpg").write_bytes(b"photo")
    (tmp_path / "copy.jpg").write_bytes(b"photo")
    locked = tmp_path / "locked.jpg"
    locked.write_bytes(b"secret")
    locked.chmod(0)
    assert enqueue_file(db, tmp_path / "a.jpg") == 1
    assert enqueue_file(db, tmp_path / "copy.jpg") is None
    assert enqueue_file(db, tmp_path / "gone.jpg") is None
    expect_hash = os.geteuid() == 0  # root reads it anyway
    assert enqueue_file(db, locked) == 2
    assert (get_job(db.conn, 2).sha256 is not None) == expect_hash


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def recover_abandoned_jobs(db: Database, max_attempts: int) -> list[int]:
    """What the worker's loop does with the jobs of dead processes (files aside)."""
    ended = []
    for job in abandoned_jobs(db):
        with db.transaction() as conn:
            if end_attempt(conn, job, stopped_while_enhancing(job), max_attempts):
                ended.append(job.id)
    return ended


def test_a_dead_workers_job_is_retried_then_failed_after_max_attempts(db: Database) -> None:
    with db.transaction() as conn:
        job_id = enqueue_job(conn, "/drop/crashy.jpg", "c")
    for attempt in (1, 2):
        worker = sleeper()
        time.sleep(0.05)
        with db.transaction() as conn:
            claim_next_job(conn, worker.pid)
        assert recover_abandoned_jobs(db, max_attempts=2) == []  # alive: hands off
        assert live_workers(db) == {worker.pid}
        worker.kill()
        worker.wait()
        assert recover_abandoned_jobs(db, max_attempts=2) == [job_id]
        job = get_job(db.conn, job_id)
        assert job.attempts == attempt
        stopped = (
            f"the worker (pid {worker.pid}) stopped while enhancing this photo"
            " (crashed, ran out of memory or was killed)"
        )
        if attempt == 1:
            assert (job.state, job.reason) == ("queued", stopped)
    assert (job.state, job.reason) == ("failed", f"gave up after 2 attempts: {stopped}")
    assert sql_scalar(db, "SELECT COUNT(*) FROM events WHERE kind = 'job_failed'") == 1
    assert sql_scalar(db, "SELECT COUNT(*) FROM events WHERE kind = 'job_retried'") == 1


def test_an_attempt_is_ended_once_whoever_notices_first(db: Database) -> None:
    with db.transaction() as conn:
        enqueue_job(conn, "/drop/a.jpg", "a")
        job = claim_next_job(conn, 999_999_999)
    with db.transaction() as conn:
        assert end_attempt(conn, job, "an error", max_attempts=3) == "queued"
        assert end_attempt(conn, job, "an error", max_attempts=3) is None  # already ended
        again = claim_next_job(conn, os.getpid(), now=job.started + 10)
        assert end_attempt(conn, job, "an error", max_attempts=3) is None  # not that attempt
        assert end_attempt(conn, again, "an error", max_attempts=2) == "failed"
    assert get_job(db.conn, job.id).reason == "gave up after 2 attempts: an error"


def test_a_pid_reused_by_a_newer_process_does_not_keep_a_job(db: Database) -> None:
    assert process_start_time(os.getpid()) < time.time()
    with db.transaction() as conn:
        enqueue_job(conn, "/drop/a.jpg", "a")
        enqueue_job(conn, "/drop/b.jpg", "b")
        claim_next_job(conn, os.getpid(), now=1000.0)  # long before this process started
        claim_next_job(conn, os.getpid())
    assert recover_abandoned_jobs(db, max_attempts=3) == [1]
    counts = jobs_by_state(db.conn)
    assert (counts.queued, counts.running) == (1, 1)  # this process still runs job 2


def test_jobs_wait_for_a_model_visibly_and_an_interrupted_job_keeps_its_attempts(
    db: Database,
) -> None:
    with db.transaction() as conn:
        for name in "abc":
            enqueue_job(conn, f"/drop/{name}.jpg", name)
        assert wait_for_model(conn) == 3
    assert jobs_by_state(db.conn).waiting_model == 3
    assert claim_next(db, os.getpid()) is None
    with db.transaction() as conn:
        assert release_waiting_jobs(conn) == 3
    job = claim_next(db, os.getpid())
    with db.transaction() as conn:
        requeue_job(conn, job.id, count_attempt=False)
    again = claim_next(db, os.getpid())
    assert (again.id, again.attempts) == (job.id, 1)
