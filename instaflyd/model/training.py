"""The training job: labels, cached features, fit the tail, validate, write a version, promote.

One job at a time: it claims the run in the database (a run left `running` by a dead process is
marked failed first), writes its progress there after every epoch, and writes `models/vNNNN/`
atomically. Training starts from the current version's tail when it was trained on the same
frozen part (incremental fine-tuning), otherwise from VGG16's block5_conv3 and a fresh head.
The posts it reads are those the feature cache's budget keeps (`feature_budget`), and of those
the new ones plus a replay sample, or all of them now and then (`replay`).
The new version is promoted only if its validation Spearman correlation is not worse than the
current version's on the same validation posts. Killed at any moment, it leaves the current
model and the store as they were.

Memory: the frozen part (VGG16 through block5_conv2) is built only when some post's features
are not cached (`features.frozen_part`), and freed once they are computed, before the tail
trains; the tail trains and predicts on cached features a batch at a time.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from instaflyd.config import Config, TrainConfig
from instaflyd.model import lessons, registry
from instaflyd.model.backbone import (
    BACKBONE,
    FEATURE_CHANNELS,
    Backbone,
    FrozenPart,
    build_tail,
)
from instaflyd.model.errors import ModelLoadError
from instaflyd.model.feature_budget import admit
from instaflyd.model.features import CachedImage, FeatureCache, frozen_part
from instaflyd.model.labels import (
    Split,
    labelled_posts,
    owner_ids,
    split_by_owner,
    targets,
)
from instaflyd.model.manifest import VersionManifest
from instaflyd.model.metrics import spearman, validation_metrics
from instaflyd.model.replay import plan_run
from instaflyd.model.scoring import score_files
from instaflyd.processes import claim_alive
from instaflyd.store import Database, ImageFiles
from instaflyd.store.events import log_event
from instaflyd.store.stats import labelled_count
from instaflyd.store.versions import (
    ModelVersion,
    add_model_version,
    current_model_version,
    finish_training_run,
    next_model_version,
    record_training_cpu,
    record_training_progress,
    running_training_runs,
    runs_since_full_pass,
    start_training_run,
)

log = logging.getLogger("instafly.model.training")

PREDICT_VALUES = 16 * 20 * 20 * FEATURE_CHANNELS  # feature values a prediction batch: 16 at 320


class TrainingBusy(Exception):
    """Another trainer process is running."""


class Features(Protocol):
    """What `fit` reads features from: indexed by an array of row numbers."""

    def __getitem__(self, rows: np.ndarray) -> np.ndarray: ...


EpochCallback = Callable[[int, float, dict[str, Any]], None]


@dataclass(frozen=True)
class TrainResult:
    version: int
    promoted: bool
    samples: int
    val_srcc: float | None
    val_pairwise_accuracy: float | None
    seconds: float
    current_version: int | None  # the version it was compared with
    current_val_srcc: float | None

    def as_json(self) -> dict[str, Any]:
        """The `train --json` document."""
        keys = ("version", "promoted", "samples", "val_srcc", "val_pairwise_accuracy", "seconds")
        values = asdict(self)
        return {key: values[key] for key in keys}

    def summary(self) -> str:
        """One line for people, e.g. "v3 promoted: 1240 posts, validation Spearman 0.412, ..."."""
        verdict = "promoted" if self.promoted else "not promoted"
        line = (
            f"v{self.version} {verdict}: {self.samples} posts, "
            f"validation Spearman {_fmt(self.val_srcc)}, "
            f"pairwise accuracy {_fmt(self.val_pairwise_accuracy, '.1%')}"
        )
        if self.current_version is not None:
            line += (
                f"; v{self.current_version} scores {_fmt(self.current_val_srcc)} on the same posts"
            )
        return f"{line} ({self.seconds:.1f} s)"


def run_training(
    config: Config, weights: str | None = None, *, full_pass: bool = False
) -> TrainResult:
    """Train a new version now (the caller has decided it is due). `weights` overrides the
    `model.weights` setting (`none` when the ImageNet file is missing and random was allowed);
    `full_pass` trains on every post even when an incremental run is due."""
    started = time.monotonic()
    with Database(config.db_path) as db:
        run_id = claim_training_run(db, config.train.epochs)
        try:
            weights = weights or config.model.weights
            result = _train(config, db, run_id, weights, started, full_pass)
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}"
            with db.transaction() as conn:
                finish_training_run(conn, run_id, "failed", message=message)
                record_training_cpu(conn, own_cpu_seconds(), run_id=run_id)
                log_event(conn, "trainer", "error", "training_failed", message)
            raise
        with db.transaction() as conn:  # the daily budget counts it (the daemon's figure wins)
            record_training_cpu(conn, own_cpu_seconds(), run_id=run_id)
    return result


def own_cpu_seconds() -> float:
    """This process's user + system CPU time so far (its threads included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def claim_training_run(db: Database, epochs: int) -> int:
    """Start a training run unless one is alive; runs left by dead processes become failed."""
    with db.transaction() as conn:
        for run in running_training_runs(conn):
            if claim_alive(run.pid, run.started) and run.pid != os.getpid():
                raise TrainingBusy(f"training is already running (pid {run.pid})")
            message = f"the trainer (pid {run.pid}) stopped before finishing"
            finish_training_run(conn, run.id, "failed", message=message)
            log_event(conn, "trainer", "warning", "training_interrupted", message)
        return start_training_run(conn, os.getpid(), epochs)


