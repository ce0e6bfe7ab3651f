"""Training due or not, and why: counts, weights, owners, a run in progress, a dead trainer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from instaflyd.config import Config, build_config
from instaflyd.status.training import training_status
from instaflyd.store import AccountRecord, Database, ImageFiles, PostRecord
from instaflyd.store.images import record_image
from instaflyd.store.posts import attach_image, upsert_post
from instaflyd.store.versions import add_model_version, start_training_run
from instaflyd.weights.file import WEIGHTS_FILE
from instaflyd.weights.status import weights_status


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
    assert (status.due, status.new_since_current, status.needed) == (False, 0, 5)
    assert status.reason == "waiting for 5 more new labelled posts (0 so far)"
    add_labelled(db, files, 5, owners=4, start=100)
    status = training_status(config, db.conn)
    assert (status.due, status.new_since_current, status.current_version) == (True, 5, 1)


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
