"""A generated labelled dataset for model tests, and a tiny model trained on it in seconds.

Posts by several owners with very different follower counts; each post's like rate is driven by
its image's brightness (plus a small per-owner offset and noise), so a model that learns
"brighter is better" ranks unseen images correctly. Images are real JPEG files stored the way
capture stores them (`ImageFiles`, `record_image`, `upsert_post`, `attach_image`).

The enhance and watch tests reuse `train_tiny_model` to get a real, promoted model quickly.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from instaflyd.config import Config, build_config
from instaflyd.store import AccountRecord, Database, ImageFiles, PostRecord
from instaflyd.store.images import record_image
from instaflyd.store.posts import attach_image, upsert_post

# (owner id, followers, offset of the owner's log like rate)
OWNERS: list[tuple[str, int, float]] = [
    ("1001", 1_200, 0.15),
    ("1002", 5_300, -0.1),
    ("1003", 24_000, 0.05),
    ("1004", 97_000, -0.15),
    ("1005", 410_000, 0.1),
    ("1006", 2_600, -0.05),
]
IMAGE_SIDE = 96
BRIGHTNESS_EFFECT = 2.5  # log like rate gained from the darkest to the brightest image

# What a tiny model needs: small input, random weights, a few quick epochs. Merge into a test's
# config (`build_config(TINY_MODEL, data_dir)` or a YAML file with these keys).
TINY_MODEL: dict[str, Any] = {
    "model": {"input_size": 64, "weights": "none"},
    "train": {
        "epochs": 12,
        "learning_rate": 0.001,
        "batch_size": 16,
        "min_labelled_posts": 20,
        "min_owners": 3,
        "min_new_posts": 10,
        "validation_fraction": 0.34,
    },
}


@dataclass(frozen=True)
class GeneratedPost:
    post_id: str
    owner_id: str
    brightness: float
    like_count: int
    follower_count: int


def generated_image(brightness: float, seed: int, side: int = IMAGE_SIDE) -> bytes:
    """A JPEG of smooth random colour blobs scaled to `brightness` (0 dark .. 1 bright)."""
    rng = np.random.default_rng(seed)
    blobs = rng.uniform(40, 255, size=(5, 5, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(blobs).resize((side, side), Image.Resampling.BICUBIC))
    grain = rng.normal(0, 6, size=smooth.shape)
    pixels = np.clip(smooth * brightness + grain, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def add_generated_posts(
    config: Config, count: int, *, start: int = 0, seed: int = 0, side: int = IMAGE_SIDE
) -> list[GeneratedPost]:
    """Store `count` labelled photo posts (ids from `start`), spread over OWNERS."""
    rng = np.random.default_rng(seed + start)
    files = ImageFiles(config.images_dir)
    posts = []
    with Database(config.db_path) as db, db.transaction() as conn:
        for i in range(start, start + count):
            owner_id, followers, offset = OWNERS[i % len(OWNERS)]
            brightness = float(rng.uniform(0.1, 1.0))
            log_rate = -3.5 + BRIGHTNESS_EFFECT * brightness + offset + rng.normal(0, 0.2)
            likes = round(math.exp(log_rate) * followers)
            data = generated_image(brightness, seed=seed * 100_003 + i, side=side)
            stored = files.put(data, "jpg")
            record_image(conn, stored, side, side, len(data))
            owner = AccountRecord(owner_id, username=f"user{owner_id}", follower_count=followers)
            post_id = str(5_000_000 + i)
            upsert_post(conn, PostRecord(post_id, "photo", owner=owner, like_count=likes))
            attach_image(conn, post_id, stored.sha256)
            posts.append(GeneratedPost(post_id, owner_id, brightness, likes, followers))
    return posts


def add_broken_post(config: Config) -> None:
    """A labelled post whose stored "image" cannot be decoded (a truncated capture, say)."""
    with Database(config.db_path) as db, db.transaction() as conn:
        data = b"\xff\xd8 not a whole JPEG"  # stored so: its file is as it was captured
        stored = ImageFiles(config.images_dir).put(data, "jpg")
        record_image(conn, stored, 640, 640, len(data))
        owner = AccountRecord(OWNERS[0][0], follower_count=OWNERS[0][1])
        upsert_post(conn, PostRecord("4999999", "photo", owner=owner, like_count=5))
        attach_image(conn, "4999999", stored.sha256)


def trainer_pid_file(data_dir: Path) -> Path:
    """Beside a shared trained data dir: the pid of the process that trained its model, written
    once the model is ready (see conftest.trained_data_dir)."""
    return data_dir.with_name(data_dir.name + ".trainer-pid")


def tiny_config(data_dir, **overrides: Any) -> Config:
    """TINY_MODEL's config on `data_dir`, with optional section overrides merged in."""
    values = {section: dict(keys) for section, keys in TINY_MODEL.items()}
    for section, keys in overrides.items():
        values.setdefault(section, {}).update(keys)
    return build_config(values, data_dir=data_dir)


def train_tiny_model(config: Config, posts: int = 72):
    """Store `posts` generated posts (unless the store has labelled posts) and train a model.

    Returns the `TrainResult`; the model is promoted (it is the first). A few seconds with
    TINY_MODEL's settings.
    """
    from instaflyd.model.training import run_training
    from instaflyd.store.stats import labelled_count

    with Database(config.db_path) as db:
        empty = labelled_count(db.conn) == 0
    if empty:
        add_generated_posts(config, posts)
    return run_training(config)
