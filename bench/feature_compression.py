"""Feature cache formats: what each costs on disk, and in validation Spearman when trained on.

The same generated posts (tests/support_model: a like rate driven by brightness, over six owners)
go through the frozen part once; the features are then stored three ways and the model is
trained twice on the same split, from the same starting tail, for the same epochs:

  float16          the former cache format (.npy, 2 bytes a value)
  float16+deflate  the same values, deflated (lossless)
  compact          instaflyd.model.feature_codec: 8 bits per value against each channel's
                   maximum, deflated (what the cache now writes)

It prints bytes per post, the size ratios, the share of zeros, decoding time, and the validation
Spearman of training on float16 against training on the compact form.

    .venv/bin/python bench/feature_compression.py                       # 800 posts at 320 px
    .venv/bin/python bench/feature_compression.py --posts 300 --input-size 128   # quicker
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402
from support_model import add_generated_posts  # noqa: E402

from instaflyd.config import build_config  # noqa: E402
from instaflyd.model import feature_codec  # noqa: E402
from instaflyd.model.backbone import build_backbone  # noqa: E402
from instaflyd.model.features import FeatureCache  # noqa: E402
from instaflyd.model.labels import labelled_posts, split_by_owner  # noqa: E402
from instaflyd.model.training import fit, fresh_tail  # noqa: E402
from instaflyd.store import Database, ImageFiles  # noqa: E402

BATCH = 32


def npy_bytes(value: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, value, allow_pickle=False)
    return buffer.getvalue()


def deflated_bytes(value: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, features=value)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=800)
    parser.add_argument("--input-size", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="instafly-bench-") as temp:
        config = build_config(
            {
                "model": {"input_size": args.input_size, "weights": "none"},
                "train": {"epochs": args.epochs, "validation_fraction": 0.34},
            },
            data_dir=Path(temp),
        )
        size = args.input_size
        print(
            f"{args.posts} generated posts, input {size}x{size}, {args.epochs} epochs, "
            f"random weights, {os.cpu_count()} CPUs"
        )
        add_generated_posts(config, args.posts, side=size)
        with Database(config.db_path) as db:
            posts = labelled_posts(db.conn, ImageFiles(config.images_dir))
        split = split_by_owner(posts, config.train.validation_fraction, config.train.seed)
        backbone = build_backbone(config, "none", size)
        cache = FeatureCache(config.features_dir, backbone)
        paths = [post.image_path for post in split.posts]
        exact = np.concatenate(
            [cache.compute(paths[start : start + BATCH]) for start in range(0, len(paths), BATCH)]
        )

        raw = [npy_bytes(value) for value in exact]
        deflated = [deflated_bytes(value) for value in exact]
        compact = [feature_codec.encode(value) for value in exact]
        started = time.perf_counter()
        decoded = np.stack([feature_codec.decode(io.BytesIO(data)) for data in compact])
        decode_ms = (time.perf_counter() - started) * 1000 / len(compact)

        def mean_kb(files: list[bytes]) -> float:
            return float(np.mean([len(data) for data in files])) / 1000

        zeros = float(np.mean(exact == 0))
        print(f"  zeros among the values: {zeros:.1%}")
        print(f"  {'format':<18}{'KB/post':>10}{'vs float16':>12}")
        for name, files in (("float16", raw), ("float16+deflate", deflated), ("compact", compact)):
            print(f"  {name:<18}{mean_kb(files):10.1f}{mean_kb(raw) / mean_kb(files):11.1f}x")
        error = np.abs(decoded.astype(np.float32) - exact.astype(np.float32))
        print(
            f"  compact: decoding {decode_ms:.2f} ms/post, largest error "
            f"{float(error.max()):.4f} (largest value {float(exact.max()):.2f})"
        )

        scores = {}
        for name, features in (("float16", exact), ("compact", decoded)):
            tail = fresh_tail(config, backbone, split)
            started = time.perf_counter()
            metrics = fit(tail, features, split, config.train, lambda *_: None)
            scores[name] = metrics["val_srcc"]
            print(
                f"  trained on {name:<10} val Spearman {metrics['val_srcc']:.4f}  "
                f"pairwise accuracy {metrics['val_pairwise_accuracy']:.1%}  "
                f"({time.perf_counter() - started:.1f} s)"
            )
        print(
            f"  size ratio float16/compact {mean_kb(raw) / mean_kb(compact):.1f}x, "
            f"Spearman difference (compact - float16) {scores['compact'] - scores['float16']:+.4f}"
        )


if __name__ == "__main__":
    main()
