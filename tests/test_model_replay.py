"""Retraining reads the new posts plus a bounded replay sample, with a full pass now and then."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support_model import add_generated_posts, tiny_config

from instaflyd.config import Config
from instaflyd.model.features import CachedFile, FeatureCache
from instaflyd.model.labels import LabelledPost, Split, labelled_posts, split_by_owner
from instaflyd.model.replay import plan_run, validation_sample
from instaflyd.model.training import run_training
from instaflyd.store import Database, ImageFiles
from instaflyd.store.versions import runs_since_full_pass


def post(n: int, owner: str) -> LabelledPost:
    sha = f"{n:064x}"
    return LabelledPost(str(n), owner, 10, 100, sha, Path(f"/nowhere/{sha}.jpg"), float(n))


TRAIN = [post(n, "ab"[n % 2]) for n in range(1, 21)]
VALIDATION = [post(n, "c") for n in range(100, 105)]
SPLIT = Split(TRAIN, VALIDATION)
# posts 1-16 cached before the current model was trained (at 200); 15 again after it (a run
# whose model was not promoted); 17-20 never
CACHED = {p.image_sha256: CachedFile(1000, 100.0) for p in TRAIN[:16]}
CACHED[TRAIN[14].image_sha256] = CachedFile(1000, 300.0)


def settings(data_dir: Path, **train):
    return tiny_config(data_dir, train={"replay_posts": 5, "full_pass_every": 3, **train}).train


def test_an_incremental_run_reads_the_new_posts_and_a_replay_sample(data_dir: Path) -> None:
    plan = plan_run(
        SPLIT, settings(data_dir), cached=CACHED, current_trained_at=200.0, runs_since_full=0,
        version=2,
    )  # fmt: skip
    assert plan.kind == "incremental"
    ids = [p.post_id for p in plan.split.train]
    new = {"15", "17", "18", "19", "20"}
    assert new <= set(ids) and (plan.new, plan.replayed) == (5, 5) and len(ids) == 10
    assert ids == sorted(ids, key=int)  # in the store's order
    assert plan.split.validation == VALIDATION
    # another version draws another replay sample; the same version the same one
    again = plan_run(SPLIT, settings(data_dir), cached=CACHED, current_trained_at=200.0,
                     runs_since_full=0, version=2)  # fmt: skip
    other = plan_run(SPLIT, settings(data_dir), cached=CACHED, current_trained_at=200.0,
                     runs_since_full=0, version=3)  # fmt: skip
    assert again.split == plan.split and other.split != plan.split


@pytest.mark.parametrize(
    ("trained_at", "runs_since_full", "full", "replay", "reason"),
    [
        (None, 0, False, 5, "no model to start from"),
        (200.0, 2, False, 5, "every 3 runs"),
        (200.0, None, False, 5, "every 3 runs"),
        (200.0, 0, True, 5, "asked for"),
        (200.0, 0, False, 15, "few enough posts"),
    ],
)
def test_when_a_run_is_a_full_pass(
    data_dir: Path, trained_at, runs_since_full, full, replay, reason
) -> None:
    plan = plan_run(
        SPLIT, settings(data_dir, replay_posts=replay), cached=CACHED,
        current_trained_at=trained_at, runs_since_full=runs_since_full, version=2, full=full,
    )  # fmt: skip
    assert (plan.kind, plan.reason, plan.replayed) == ("full", reason, 0)
    assert plan.split.train == TRAIN


def test_validation_is_a_bounded_stable_sample(data_dir: Path) -> None:
    capped = settings(data_dir, validation_max_posts=3)
    sample = validation_sample(VALIDATION, capped)
    assert len(sample) == 3 and sample == validation_sample(VALIDATION, capped)
    more = VALIDATION + [post(n, "c") for n in range(105, 120)]
    bigger = validation_sample(more, capped)
    assert len(bigger) == 3
    # a post that is in the sample of a larger store was in the sample of the smaller one
    assert {p.post_id for p in bigger} & {p.post_id for p in VALIDATION} <= {
        p.post_id for p in sample
    }
    assert validation_sample(VALIDATION, settings(data_dir)) == VALIDATION


def version_metrics(config: Config, version: int) -> dict:
    with Database(config.db_path) as db:
        row = db.conn.execute(
            "SELECT metrics FROM model_versions WHERE version = ?", (version,)
        ).fetchone()
    return json.loads(row["metrics"])


@pytest.mark.slow  # three training runs
def test_scheduled_retrains_read_only_new_and_replay_posts_then_a_full_pass(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny_config(data_dir, train={"epochs": 2, "replay_posts": 6, "full_pass_every": 2})
    add_generated_posts(config, 36)
    first = run_training(config)
    assert version_metrics(config, first.version)["pass"] == "full"

    with Database(config.db_path) as db:
        before = {p.post_id for p in labelled_posts(db.conn, ImageFiles(config.images_dir))}
    add_generated_posts(config, 12, start=36)
    with Database(config.db_path) as db:
        posts = labelled_posts(db.conn, ImageFiles(config.images_dir))
        assert runs_since_full_pass(db.conn) == 0
    split = split_by_owner(posts, config.train.validation_fraction, config.train.seed)
    new_train = [p for p in split.train if p.post_id not in before]
    validation_shas = {p.image_sha256 for p in split.validation}

    read: set[str] = set()
    original_read = FeatureCache._read

    def spy(self: FeatureCache, sha256: str):
        read.add(sha256)
        return original_read(self, sha256)

    monkeypatch.setattr(FeatureCache, "_read", spy)
    second = run_training(config)
    metrics = version_metrics(config, second.version)
    assert metrics["pass"] == "incremental"
    assert (metrics["new_posts"], metrics["replayed_posts"]) == (len(new_train), 6)
    assert metrics["train_samples"] == len(new_train) + 6
    assert metrics["features_computed"] == 12  # the new posts only; the rest from the cache
    trained_on = read - validation_shas
    assert {p.image_sha256 for p in new_train} <= trained_on
    assert len(trained_on) == len(new_train) + 6  # and 6 older ones, no more

    with Database(config.db_path) as db:
        assert runs_since_full_pass(db.conn) == 1
    read.clear()
    third = run_training(config)  # every 2nd run reads every post
    metrics = version_metrics(config, third.version)
    assert metrics["pass"] == "full" and metrics["replayed_posts"] == 0
    assert metrics["train_samples"] == len(split.train)
    assert read - validation_shas == {p.image_sha256 for p in split.train}
