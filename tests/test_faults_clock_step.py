"""A step of the wall clock does not make live work look dead.

The claim of a running enhancement (a job) or training run records the claimer's pid and the
wall-clock time; liveness compares that with the process's start, counted from boot. With the
wall clock stepped an hour forward after the claim (NTP on a box without a real-time clock),
the claimer looks an hour younger than its claim. Here the step is injected into the one wall
clock `processes` reads, and the claimers are real processes with an instaflyd command line.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from instaflyd import processes
from instaflyd.jobs.lifecycle import abandoned_jobs
from instaflyd.processes import claim_alive, process_start_time
from instaflyd.store import Database
from instaflyd.store.jobs import claim_next_job, enqueue_job
from instaflyd.store.versions import in_progress, latest_training_run, start_training_run

HOUR = 3600.0
SLEEP = "import time; time.sleep(120)"


def sleeper(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", SLEEP, *argv])


@pytest.fixture
def enhancer(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process whose command line is the enhancer's."""
    process = sleeper("-m", "instaflyd", "--data-dir", str(tmp_path), "worker", "--enhancer")
    time.sleep(0.3)  # /proc has its command line
    yield process
    process.kill()
    process.wait(5)


def step(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """The wall clock, as `processes` reads it, jumps by `seconds` from now on."""
    monkeypatch.setattr(processes, "wall_clock", lambda: time.time() + seconds)


def test_a_running_enhancement_is_not_taken_for_crashed_after_a_step_forward(
    tmp_path: Path, enhancer: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    with Database(tmp_path / "instafly.db") as db:
        with db.transaction() as conn:
            enqueue_job(conn, str(tmp_path / "photo.jpg"), "ab" * 32)
            job = claim_next_job(conn, enhancer.pid)
        assert job is not None and job.state == "running"
        assert abandoned_jobs(db) == []
        step(monkeypatch, HOUR)
        started = process_start_time(enhancer.pid)
        assert started is not None and started > job.started + HOUR - 5  # looks younger
        assert abandoned_jobs(db) == []  # still its enhancer's
        step(monkeypatch, -HOUR)
        assert abandoned_jobs(db) == []
        enhancer.kill()
        enhancer.wait(5)
        assert [j.id for j in abandoned_jobs(db)] == [job.id]  # really dead: recovered


def test_a_running_training_is_still_running_after_a_step_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = sleeper("-m", "instaflyd", "--data-dir", str(tmp_path), "train", "--scheduled")
    try:
        time.sleep(0.3)
        with Database(tmp_path / "instafly.db") as db:
            with db.transaction() as conn:
                start_training_run(conn, pid=trainer.pid, epochs=8)
            step(monkeypatch, HOUR)
            assert in_progress(latest_training_run(db.conn))
    finally:
        trainer.kill()
        trainer.wait(5)


def test_a_stranger_with_a_younger_start_is_still_a_reused_pid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stranger = sleeper()  # not instaflyd: a pid given to another program
    try:
        time.sleep(0.3)
        started = process_start_time(stranger.pid)
        assert started is not None
        assert claim_alive(stranger.pid, claimed_at=started)
        assert not claim_alive(stranger.pid, claimed_at=started - 60)
        step(monkeypatch, HOUR)  # whatever the clock does
        assert not claim_alive(stranger.pid, claimed_at=started - 60)
    finally:
        stranger.kill()
        stranger.wait(5)
