"""The feature cache against recomputing the frozen part every epoch.

A store of `--posts` labelled posts (3,231 by default: the size of the 2017 project's data set)
with generated images, whose frozen-part features are already cached (as after the first
training); then `--new` posts (200) arrive and the model is retrained on all of them:

  cached     the real job (`run_training`): computes the new posts' features once, reads the
             others from the cache, trains block5_conv3 + the head for `train.epochs` epochs
  recompute  the same retraining (same split, same starting tail, same epochs and batches) with
             the frozen part run again on the decoded images every epoch, as without a cache

Both run in this one process, one after the other; each phase's peak resident memory is measured
separately (Linux: /proc/self/clear_refs resets the high-water mark).

    .venv/bin/python bench/feature_cache_speedup.py                       # the full run
    .venv/bin/python bench/feature_cache_speedup.py --posts 400 --input-size 128   # a quick one
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402
from support_model import add_generated_posts  # noqa: E402

from instaflyd.config import Config, build_config  # noqa: E402
from instaflyd.model.backbone import Backbone, build_backbone  # noqa: E402
from instaflyd.model.features import CachedImage, FeatureCache  # noqa: E402
from instaflyd.model.inputs import load_image  # noqa: E402
from instaflyd.model.labels import labelled_posts, split_by_owner  # noqa: E402
from instaflyd.model.training import fit, fresh_tail, run_training  # noqa: E402
from instaflyd.store import Database, ImageFiles  # noqa: E402

FORWARD_BATCH = 32


class FrozenPartEveryTime:
    """Features as `fit` reads them, but computed from the pixels each time they are asked for."""

    def __init__(self, backbone: Backbone, pixels: np.ndarray) -> None:
        self.backbone = backbone
        self.pixels = pixels  # (N, S, S, 3) uint8, decoded once

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        chunks = (
            rows[start : start + FORWARD_BATCH] for start in range(0, len(rows), FORWARD_BATCH)
        )
        return np.concatenate(
            [np.asarray(self.backbone.forward(self.pixels[c].astype(np.float32))) for c in chunks]
        )


def reset_peak_memory() -> None:
    """Reset the peak RSS (where not allowed, the peak is the process's peak so far)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=3231, help="labelled posts already cached")
    parser.add_argument("--new", type=int, default=200, help="new posts that trigger retraining")
    parser.add_argument("--input-size", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=None, help="default: train.epochs (10)")
    parser.add_argument("--data-dir", type=Path, help="default: a temporary folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="instafly-bench-") as temp:
        data_dir = args.data_dir or Path(temp)
        train = {"min_labelled_posts": 2, "min_owners": 2}
        if args.epochs:
            train["epochs"] = args.epochs
        config = build_config(
            {"model": {"input_size": args.input_size, "weights": "none"}, "train": train},
            data_dir=data_dir,
        )
        size, epochs = args.input_size, config.train.epochs
        print(f"{args.posts} labelled posts + {args.new} new, input {size}x{size}, ", end="")
        print(f"{epochs} epochs, random weights, {os.cpu_count()} CPUs")

        started = time.monotonic()
        add_generated_posts(config, args.posts, side=size)
        with Database(config.db_path) as db:
            posts = labelled_posts(db.conn, ImageFiles(config.images_dir))
        cache = FeatureCache(config.features_dir, build_backbone(config, "none", size))
        cache.features([CachedImage(post.image_sha256, post.image_path) for post in posts])
        print(f"  set-up: store and first feature caching  {time.monotonic() - started:8.1f} s")
        add_generated_posts(config, args.new, start=args.posts, side=size)

        cached = timed(
            "with the feature cache", lambda: run_training(config).val_srcc or float("nan")
        )
        recompute = timed("recomputing the frozen part every epoch", lambda: retrain(config))
        print(f"  speed-up with the cache: {recompute / cached:.1f}x")


def timed(label: str, train: Callable[[], float]) -> float:
    """Run one side, print its time, peak memory and validation Spearman; return the seconds."""
    reset_peak_memory()
    started = time.monotonic()
    srcc = train()
    seconds = time.monotonic() - started
    print(
        f"  {label:<41}{seconds:8.1f} s   peak RSS {peak_memory_gb():5.2f} GB"
        f"   val Spearman {srcc:.3f}"
    )
    return seconds


def retrain(config: Config) -> float:
    """The job's retraining without the cache: same posts, split, starting tail and epochs."""
    with Database(config.db_path) as db:
        posts = labelled_posts(db.conn, ImageFiles(config.images_dir))
    split = split_by_owner(posts, config.train.validation_fraction, config.train.seed)
    size = config.model.input_size
    backbone = build_backbone(config, "none", size)
    pixels = np.stack([load_image(post.image_path, size) for post in split.posts])
    tail = fresh_tail(config, backbone, split)
    metrics = fit(tail, FrozenPartEveryTime(backbone, pixels), split, config.train, lambda *_: None)
    return metrics["val_srcc"] or float("nan")


if __name__ == "__main__":
    main()