def _train(
    config: Config, db: Database, run_id: int, weights: str, started: float, full_pass: bool
) -> TrainResult:
    registry.clean_models_dir(config, db.conn)
    labelled_total = labelled_count(db.conn)
    backbone = frozen_part(config, weights, config.model.input_size)
    cache = FeatureCache(config.features_dir, backbone, config.train.feature_cache_max_bytes)
    cache.claim_folder()
    admission = admit(labelled_posts(db.conn, ImageFiles(config.images_dir)), cache)
    split = split_by_owner(admission.kept, config.train.validation_fraction, config.train.seed)

    current = current_model_version(db.conn)
    tail, from_current = _starting_tail(config, backbone, current, split)
    plan = plan_run(
        split,
        config.train,
        cached=cache.inventory(),
        current_trained_at=current.created if from_current and current is not None else None,
        runs_since_full=runs_since_full_pass(db.conn),
        version=next_model_version(db.conn),
        full=full_pass,
    )
    split = plan.split
    log.info(
        "%s; training on %d posts (%d owners), validating on %d posts (%d owners)",
        plan.describe(),
        len(split.train), len({p.owner_id for p in split.train}),
        len(split.validation), len({p.owner_id for p in split.validation}),
    )  # fmt: skip

    features, report = cache.features(
        [CachedImage(post.image_sha256, post.image_path) for post in split.posts]
    )
    log.info(
        "features: %d computed, %d from the cache%s", report.computed, report.reused,
        "" if backbone.builds else " (the frozen part was not loaded)",
    )  # fmt: skip
    backbone.release()  # its memory goes back before the tail trains
    if report.left_out:
        split = split.without(report.left_out)
        features = features.without(report.left_out)

    def on_epoch(epoch: int, loss: float, metrics: dict[str, Any]) -> None:
        log.info("epoch %d/%d: loss %.4f, %s", epoch, config.train.epochs, loss, metrics)
        with db.transaction() as conn:
            record_training_progress(conn, run_id, epoch, loss, metrics)

    metrics = fit(tail, features, split, config.train, on_epoch)
    current_srcc = None
    if current is not None:
        current_srcc = _current_val_srcc(config, current.version, backbone, features, split)
    promoted = _not_worse(metrics["val_srcc"], current_srcc)

    # What it learned, in pictures: scored now, while the model is loaded (the page has no TF).
    all_scores = predict(tail, features, np.arange(len(split.posts)))
    version = next_model_version(db.conn)
    seconds = round(time.monotonic() - started, 3)
    metrics |= {
        "pass": plan.kind,
        "new_posts": plan.new,
        "replayed_posts": plan.replayed,
        "posts_over_budget": admission.left_out + len(report.over_budget),
        "train_samples": len(split.train),
        "features_computed": report.computed,
        "features_reused": report.reused,
        "current_version": current.version if current else None,
        "current_val_srcc": current_srcc,
        "seconds": seconds,
    }
    manifest = VersionManifest(
        version=version,
        backbone=BACKBONE,
        input_size=backbone.input_size,
        weights=backbone.weights,
        fingerprint=backbone.fingerprint,
        seed=config.train.seed,
        objective=config.train.objective,
        keras=keras.__version__,
        created=time.time(),
    )
    folder = registry.write_version(config, version, tail, manifest, metrics)
    result = TrainResult(
        version=version,
        promoted=promoted,
        samples=split.samples,
        val_srcc=metrics["val_srcc"],
        val_pairwise_accuracy=metrics["val_pairwise_accuracy"],
        seconds=seconds,
        current_version=current.version if current else None,
        current_val_srcc=current_srcc,
    )
    with db.transaction() as conn:
        add_model_version(
            conn,
            version,
            str(folder.relative_to(config.data_dir)),
            split.samples,
            labelled_total,
            metrics,
            promoted=promoted,
            pass_kind=plan.kind,
            compared_version=current.version if current else None,
            compared_val_srcc=current_srcc,
        )
        lessons.record(conn, version, split.posts, all_scores)
        finish_training_run(conn, run_id, "done", version=version, message=result.summary())
        log_event(conn, "trainer", "info", "model_trained", result.summary())
    registry.prune_versions(config, db.conn)
    return result  # the caller says it once (`instaflyd train` prints or logs the summary)


