"""What a freshly trained model learned, found while the trainer still has it loaded.

- The captured posts it scores highest and lowest (`LESSON_POSTS` of each), with their real like
  rates, so the page can show "what the box thinks does well" in pictures.
- Which edits raised the household's photos most on average: for every finished photo, the edits
  its sidecar records (those big enough to see), and the mean score gain of the photos that got
  each edit in each direction.

Stored with the version (`instaflyd.store.learned`); the page reads them without TensorFlow.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from instaflyd.model.labels import LabelledPost
from instaflyd.store.learned import EditGain, ScoredPost, finished_job_gains, record_lessons

log = logging.getLogger("instafly.model.lessons")

LESSON_POSTS = 6  # of each: the highest and the lowest scored
JOBS_READ = 500  # the newest finished photos whose edits are averaged
SEEN_EDIT = 0.01  # an edit smaller than this (in its own units) was not really made
MAX_SIDECAR_BYTES = 64 * 1024


def scored_extremes(
    posts: Sequence[LabelledPost], scores: np.ndarray, count: int = LESSON_POSTS
) -> tuple[list[ScoredPost], list[ScoredPost]]:
    """The `count` posts with the highest scores (highest first) and the lowest (lowest first);
    no post is in both lists."""
    finite = [i for i in range(len(posts)) if math.isfinite(float(scores[i]))]
    order = sorted(finite, key=lambda i: (-float(scores[i]), posts[i].post_id))
    top = order[: min(count, len(order) // 2)]
    bottom = list(reversed(order))[: min(count, len(order) // 2)]

    def scored(i: int) -> ScoredPost:
        post = posts[i]
        return ScoredPost(post.post_id, float(scores[i]), post.like_count / post.follower_count)

    return [scored(i) for i in top], [scored(i) for i in bottom]


def edit_gains(conn: sqlite3.Connection, limit: int = JOBS_READ) -> list[EditGain]:
    """The mean score gain of finished photos per edit and direction, the biggest first."""
    gains: dict[tuple[str, int], list[float]] = defaultdict(list)
    for job in finished_job_gains(conn, limit):
        for name, value in _sidecar_edits(Path(job.sidecar_path)).items():
            if abs(value) >= SEEN_EDIT:
                gains[(name, 1 if value > 0 else -1)].append(job.gain)
    found = [
        EditGain(name, direction, len(values), round(sum(values) / len(values), 6))
        for (name, direction), values in gains.items()
    ]
    return sorted(found, key=lambda e: (-e.mean_gain, e.edit))


def record(
    conn: sqlite3.Connection,
    version: int,
    posts: Sequence[LabelledPost],
    scores: np.ndarray,
) -> None:
    """Find and store what `version` learned (in the caller's transaction)."""
    highest, lowest = scored_extremes(posts, scores)
    record_lessons(conn, version, highest, lowest, edit_gains(conn))


def _sidecar_edits(path: Path) -> dict[str, float]:
    try:
        with path.open("rb") as file:
            params = json.loads(file.read(MAX_SIDECAR_BYTES)).get("params") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(params, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in params.items()
        if isinstance(v, int | float) and math.isfinite(float(v))
    }
