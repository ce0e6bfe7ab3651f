"""Which posts' features the cache keeps when its disk budget is full.

The policy: owners take turns. First every owner's newest post, then every owner's second
newest, and so on; within one round, newer posts come first ("newest" is when the post was
taken, or when it was first captured if Instagram did not say). Posts are kept in that order
until the next one would not fit in `train.feature_cache_max_gb`; the rest are left out of
training and their cached features, if any, are deleted. When a box has seen more than fits,
the model keeps learning from what is recent and from every account, not only from the one the
household scrolls most.

Sizes are the cached files' own; a post not cached yet is counted at the median size of the
cached ones. The cache itself refuses any write that would take it over the budget, so an
estimate that was too small leaves a post out of one run, never the folder over its budget.
"""

from __future__ import annotations

import logging
import statistics
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from instaflyd.model.features import FeatureCache
from instaflyd.model.labels import LabelledPost

log = logging.getLogger("instafly.model.feature_budget")


@dataclass(frozen=True)
class Admission:
    kept: list[LabelledPost]  # in the order they were given
    left_out: int  # posts that do not fit
    evicted: int  # cached files deleted to make room


def keep_order(posts: list[LabelledPost]) -> list[LabelledPost]:
    """The posts in the order the budget keeps them: owners' newest first, owners in turn."""
    by_owner: dict[str, list[LabelledPost]] = defaultdict(list)
    for post in posts:
        by_owner[post.owner_id].append(post)
    ranked: list[tuple[int, LabelledPost]] = []
    for owned in by_owner.values():
        owned.sort(key=lambda post: (-post.seen, post.post_id))
        ranked.extend((rank, post) for rank, post in enumerate(owned))
    ranked.sort(key=lambda item: (item[0], -item[1].seen, item[1].post_id))
    return [post for _, post in ranked]


def admit(posts: list[LabelledPost], cache: FeatureCache) -> Admission:
    """The posts whose features fit in the cache's budget; deletes the cached features of the
    others. Without a budget every post is kept."""
    if cache.max_bytes is None:
        return Admission(list(posts), 0, 0)
    cached = cache.inventory()
    sizes = [file.bytes for file in cached.values()]
    estimate = statistics.median(sizes) if sizes else _first_guess(cache)
    budget, total = cache.max_bytes, 0.0
    kept_shas: set[str] = set()
    for post in keep_order(posts):
        if post.image_sha256 in kept_shas:
            continue  # the same image as a post already kept: no more room needed
        size = cached[post.image_sha256].bytes if post.image_sha256 in cached else estimate
        if total + size > budget:
            break
        total += size
        kept_shas.add(post.image_sha256)
    stale = [sha for sha in cached if sha not in kept_shas]
    cache.remove(stale)
    kept = [post for post in posts if post.image_sha256 in kept_shas]
    if len(kept) < len(posts):
        log.info(
            "feature cache budget %.2f GB: training on %d of %d posts (owners' newest kept), "
            "%d cached files deleted",
            budget / 1e9, len(kept), len(posts), len(stale),
        )  # fmt: skip
    return Admission(kept, len(posts) - len(kept), len(stale))


def _first_guess(cache: FeatureCache) -> float:
    """Bytes a compact file takes before any exists: half a byte a value."""
    return float(np.prod(cache.backbone.feature_shape)) / 2