def regression_loss(scores: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Squared error of the predicted log(like rate)."""
    return tf.reduce_mean(tf.square(scores - target))


def pairwise_loss(scores: tf.Tensor, sign: tf.Tensor) -> tf.Tensor:
    """RankNet's logistic loss: the batch is pairs (first half, second half) by the same owner,
    `sign` +1 where the first did better."""
    first, second = tf.split(scores, 2)
    return tf.reduce_mean(tf.math.softplus(-sign * (first - second)))


def fit(
    tail: keras.Model,
    features: Features,
    split: Split,
    settings: TrainConfig,
    on_epoch: EpochCallback,
) -> dict[str, Any]:
    """Train `tail` for `settings.epochs`; returns the last epoch's validation metrics.

    Row i of `features` belongs to `split.posts[i]` (training posts first).

    `regression` fits log(like rate) by squared error; `pairwise` fits the order of pairs of
    posts by the same owner with a logistic (RankNet) loss. Both report the same metrics.
    """
    y = targets(split.posts)
    owners = owner_ids(split.posts)
    train_rows, val_rows = split.train_rows, split.validation_rows
    optimizer = keras.optimizers.Adam(settings.learning_rate)
    rng = np.random.default_rng(settings.seed)
    variables = tail.trainable_variables

    features_spec = tf.TensorSpec((None, None, None, FEATURE_CHANNELS), tf.float32)
    values_spec = tf.TensorSpec((None,), tf.float32)

    loss_of = regression_loss if settings.objective == "regression" else pairwise_loss

    @tf.function(input_signature=[features_spec, values_spec])
    def step(x: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_of(tail(x, training=True)[:, 0], values)
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    metrics: dict[str, Any] = {}
    for epoch in range(1, settings.epochs + 1):
        losses = [
            float(step(_float32(features[rows]), values))
            for rows, values in _batches(settings, train_rows, y, owners, rng)
        ]
        predictions = predict(tail, features, val_rows)
        metrics = validation_metrics(predictions, y[val_rows], owners[val_rows])
        on_epoch(epoch, float(np.mean(losses)) if losses else float("nan"), metrics)
    return metrics


def _batches(
    settings: TrainConfig,
    rows: np.ndarray,
    y: np.ndarray,
    owners: np.ndarray,
    rng: np.random.Generator,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of (feature rows, values): targets for regression; for pairwise, the rows of
    the first posts then of their partners, and +1/-1 for which of each pair did better."""
    size = settings.batch_size
    if settings.objective == "regression":
        order = rng.permutation(rows)
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            yield batch, y[batch]
        return
    first, second = same_owner_pairs(rows, y, owners, rng)
    for start in range(0, len(first), size):
        a, b = first[start : start + size], second[start : start + size]
        yield np.concatenate([a, b]), np.sign(y[a] - y[b]).astype(np.float32)


def same_owner_pairs(
    rows: np.ndarray, y: np.ndarray, owners: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One random partner by the same owner (with a different target) for every row, shuffled."""
    first, second = [], []
    for owner in np.unique(owners[rows]):
        mine = rows[owners[rows] == owner]
        partners = mine[rng.integers(len(mine), size=len(mine))]
        keep = y[mine] != y[partners]
        first.append(mine[keep])
        second.append(partners[keep])
    first_rows, second_rows = np.concatenate(first), np.concatenate(second)
    order = rng.permutation(len(first_rows))
    return first_rows[order], second_rows[order]


def predict(tail: keras.Model, features: Features, rows: np.ndarray) -> np.ndarray:
    """The tail's scores for the given rows of `features`, a few at a time (`PREDICT_VALUES`)."""
    if len(rows) == 0:
        return np.empty(0, dtype=np.float32)
    shape = getattr(features, "shape", None) or np.shape(features[rows[:1]])
    batch = max(1, PREDICT_VALUES // max(1, int(np.prod(shape[1:]))))
    out = [
        np.asarray(tail(_float32(features[rows[start : start + batch]]), training=False))
        for start in range(0, len(rows), batch)
    ]
    return np.concatenate(out)[:, 0] if out else np.empty(0, dtype=np.float32)


def _starting_tail(
    config: Config, backbone: FrozenPart, current: ModelVersion | None, split: Split
) -> tuple[keras.Model, bool]:
    """The current version's tail when it fits this frozen part (and True); else VGG16's conv +
    a new head (and False)."""
    if current is not None:
        try:
            tail = registry.tail_on(config, current.version, backbone)
        except ModelLoadError as exc:
            log.warning("cannot start from v%d (%s); starting afresh", current.version, exc)
            tail = None
        if tail is not None:
            log.info("fine-tuning v%d", current.version)
            return tail, True
    return fresh_tail(config, backbone, split), False


def fresh_tail(config: Config, backbone: Backbone | FrozenPart, split: Split) -> keras.Model:
    """VGG16's own block5_conv3 and a new head that starts at the mean training target."""
    tail = build_tail(config.train.seed, backbone.tail_conv_weights)
    tail.get_layer("score").bias.assign([float(np.mean(targets(split.train)))])
    return tail


def _current_val_srcc(
    config: Config, version: int, backbone: FrozenPart, features: Features, split: Split
) -> float | None:
    """The current version's Spearman correlation on this run's validation posts."""
    try:
        tail = registry.tail_on(config, version, backbone)
        if tail is not None:
            predictions = predict(tail, features, split.validation_rows)
        else:  # trained on another frozen part or input size: score the images in full
            scorer = registry.load_version(config, version)
            predictions = score_files(scorer, [post.image_path for post in split.validation])
    except ModelLoadError as exc:
        log.warning("cannot evaluate the current model v%d (%s); not comparing", version, exc)
        return None
    return spearman(predictions, targets(split.validation))


def _not_worse(new: float | None, current: float | None) -> bool:
    """Promote the first model (no current Spearman); later ones only with a validation Spearman
    at least as good."""
    if current is None:
        return True
    return new is not None and new >= current


def _float32(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)
