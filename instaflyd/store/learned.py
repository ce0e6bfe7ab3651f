"""What a model version learned, in pictures: stored by the trainer, read by the page.

When a training run finishes, the trainer (which has the model loaded) scores the captured
posts and keeps the few it scores highest and lowest, and averages the score gains of the
household's enhanced photos per edit. Both are stored with the version here, so the page shows
them without loading TensorFlow.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from instaflyd.store.rows import record

LearnedKind = Literal["highest", "lowest"]


@dataclass(frozen=True)
class ScoredPost:
    """A post as the trainer scored it."""

    post_id: str
    score: float  # the model's score: log(likes / followers)
    like_rate: float  # the post's real likes per follower


@dataclass(frozen=True)
class EditGain:
    """An edit in one direction, and how much it raised the photos that got it, on average."""

    edit: str
    direction: int  # +1 or -1
    photos: int
    mean_gain: float  # mean score gain of those photos


@dataclass(frozen=True)
class LearnedPost:
    """A post the version scores highest or lowest, with what the page shows of it."""

    kind: LearnedKind
    post_id: str
    score: float
    like_rate: float
    username: str | None
    image_sha256: str | None  # None when the image was pruned since


@dataclass(frozen=True)
class Lessons:
    version: int
    highest: list[LearnedPost]
    lowest: list[LearnedPost]
    edits: list[EditGain]  # the biggest mean gain first


def record_lessons(
    conn: sqlite3.Connection,
    version: int,
    highest: Sequence[ScoredPost],
    lowest: Sequence[ScoredPost],
    edits: Sequence[EditGain],
) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO learned_posts (version, kind, position, post_id, score, like_rate)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (version, kind, position, post.post_id, post.score, post.like_rate)
            for kind, posts in (("highest", highest), ("lowest", lowest))
            for position, post in enumerate(posts)
        ],
    )
    conn.executemany(
        "INSERT OR REPLACE INTO learned_edits (version, edit, direction, photos, mean_gain)"
        " VALUES (?, ?, ?, ?, ?)",
        [(version, e.edit, e.direction, e.photos, e.mean_gain) for e in edits],
    )


def lessons(conn: sqlite3.Connection, version: int) -> Lessons | None:
    """What `version` learned; None when it was trained before lessons were kept."""
    rows = conn.execute(
        "SELECT l.kind, l.post_id, l.score, l.like_rate, a.username, p.image_sha256"
        " FROM learned_posts AS l LEFT JOIN posts AS p ON p.id = l.post_id"
        " LEFT JOIN accounts AS a ON a.id = p.owner_id"
        " WHERE l.version = ? ORDER BY l.kind, l.position",
        (version,),
    ).fetchall()
    edits = [
        record(EditGain, row)
        for row in conn.execute(
            "SELECT edit, direction, photos, mean_gain FROM learned_edits WHERE version = ?"
            " ORDER BY mean_gain DESC, edit",
            (version,),
        )
    ]
    if not rows and not edits:
        return None
    posts = [record(LearnedPost, row) for row in rows]
    return Lessons(
        version,
        [p for p in posts if p.kind == "highest"],
        [p for p in posts if p.kind == "lowest"],
        edits,
    )


@dataclass(frozen=True)
class FinishedEdit:
    """A finished job's score gain and where its sidecar (with the edits) is."""

    sidecar_path: str
    gain: float


def finished_job_gains(conn: sqlite3.Connection, limit: int) -> list[FinishedEdit]:
    """The newest finished jobs with a sidecar and both scores, newest first."""
    rows = conn.execute(
        "SELECT sidecar_path, score_after - score_before AS gain FROM jobs"
        " WHERE state = 'done' AND sidecar_path IS NOT NULL"
        "   AND score_before IS NOT NULL AND score_after IS NOT NULL"
        " ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [record(FinishedEdit, row) for row in rows]
