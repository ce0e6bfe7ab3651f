"""Training on a generated dataset: it learns, it is recorded, it survives SIGKILL, it is judged.

The dataset's like rate follows image brightness (see support_model), so a model that learned
anything ranks brighter unseen images higher.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import REPO, cli_env, run_cli, run_cli_json, sql_one, wait_until, write_config
from support_model import (
    TINY_MODEL,
    add_generated_posts,
    generated_image,
    tiny_config,
    train_tiny_model,
    trainer_pid_file,
)

from instaflyd.cli import main
from instaflyd.config import Config
from instaflyd.model.errors import NoModelError
from instaflyd.model.inputs import load_images
from instaflyd.model.labels import NotEnoughData
from instaflyd.model.metrics import spearman
from instaflyd.model.scoring import load_scorer
from instaflyd.model.training import TrainingBusy, claim_training_run, run_training
from instaflyd.store import Database
from instaflyd.store.versions import current_model_version, latest_training_run

UNSEEN_BRIGHTNESS = [0.12, 0.25, 0.38, 0.5, 0.62, 0.75, 0.88, 1.0]


def unseen_images(folder: Path) -> list[Path]:
    """Generated images the model never saw (other seeds), darkest first."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, brightness in enumerate(UNSEEN_BRIGHTNESS):
        path = folder / f"unseen-{i}.jpg"
        path.write_bytes(generated_image(brightness, seed=777_000 + i))
        paths.append(path)
    return paths


def assert_ranks_unseen_images(scores: list[float]) -> None:
    assert spearman(np.array(scores), np.array(UNSEEN_BRIGHTNESS)) >= 0.8
    assert scores[0] < scores[3] < scores[-1]


@pytest.fixture
def trained(trained_data_dir: Path) -> Config:
    """The session's tiny model v1, trained in this process on 72 generated posts and a broken one."""
    return tiny_config(trained_data_dir)


def test_the_first_model_learns_is_promoted_and_recorded(trained: Config) -> None:
    with Database(trained.db_path) as db:
        version = sql_one(db, "SELECT * FROM model_versions WHERE version = 1")
        run = sql_one(db, "SELECT * FROM training_runs WHERE version = 1")
    # the broken image's post is labelled but left out
    assert (version["promoted"], version["samples"], version["labelled_total"]) == (1, 72, 73)
    assert version["val_srcc"] >= 0.6
    assert version["val_pairwise_accuracy"] >= 0.6
    trainer = int(trainer_pid_file(trained.data_dir).read_text())  # this process, or another worker
    assert (run["state"], run["epoch"], run["epochs"], run["pid"]) == ("done", 12, 12, trainer)
    progress = json.loads(run["metrics"])
    assert progress["val_srcc"] == version["val_srcc"]
    assert set(progress) >= {"val_mse", "val_srcc", "val_pairwise_accuracy", "val_samples"}

    folder = trained.models_dir / "v0001"
    assert version["path"] == "models/v0001"
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.yaml",
        "metrics.json",
        "model.json",
        "tail.weights.h5",
    ]
    info = json.loads((folder / "model.json").read_text())
    assert (info["version"], info["backbone"], info["input_size"], info["weights"]) == (
        1,
        "vgg16",
        64,
        "none",
    )
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["val_srcc"] == version["val_srcc"]
    assert (metrics["features_computed"], metrics["train_samples"]) == (72, 48)
    assert "input_size: 64" in (folder / "config.yaml").read_text()


def test_the_scorer_ranks_unseen_images_and_is_differentiable(
    trained: Config, tmp_path: Path
) -> None:
    scorer = load_scorer(trained)
    assert (scorer.version, scorer.input_size) == (1, 64)
    pixels = tf.Variable(load_images(unseen_images(tmp_path), 64))
    with tf.GradientTape() as tape:
        scores = scorer(pixels)
        total = tf.reduce_sum(scores)
    gradient = tape.gradient(total, pixels).numpy()
    assert scores.shape == (len(UNSEEN_BRIGHTNESS),)
    assert_ranks_unseen_images(scores.numpy().tolist())
    assert gradient.shape == pixels.shape
    assert np.isfinite(gradient).all() and np.abs(gradient).sum() > 0
    # brighter is better for this model, and the gradient knows it
    assert gradient.mean() > 0


