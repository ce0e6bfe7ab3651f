"""A big store for benchmarks: many labelled posts, accounts and events, built in seconds.

Posts go in through the store's own functions (`upsert_post`, `record_image`, `attach_image`),
spread over `accounts` owners, each with a follower count and a like count (so every photo is
labelled). Their image files are small distinct placeholders written without fsync: a benchmark
that needs real pixels adds those posts itself (tests/support_model.add_generated_posts).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from instaflyd.config import Config
from instaflyd.store import AccountRecord, Database, ImageFiles, PostRecord
from instaflyd.store.images import StoredImage, record_image
from instaflyd.store.posts import attach_image, upsert_post

DAY = 86_400.0


def add_posts(
    config: Config,
    posts: int,
    accounts: int,
    *,
    start: int = 0,
    seed: int = 0,
    now: float | None = None,
    image_bytes: int = 0,
) -> list[str]:
    """Store `posts` labelled photo posts (ids from `start`) over `accounts` owners, taken over
    the last year; returns their images' sha256s in post order. `image_bytes`: each image file
    that long (random bytes, as incompressible as a JPEG), else a few bytes."""
    now = time.time() if now is None else now
    rng = np.random.default_rng(seed + start)
    files = ImageFiles(config.images_dir)
    followers = (10 ** rng.uniform(2, 6, size=accounts)).astype(int)
    shas = []
    with Database(config.db_path) as db, db.transaction() as conn:
        for i in range(start, start + posts):
            owner_index = int(rng.integers(accounts))
            owner = AccountRecord(
                str(1_000_000 + owner_index),
                username=f"user{owner_index}",
                follower_count=int(followers[owner_index]),
            )
            data = f"placeholder image {i}".encode()
            if image_bytes > len(data):
                data += rng.bytes(image_bytes - len(data))
            sha256 = hashlib.sha256(data).hexdigest()
            path = files.path_for(sha256, "jpg")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            record_image(conn, StoredImage(sha256, "jpg", path, True), 1080, 1080, len(data))
            likes = int(owner.follower_count * 10 ** rng.uniform(-3, -0.5))
            post_id = str(9_000_000 + i)
            taken = int(now - rng.uniform(0, 365) * DAY)
            record = PostRecord(
                post_id,
                "photo",
                shortcode=f"S{i:x}",
                owner=owner,
                like_count=likes,
                comment_count=likes // 20,
                taken_at=taken,
                image_urls=[f"https://scontent.cdninstagram.com/v/{i}_{owner_index}_n.jpg"],
                source="feed",
            )
            upsert_post(conn, record, now=now - (start + posts - i))
            attach_image(conn, post_id, sha256)
            shas.append(sha256)
    return shas


def data_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
