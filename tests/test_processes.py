"""Telling a live claim from one left behind by a killed process, a zombie or a reused pid."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from helpers import wait_until

from instaflyd.config import build_config
from instaflyd.processes import claim_alive, process_start_time
from instaflyd.status.collect import model_section
from instaflyd.store import Database
from instaflyd.store.versions import start_training_run


def test_a_running_process_holds_its_claim() -> None:
    started = process_start_time(os.getpid())
    assert started is not None and started <= time.time()
    assert claim_alive(os.getpid(), claimed_at=time.time())
    assert claim_alive(os.getpid())


def test_a_claim_older_than_the_process_belongs_to_an_earlier_owner_of_the_pid() -> None:
    started = process_start_time(os.getpid())
    assert not claim_alive(os.getpid(), claimed_at=started - 60)


def test_exited_zombie_and_missing_processes_hold_nothing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    # exited but not reaped yet: a zombie
    wait_until(lambda: process_start_time(child.pid) is None, 10, "the child to exit")
    assert not claim_alive(child.pid, claimed_at=time.time())
    child.wait()
    assert not claim_alive(child.pid)
    assert not claim_alive(None) and not claim_alive(0)


def test_stats_do_not_call_a_killed_trainers_run_training(tmp_path: Path) -> None:
    config = build_config({"model": {"weights": "none"}}, data_dir=tmp_path)
    with Database(config.db_path) as db:
        with db.transaction() as conn:
            start_training_run(conn, pid=os.getpid(), epochs=3)
        assert model_section(config, db.conn).training.running is True
        with db.transaction() as conn:
            start_training_run(conn, pid=2**22 + 4321, epochs=3)  # no such process
        assert model_section(config, db.conn).training.running is False
