"""A truncated weights file in the current model version: the newest intact promoted version
stands in, and that is said; when none loads, the waiting photos say why."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from helpers import sql_all
from support_model import tiny_config

from instaflyd import repairs
from instaflyd.jobs import wait_for_a_model
from instaflyd.model.registry import TAIL_FILE, ModelLoadError, version_dir
from instaflyd.model.scoring import MODEL_FALLBACK, load_scorer
from instaflyd.repairs import RepairsRegistry
from instaflyd.store import Database
from instaflyd.store.jobs import enqueue_job
from instaflyd.store.versions import add_model_version

pytestmark = pytest.mark.slow  # loads TensorFlow and a model


def second_version(copy_of_trained: Path) -> Path:
    """v2: v1's files under a new promoted version, its weights file then cut in half."""
    config = tiny_config(copy_of_trained)
    shutil.copytree(version_dir(config, 1), version_dir(config, 2))
    info = version_dir(config, 2) / "model.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "version": 2}))
    with Database(config.db_path) as db, db.transaction() as conn:
        add_model_version(conn, 2, str(version_dir(config, 2)), 72, 72, {}, promoted=True)
    tail = version_dir(config, 2) / TAIL_FILE
    tail.write_bytes(tail.read_bytes()[: tail.stat().st_size // 2])
    return tail


def test_a_truncated_current_version_falls_back_to_the_newest_intact_one(
    copy_of_trained: Path,
) -> None:
    second_version(copy_of_trained)
    config = tiny_config(copy_of_trained)
    registry = RepairsRegistry()
    repairs.install(registry, source="worker")
    try:
        scorer = load_scorer(config)
    finally:
        repairs.install(None)
    assert scorer.version == 1
    [problem] = registry.problems()
    assert (problem.id, problem.severity) == (MODEL_FALLBACK, "warning")
    assert problem.sentence.startswith("Model version 2 cannot be loaded (v2: ")
    assert problem.sentence.endswith(
        "photos are enhanced with version 1, the newest promoted version that loads."
    )
    with sqlite3.connect(config.db_path) as conn:
        [(message,)] = conn.execute(
            "SELECT message FROM events WHERE kind = 'model_fallback'"
        ).fetchall()
    assert message == problem.sentence


def test_when_no_version_loads_the_waiting_photos_say_why(copy_of_trained: Path) -> None:
    second_version(copy_of_trained)
    config = tiny_config(copy_of_trained)
    v1 = version_dir(config, 1) / TAIL_FILE
    v1.write_bytes(b"")  # and the older one is empty
    with pytest.raises(ModelLoadError) as failed:
        load_scorer(config)
    why = str(failed.value)
    assert why.startswith("no promoted model version can be loaded: v2: ")
    assert "; v1: " in why
    with Database(config.db_path) as db:
        with db.transaction() as conn:
            enqueue_job(conn, str(copy_of_trained / "photo.jpg"), "sha-photo")
        assert wait_for_a_model(db, f"the model cannot be loaded: {why}") == 1
        [(state, reason)] = sql_all(db, "SELECT state, reason FROM jobs")
    assert state == "waiting_model"
    assert reason.startswith("the model cannot be loaded: no promoted model version can be")
