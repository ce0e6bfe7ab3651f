"""The label rule, written once: which posts are labelled, and the target a label trains.

A post is labelled when it is a photo (a carousel counts by its cover), its like count is known
(hidden likes are NULL, never 0), its image is stored and its owner's follower count is known.
The `labelled_posts` view (migration v2) applies the rule in SQL; `LIKES_AND_IMAGE_KNOWN` is
the same condition for queries on `posts` (all but the follower count), and a test keeps the two
in agreement. The target is log(likes / followers), with 0 likes scored as half a like.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass

from instaflyd.store.rows import record

LABELLED_MEDIA = ("photo", "carousel")
ZERO_LIKES = 0.5  # the like count a post with no likes is scored as: finite, below one like

# On `posts AS p`: everything of the rule but the owner's follower count.
LIKES_AND_IMAGE_KNOWN = (
    "p.media_type IN ('photo', 'carousel') AND p.like_count IS NOT NULL AND p.like_count >= 0"
    " AND p.image_sha256 IS NOT NULL"
)


def label_target(like_count: int, follower_count: int) -> float:
    """log(like rate), the regression target; a post with no likes counts as half a like."""
    return math.log(max(like_count, ZERO_LIKES) / follower_count)


@dataclass(frozen=True)
class LabelledRow:
    """One row of the `labelled_posts` view: a post the model may train on."""

    id: str
    owner_id: str
    like_count: int
    follower_count: int
    image_sha256: str
    image_ext: str
    seen: float  # when it was posted, else when it was first captured


def labelled_rows(conn: sqlite3.Connection) -> list[LabelledRow]:
    """Every labelled post, in a stable order (by post id)."""
    rows = conn.execute(
        "SELECT id, owner_id, like_count, follower_count, image_sha256, image_ext,"
        " COALESCE(taken_at, first_seen) AS seen FROM labelled_posts ORDER BY id"
    )
    return [record(LabelledRow, row, seen=float(row["seen"])) for row in rows]
