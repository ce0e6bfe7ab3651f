"""Training labels from the store, and the split of owners between training and validation.

A label is the store's rule (ARCHITECTURE.md): photo posts (carousels by their cover) whose
like count, owner's follower count and image are all known; the `labelled_posts` view applies
that rule, so hidden likes, videos, reels and posts without an image never get here. The target
is log(likes / followers); a post with 0 likes counts as half a like, which keeps the log finite
and below every post of the same owner that has likes.

Validation holds out whole owners: the model is judged on accounts it never saw. An owner's side
depends only on the seed and its id, so owners keep their side as new ones arrive, and a model
is never compared on posts it was trained on.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instaflyd.store import ImageFiles
from instaflyd.store.images import check_labelled_image_files
from instaflyd.store.labels import label_target, labelled_rows

log = logging.getLogger("instafly.model.labels")


class NotEnoughData(Exception):
    """Too few labelled posts or owners to train and validate; the message says what is missing."""


@dataclass(frozen=True)
class LabelledPost:
    post_id: str
    owner_id: str
    like_count: int
    follower_count: int
    image_sha256: str
    image_path: Path
    seen: float = 0.0  # when it was taken (unix seconds), or first captured if not known

    @property
    def target(self) -> float:
        """log(like rate), the regression target."""
        return label_target(self.like_count, self.follower_count)


@dataclass(frozen=True)
class Split:
    """Training and validation posts; arrays over `posts` have the training rows first."""

    train: list[LabelledPost]
    validation: list[LabelledPost]

    @property
    def posts(self) -> list[LabelledPost]:
        return self.train + self.validation

    @property
    def samples(self) -> int:
        return len(self.train) + len(self.validation)

    @property
    def train_rows(self) -> np.ndarray:
        return np.arange(len(self.train))

    @property
    def validation_rows(self) -> np.ndarray:
        return np.arange(len(self.train), self.samples)

    def without(self, rows: Collection[int]) -> Split:
        """The split without the posts at these rows of `posts`."""
        left_out = set(rows)
        train = [post for i, post in enumerate(self.train) if i not in left_out]
        validation = [
            post
            for i, post in enumerate(self.validation, start=len(self.train))
            if i not in left_out
        ]
        return Split(train, validation)


def labelled_posts(conn: sqlite3.Connection, images: ImageFiles) -> list[LabelledPost]:
    """Every labelled post whose image file is on disk as it was stored, in a stable order.

    A file that is gone, or no longer the size it was stored with (truncated or overwritten),
    leaves its post out, said in the log; the daemon's image check shows the count on the
    page (`store.images.check_labelled_image_files`)."""
    check = check_labelled_image_files(conn, images)
    posts, missing, changed = [], 0, 0
    for row in labelled_rows(conn):
        path = images.path_for(row.image_sha256, row.image_ext)
        if row.image_sha256 in check.missing or not path.is_file():
            missing += 1
            continue
        if row.image_sha256 in check.changed:
            changed += 1
            continue
        posts.append(
            LabelledPost(
                post_id=row.id,
                owner_id=row.owner_id,
                like_count=row.like_count,
                follower_count=row.follower_count,
                image_sha256=row.image_sha256,
                image_path=path,
                seen=row.seen,
            )
        )
    if missing:
        log.warning("%d labelled posts skipped: their image file is missing", missing)
    if changed:
        log.warning(
            "%d labelled posts skipped: their image file was changed on disk (truncated or"
            " overwritten) since it was stored",
            changed,
        )
    return posts


def owner_draw(owner_id: str, seed: int) -> float:
    """A number in [0, 1) fixed by the owner and the seed."""
    digest = hashlib.sha256(f"{seed}:{owner_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_owner(posts: list[LabelledPost], fraction: float, seed: int) -> Split:
    """Owners whose draw is below `fraction` validate; the others train. Never one in both.

    With few owners the draw may leave a side empty; then the owner with the lowest draw
    validates, or the one with the highest trains.
    """
    owners = sorted({post.owner_id for post in posts}, key=lambda owner: owner_draw(owner, seed))
    if len(owners) < 2:
        raise NotEnoughData(
            f"training needs labelled posts from at least 2 accounts (one to train on, one to "
            f"validate on); there are {len(owners)}"
        )
    held_out = [owner for owner in owners if owner_draw(owner, seed) < fraction]
    held_out = held_out[: len(owners) - 1] or owners[:1]
    validation = set(held_out)
    return Split(
        train=[post for post in posts if post.owner_id not in validation],
        validation=[post for post in posts if post.owner_id in validation],
    )


def targets(posts: list[LabelledPost]) -> np.ndarray:
    return np.array([post.target for post in posts], dtype=np.float32)


def owner_ids(posts: list[LabelledPost]) -> np.ndarray:
    return np.array([post.owner_id for post in posts])