@pytest.mark.slow
def test_a_worse_model_is_written_but_not_promoted(copy_of_trained: Path) -> None:
    trained = tiny_config(copy_of_trained)
    reckless = tiny_config(trained.data_dir, train={"learning_rate": 1.0})
    result = run_training(reckless)
    assert (result.promoted, result.current_version) == (False, 1)
    assert result.val_srcc is None or result.val_srcc < result.current_val_srcc
    with Database(trained.db_path) as db:
        assert current_model_version(db.conn).version == 1
        row = sql_one(
            db, "SELECT promoted FROM model_versions WHERE version = ?", (result.version,)
        )
        assert row["promoted"] == 0
        assert f"v{result.version} not promoted" in latest_training_run(db.conn).message
    assert (trained.models_dir / f"v{result.version:04d}" / "tail.weights.h5").is_file()
    assert load_scorer(trained).version == 1


def test_score_prints_each_image_and_names_an_unreadable_one(
    trained: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = write_config(
        tmp_path / "instafly.yaml", {"data_dir": str(trained.data_dir), **TINY_MODEL}
    )
    dark, bright = unseen_images(tmp_path)[0], unseen_images(tmp_path)[-1]
    assert main(["--config", str(config_file), "score", str(dark), str(bright)]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header == "model v1: score = predicted log(likes / followers), higher is better"
    assert [line.split()[-1] for line in lines] == [str(dark), str(bright)]
    assert float(lines[0].split()[0]) < float(lines[1].split()[0])
    assert "% of followers)" in lines[0]

    notes = tmp_path / "notes.jpg"
    notes.write_text("not a photo")
    assert main(["--config", str(config_file), "score", str(dark), str(notes)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"instaflyd: {notes}: not a readable image (")


def test_a_damaged_or_mismatched_version_fails_to_load_with_the_reason(
    copy_of_trained: Path,
) -> None:
    config = tiny_config(copy_of_trained)
    # the version rebuilds the random weights it was trained on, whatever the seed is now
    assert load_scorer(tiny_config(config.data_dir, train={"seed": 5})).version == 1
    info_file = config.models_dir / "v0001" / "model.json"
    info = json.loads(info_file.read_text())
    info_file.write_text(json.dumps({**info, "fingerprint": "0" * 40}))
    with pytest.raises(
        NoModelError,
        match=r"^model v1 was trained on other frozen weights than the 'none' weights here",
    ):
        load_scorer(config)
    info_file.write_text(json.dumps({**info, "weights": "imagenet"}))
    with pytest.raises(
        NoModelError,
        match=r"^model v1 needs the weights it was trained on, .*notop.h5, which is missing",
    ):
        load_scorer(config)
    info_file.write_text(json.dumps(info))
    (config.models_dir / "v0001" / "tail.weights.h5").write_bytes(b"garbage")
    with pytest.raises(NoModelError, match=r"tail\.weights\.h5: cannot load the trained tail"):
        load_scorer(config)


@pytest.mark.slow
def test_the_pairwise_objective_learns_and_reports_the_same_metrics(data_dir: Path) -> None:
    result = train_tiny_model(tiny_config(data_dir, train={"objective": "pairwise"}))
    assert result.promoted and result.val_srcc >= 0.6 and result.val_pairwise_accuracy >= 0.6
    metrics = json.loads((data_dir / "models" / "v0001" / "metrics.json").read_text())
    assert set(metrics) >= {"val_mse", "val_srcc", "val_pairwise_accuracy", "val_samples"}
    assert json.loads((data_dir / "models" / "v0001" / "model.json").read_text())["objective"] == (
        "pairwise"
    )


def test_without_a_model_the_scorer_says_how_many_posts_are_needed(data_dir: Path) -> None:
    config = tiny_config(data_dir)
    add_generated_posts(config, 5)
    with pytest.raises(NoModelError) as error:
        load_scorer(config)
    assert str(error.value) == "no model yet: waiting for 15 more labelled posts (5 so far)"


def test_one_owner_cannot_be_trained_and_validated(data_dir: Path) -> None:
    config = tiny_config(data_dir)
    add_generated_posts(config, 1)
    with pytest.raises(NotEnoughData, match="at least 2 accounts"):
        run_training(config)
    with Database(config.db_path) as db:
        run = latest_training_run(db.conn)
        assert (run.state, run.message.split(":")[0]) == ("failed", "NotEnoughData")
        assert current_model_version(db.conn) is None
    assert not config.models_dir.exists() or not any(config.models_dir.iterdir())


def test_a_live_trainer_blocks_another_and_a_dead_one_is_marked_failed(data_dir: Path) -> None:
    config = tiny_config(data_dir)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with Database(config.db_path) as db:
            with db.transaction() as conn:
                conn.execute(
                    "INSERT INTO training_runs (started, state, pid) VALUES (?, 'running', ?)",
                    (time.time(), other.pid),
                )
            with pytest.raises(TrainingBusy, match=f"already running \\(pid {other.pid}\\)"):
                claim_training_run(db, epochs=3)
            other.kill()
            other.wait()
            run_id = claim_training_run(db, epochs=3)
            stale = sql_one(db, "SELECT * FROM training_runs WHERE pid = ?", (other.pid,))
            assert stale["state"] == "failed"
            assert stale["message"] == f"the trainer (pid {other.pid}) stopped before finishing"
            assert latest_training_run(db.conn).id == run_id
    finally:
        other.kill()
        other.wait()


@pytest.mark.slow
def test_the_cli_survives_sigkill_then_trains_and_scores(tmp_path: Path, data_dir: Path) -> None:
    """The real commands as processes: refuse without weights, killed mid-run, run, score."""
    values = {section: dict(keys) for section, keys in TINY_MODEL.items()}
    values["data_dir"] = str(data_dir)
    values["model"]["weights"] = "imagenet"  # configured but missing
    config_file = write_config(tmp_path / "instafly.yaml", values)
    values["train"] = {**values["train"], "epochs": 1000}
    slow_config = write_config(tmp_path / "slow.yaml", values)
    config = tiny_config(data_dir)
    add_generated_posts(config, 72)

    refused = run_cli("train", "--json", config=config_file)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "the ImageNet VGG16 weights are missing" in refused.stderr
    assert (
        "'instaflyd weights fetch'" in refused.stderr and "--allow-random-weights" in refused.stderr
    )

    trainer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "instaflyd",
            "--config",
            str(slow_config),
            "train",
            "--allow-random-weights",
        ],
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with Database(config.db_path) as db:
            wait_until(
                lambda: (run := latest_training_run(db.conn)) is not None and run.epoch >= 2,
                120,
                "the trainer's second epoch",
                process=trainer,
            )
        trainer.send_signal(signal.SIGKILL)
    finally:
        trainer.kill()
        trainer.wait()
    with Database(config.db_path) as db:
        killed = latest_training_run(db.conn)
        assert (killed.state, killed.pid) == ("running", trainer.pid)
        assert current_model_version(db.conn) is None
    assert not config.models_dir.exists() or not any(config.models_dir.iterdir())
    stats = run_cli_json("stats", "--json", config=config_file)
    assert (stats["capture"]["totals"]["labelled"], stats["model"]["version"]) == (72, None)

    result = run_cli_json("train", "--json", "--allow-random-weights", config=config_file)
    assert set(result) == {
        "version", "promoted", "samples", "val_srcc", "val_pairwise_accuracy", "seconds",
    }  # fmt: skip
    assert (result["version"], result["promoted"], result["samples"]) == (1, True, 72)
    assert result["val_srcc"] >= 0.6 and result["val_pairwise_accuracy"] >= 0.6
    with Database(config.db_path) as db:
        before = sql_one(db, "SELECT * FROM training_runs WHERE id = ?", (killed.id,))
        assert before["state"] == "failed"
        assert before["message"] == f"the trainer (pid {trainer.pid}) stopped before finishing"
        assert latest_training_run(db.conn).state == "done"
    metrics = json.loads((data_dir / "models" / "v0001" / "metrics.json").read_text())
    assert (metrics["features_computed"], metrics["features_reused"]) == (0, 72)  # the killed run's
    assert [p.name for p in config.models_dir.iterdir()] == ["v0001"]

    images = unseen_images(tmp_path / "unseen")
    scored = run_cli_json("score", "--json", *images, config=config_file)
    assert [item["path"] for item in scored] == [str(path) for path in images]
    assert_ranks_unseen_images([item["score"] for item in scored])

    quiet = run_cli("train", "--scheduled", config=config_file)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
