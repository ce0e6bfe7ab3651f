"""Scheduled retraining: its cost follows the new posts, not the store's size, and it validates
as well as a full retrain.

Timing (synthetic cached features): for a store of 5,000 and one of 100,000 labelled posts
(owners: one per 33 posts, 3,000 at 100,000), whose features are already cached (random sparse
activations in the cache's compact form) and whose current model was trained on all of them,
200 new posts with real generated images arrive and the scheduled retrain runs (`run_training`,
as `instaflyd train --scheduled` does): it computes the new posts' features, reads them plus
`train.replay_posts` older ones, validates on at most `train.validation_max_posts` posts. An
untimed retrain on a small store warms TensorFlow up first.

Quality (real training): `--quality-posts` generated posts (tests/support_model: the like rate
follows brightness), a first model by a full pass, 200 new posts; then from the same state the
scheduled (incremental) retrain and a full retrain (`train --full`), judged on the same
validation posts.

    .venv/bin/python bench/train_incremental.py                    # the goal: 5,000 vs 100,000
    .venv/bin/python bench/train_incremental.py --sizes 2000 10000 --quality-posts 1500  # quick
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from big_store import add_posts  # noqa: E402
from support_model import add_generated_posts  # noqa: E402

from instaflyd.config import Config, build_config  # noqa: E402
from instaflyd.model import feature_codec, registry  # noqa: E402
from instaflyd.model.backbone import BACKBONE, build_backbone, build_tail  # noqa: E402
from instaflyd.model.features import FeatureCache  # noqa: E402
from instaflyd.model.manifest import VersionManifest  # noqa: E402
from instaflyd.model.training import TrainResult, run_training  # noqa: E402
from instaflyd.store import Database  # noqa: E402
from instaflyd.store.versions import add_model_version  # noqa: E402

NEW_POSTS = 200
POSTS_PER_OWNER = 33


def bench_config(data_dir: Path, input_size: int, epochs: int | None) -> Config:
    train: dict = {"min_labelled_posts": 2, "min_owners": 2}
    if epochs:
        train["epochs"] = epochs
    return build_config(
        {"model": {"input_size": input_size, "weights": "none"}, "train": train},
        data_dir=data_dir,
    )


def cached_store(config: Config, posts: int) -> None:
    """`posts` labelled posts with synthetic cached features, and a model v1 trained on them."""
    shas = add_posts(config, posts, max(2, posts // POSTS_PER_OWNER))
    backbone = build_backbone(config, "none", config.model.input_size)
    cache = FeatureCache(config.features_dir, backbone)
    cache.claim_folder()
    rng = np.random.default_rng(0)
    for sha256 in shas:
        activations = np.maximum(rng.normal(-1.0, 1.0, backbone.feature_shape), 0)
        path = cache.path_for(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(feature_codec.encode(activations))
    tail = build_tail(config.train.seed, backbone.tail_conv_weights)
    manifest = VersionManifest(
        version=1, backbone=BACKBONE, input_size=backbone.input_size, weights=backbone.weights,
        fingerprint=backbone.fingerprint, seed=config.train.seed,
        objective=config.train.objective, keras=keras.__version__, created=time.time(),
    )  # fmt: skip
    metrics = {"pass": "full", "val_srcc": None}
    folder = registry.write_version(config, 1, tail, manifest, metrics)
    time.sleep(0.05)  # the features predate the model, as after a real run
    with Database(config.db_path) as db, db.transaction() as conn:
        path = str(folder.relative_to(config.data_dir))
        add_model_version(conn, 1, path, posts, posts, metrics, promoted=True)


def timed_retrain(config: Config, full: bool = False) -> tuple[float, TrainResult]:
    started = time.monotonic()
    result = run_training(config, full_pass=full)
    return time.monotonic() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[5000, 100_000])
    parser.add_argument("--input-size", type=int, default=64, help="timing stores (default 64)")
    parser.add_argument("--quality-posts", type=int, default=3000)
    parser.add_argument("--quality-input-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=None, help="default: train.epochs (10)")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="instafly-bench-") as temp:
        root = Path(temp)
        defaults = bench_config(root / "x", args.input_size, args.epochs).train
        print(
            f"scheduled retrain after {NEW_POSTS} new posts: replay {defaults.replay_posts}, "
            f"validation <= {defaults.validation_max_posts}, {defaults.epochs} epochs, "
            f"random weights, {os.cpu_count()} CPUs"
        )

        print(f"timing, input {args.input_size}x{args.input_size}, synthetic cached features:")
        seconds = {}
        for label, posts in (("warm-up", 600), *((f"{n:,} posts", n) for n in args.sizes)):
            config = bench_config(root / label, args.input_size, args.epochs)
            started = time.monotonic()
            cached_store(config, posts)
            built = time.monotonic() - started
            add_generated_posts(config, NEW_POSTS, start=posts, side=args.input_size)
            elapsed, result = timed_retrain(config)
            seconds[posts] = elapsed
            print(
                f"  {label:<14} store built in {built:6.1f} s; retrain {elapsed:6.1f} s "
                f"({result.samples} posts read)"
            )
        small, large = args.sizes
        print(
            f"  ratio {large:,} / {small:,} posts: {seconds[large] / seconds[small]:.2f}x "
            f"(goal <= 2x)"
        )

        if args.skip_quality:
            return
        size = args.quality_input_size
        print(
            f"quality, {args.quality_posts:,} generated posts + {NEW_POSTS} new, "
            f"input {size}x{size}, real features:"
        )
        config = bench_config(root / "quality", size, args.epochs)
        add_generated_posts(config, args.quality_posts, side=size)
        elapsed, first = timed_retrain(config)
        print(f"  v1, full pass: {elapsed:.1f} s, val Spearman {first.val_srcc:.4f}")
        add_generated_posts(config, NEW_POSTS, start=args.quality_posts, side=size)
        twin = bench_config(root / "quality-full", size, args.epochs)
        shutil.copytree(config.data_dir, twin.data_dir)
        inc_seconds, incremental = timed_retrain(config)
        full_seconds, full = timed_retrain(twin, full=True)
        for name, took, result in (
            ("scheduled (incremental)", inc_seconds, incremental),
            ("full retrain", full_seconds, full),
        ):
            print(
                f"  {name:<24} {took:7.1f} s  {result.samples:>6} posts  "
                f"val Spearman {result.val_srcc:.4f}"
            )
        difference = (incremental.val_srcc or 0) - (full.val_srcc or 0)
        print(
            f"  Spearman difference (scheduled - full): {difference:+.4f} (goal within 0.01); "
            f"time {inc_seconds / full_seconds:.2f}x"
        )


if __name__ == "__main__":
    main()
