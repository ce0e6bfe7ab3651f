"""The training policy: due or not and why (counts, weights, owners, a run in progress, a dead
trainer), posts counted from the last run, the back-off after models that were not better, and
the daily CPU budget, on a real SQLite store with an injected clock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from instaflyd.config import Config, build_config
from instaflyd.policy.training import TrainingPlan, training_plan
from instaflyd.store import AccountRecord, Database, ImageFiles, PostRecord
from instaflyd.store.images import record_image
from instaflyd.store.posts import attach_image, upsert_post
from instaflyd.store.versions import (
    add_model_version,
    finish_training_run,
    record_training_cpu,
    start_training_run,
    training_cpu_since,
)
from instaflyd.weights.file import WEIGHTS_FILE
from instaflyd.weights.status import weights_status

HOUR = 3600.0
T0 = 1_800_000_000.0  # the injected wall clock's "now" for the back-off and budget tests


def training_status(
    config: Config, conn, *, now: float | None = None, allow_random_weights: bool = False
) -> TrainingPlan:
    weights = weights_status(config)
    return training_plan(
        config, conn, weights_ok=weights.ok, weights_message=weights.message,
        allow_random_weights=allow_random_weights, now=now,
    )  # fmt: skip


def add_labelled(db: Database, files: ImageFiles, count: int, owners: int, start: int = 0) -> None:
    with db.transaction() as conn:
        for i in range(start, start + count):
            stored = files.put(f"image {i}".encode(), "jpg")
            record_image(conn, stored, 64, 64, 8)
            owner = AccountRecord(f"owner{i % owners}", follower_count=1000)
            upsert_post(conn, PostRecord(str(i), "photo", owner=owner, like_count=10 + i))
            attach_image(conn, str(i), stored.sha256)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Config, Database, ImageFiles]:
    config = build_config(
        {"model": {"weights": "none"}, "train": {"min_labelled_posts": 10, "min_new_posts": 5}},
        data_dir=tmp_path,
    )
    db = Database(config.db_path)
    yield config, db, ImageFiles(config.images_dir)
    db.close()


def test_an_empty_store_waits_for_labelled_posts(setup) -> None:
    config, db, _ = setup
    status = training_status(config, db.conn)
    assert (status.due, status.needed, status.labelled, status.current_version) == (
        False,
        10,
        0,
        None,
    )
    assert status.reason == "waiting for 10 more labelled posts (0 so far)"


def test_enough_posts_from_too_few_owners_wait_for_owners(setup) -> None:
    config, db, files = setup
    add_labelled(db, files, 12, owners=2)
    status = training_status(config, db.conn)
    assert (status.due, status.owners) == (False, 2)
    assert status.reason.startswith("waiting for posts from 2 more accounts (2 so far")


def test_first_model_is_due_then_waits_for_new_posts(setup) -> None:
    config, db, files = setup
    add_labelled(db, files, 12, owners=4)
    status = training_status(config, db.conn)
    assert (status.due, status.reason, status.needed) == (
        True,
        "training is due: 12 new labelled posts",
        0,
    )
    with db.transaction() as conn:
        add_model_version(conn, 1, "models/v0001", 12, 12, {"val_srcc": 0.5}, promoted=True)
    status = training_status(config, db.conn)
    assert (status.due, status.new_since_last_run, status.needed) == (False, 0, 5)
    assert status.reason == "waiting for 5 more new labelled posts (0 so far)"
    add_labelled(db, files, 5, owners=4, start=100)
    status = training_status(config, db.conn)
    assert (status.due, status.new_since_last_run, status.current_version) == (True, 5, 1)


def test_a_live_run_blocks_and_a_dead_one_does_not(setup) -> None:
    config, db, files = setup
    add_labelled(db, files, 12, owners=4)
    with db.transaction() as conn:
        start_training_run(conn, pid=os.getpid(), epochs=3)
    status = training_status(config, db.conn)
    assert (status.due, status.running) == (False, True)
    assert status.reason == f"training is running (pid {os.getpid()})"
    with db.transaction() as conn:
        start_training_run(conn, pid=2**22 + 12345, epochs=3)  # no such process
    assert training_status(config, db.conn).due is True


def test_missing_imagenet_weights_block_training_and_say_how_to_fix(tmp_path: Path) -> None:
    config = build_config({"train": {"min_labelled_posts": 2}}, data_dir=tmp_path)
    weights = weights_status(config)
    assert (weights.ok, weights.present) == (False, False)
    assert "instaflyd weights fetch" in weights.message and "weights import FILE" in weights.message
    with Database(config.db_path) as db:
        add_labelled(db, ImageFiles(config.images_dir), 12, owners=4)
        status = training_status(config, db.conn)
    assert (status.due, status.weights_ok, status.reason) == (False, False, weights.message)


def test_a_wrong_imagenet_file_is_not_accepted(tmp_path: Path) -> None:
    config = build_config({}, data_dir=tmp_path)
    (config.weights_dir).mkdir(parents=True)
    (config.weights_dir / WEIGHTS_FILE).write_bytes(b"not the weights")
    weights = weights_status(config)
    assert (weights.present, weights.ok) == (True, False)
    assert "is not the published ImageNet VGG16 notop file" in weights.message


def add_version(db: Database, version: int, labelled: int, *, promoted: bool, at: float) -> None:
    with db.transaction() as conn:
        add_model_version(
            conn, version, f"models/v{version:04d}", labelled, labelled, {"val_srcc": 0.5},
            promoted=promoted, now=at,
        )  # fmt: skip


def test_a_run_that_was_not_better_counts_its_posts_and_backs_off(setup) -> None:
    config, db, files = setup
    add_labelled(db, files, 12, owners=4)
    add_version(db, 1, 12, promoted=True, at=T0 - 2 * HOUR)
    add_labelled(db, files, 5, owners=4, start=100)
    status = training_status(config, db.conn, now=T0)
    assert (status.due, status.new_since_last_run, status.posts_goal) == (True, 5, 5)

    add_version(db, 2, 17, promoted=False, at=T0)  # trained on those 5: not better than v1
    status = training_status(config, db.conn, now=T0 + 60)
    assert (status.due, status.not_better, status.new_since_last_run) == (False, 1, 0)
    assert (status.posts_goal, status.needed, status.retry_at) == (10, 10, T0 + HOUR)
    assert status.reason == (
        "the last model was not better than v1; next try when 10 new labelled posts have"
        " arrived (0 so far) or in 59 min once there are 5"
    )
    # The old rule counted from v1 (labelled_total 12): 5 new posts, due again at once.
    add_labelled(db, files, 5, owners=4, start=200)
    status = training_status(config, db.conn, now=T0 + HOUR - 1)
    assert (status.due, status.new_since_last_run, status.needed) == (False, 5, 5)
    status = training_status(config, db.conn, now=T0 + HOUR)  # the hour has passed
    assert status.due is True
    assert status.reason == "training is due: 5 new labelled posts, and 60 min since the last run"
    add_labelled(db, files, 5, owners=4, start=300)  # or twice the posts, before the hour
    status = training_status(config, db.conn, now=T0 + 60)
    assert (status.due, status.reason) == (True, "training is due: 10 new labelled posts")


def test_the_back_off_doubles_up_to_a_day_and_a_better_model_ends_it(setup) -> None:
    config, db, files = setup
    add_labelled(db, files, 12, owners=4)
    add_version(db, 1, 12, promoted=True, at=T0 - 10 * HOUR)
    seen = []
    for n in range(1, 8):
        add_version(db, 1 + n, 12, promoted=False, at=T0)
        status = training_status(config, db.conn, now=T0)
        seen.append((status.not_better, status.posts_goal, (status.retry_at - T0) / HOUR))
    assert seen == [
        (1, 10, 1), (2, 20, 2), (3, 40, 4), (4, 80, 8), (5, 160, 16), (6, 320, 24), (7, 640, 24),
    ]  # fmt: skip
    add_labelled(db, files, 30, owners=4, start=100)
    status = training_status(config, db.conn, now=T0 + 3 * HOUR)
    assert status.due is False
    assert status.reason == (
        "the last 7 models were not better than v1; next try when 640 new labelled posts have"
        " arrived (30 so far) or in 21 h"
    )
    assert training_status(config, db.conn, now=T0 + 24 * HOUR).due is True
    add_version(db, 9, 42, promoted=True, at=T0 + 25 * HOUR)  # better: back to the plain rule
    add_labelled(db, files, 5, owners=4, start=200)
    status = training_status(config, db.conn, now=T0 + 25 * HOUR + 1)
    assert (status.due, status.not_better, status.posts_goal, status.retry_at) == (True, 0, 5, None)


def add_run(db: Database, *, cpu: float, ended: float, pid: int = 2**22 + 7) -> int:
    with db.transaction() as conn:
        run = start_training_run(conn, pid=pid, epochs=3, now=ended - cpu)
        finish_training_run(conn, run, "done", now=ended)
        record_training_cpu(conn, cpu, run_id=run)
    return run


def test_the_daily_cpu_budget_stops_runs_until_the_window_frees_it(tmp_path: Path) -> None:
    config = build_config(
        {
            "model": {"weights": "none"},
            "train": {"min_labelled_posts": 10, "min_new_posts": 5, "cpu_budget_hours_per_day": 1},
        },
        data_dir=tmp_path,
    )
    with Database(config.db_path) as db:
        add_labelled(db, ImageFiles(config.images_dir), 12, owners=4)
        add_run(db, cpu=900, ended=T0 - 25 * HOUR)  # outside the window: not counted
        add_run(db, cpu=2000, ended=T0 - 23 * HOUR)
        status = training_status(config, db.conn, now=T0)
        assert (status.due, status.budget.used_seconds, status.budget.runs) == (True, 2000, 1)
        assert (status.budget.limit_seconds, status.budget.free_at) == (3600, None)
        add_run(db, cpu=2000, ended=T0 - HOUR)
        status = training_status(config, db.conn, now=T0)
        assert (status.due, status.budget.used_seconds, status.budget.runs) == (False, 4000, 2)
        assert status.budget.free_at == T0 + HOUR  # when the older run leaves the window
        assert status.reason == (
            "the daily training budget is used up (1.1 of 1 CPU-hours in the last 24 hours);"
            " next try in 60 min"
        )
        status = training_status(config, db.conn, now=T0 + HOUR + 1)
        assert (status.due, status.budget.used_seconds) == (True, 2000)


def test_the_parents_cpu_figure_wins_over_the_trainers_own(setup) -> None:
    _, db, _ = setup
    run = add_run(db, cpu=40, ended=T0, pid=4242)
    with db.transaction() as conn:
        record_training_cpu(conn, 55.5, pid=4242)  # the daemon's wait4: start-up included
        record_training_cpu(conn, 30, run_id=run)  # a smaller figure never lowers it
    assert training_cpu_since(db.conn, T0 - 1) == [(T0, 55.5)]
    with db.transaction() as conn:  # a killed trainer: only the parent's figure exists
        killed = start_training_run(conn, pid=4343, epochs=3, now=T0 + 10)
        finish_training_run(conn, killed, "failed", now=T0 + 20)
        record_training_cpu(conn, 12.0, pid=4343)
    assert training_cpu_since(db.conn, T0 - 1) == [(T0, 55.5), (T0 + 20, 12.0)]
