"""Which posts a training run reads: what is new plus a bounded replay sample, or everything.

A retrain's cost should follow what is new, not the size of the store. The rule:

- **Incremental run** (the usual one): the training posts that are new to the current model,
  plus `train.replay_posts` older training posts drawn at random (uniformly, seeded by the new
  version's number), so that the model does not forget what it learnt. A post is new to the
  current model when its features are not cached yet, or were computed after that model was
  trained (by a run whose model was not promoted).
- **Full pass**: every training post the cache budget keeps. It is the first model's run; a run
  that cannot start from the current model (another frozen part or input size); every
  `train.full_pass_every`-th run (9 incremental runs, then a full one, with the default 10);
  `instaflyd train --full`; and any run where new + replay would be all posts anyway.

Validation is the same in both: the held-out owners' posts, at most `train.validation_max_posts`
of them, picked by a hash of the post id and `train.seed`, so the sample is stable as the store
grows and both kinds of run are judged on the same posts. Promote-if-not-worse compares the new
and current models on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from instaflyd.config import TrainConfig
from instaflyd.model.features import CachedFile
from instaflyd.model.labels import LabelledPost, Split, owner_draw

Pass = Literal["full", "incremental"]


@dataclass(frozen=True)
class RunPlan:
    kind: Pass
    split: Split  # the posts this run reads: its training posts and the validation sample
    new: int  # training posts new to the current model
    replayed: int  # older training posts in an incremental run (0 in a full pass)
    reason: str  # why this kind, for the log

    def describe(self) -> str:
        if self.kind == "full":
            return f"full pass over {len(self.split.train)} training posts ({self.reason})"
        return (
            f"incremental: {self.new} new + {self.replayed} replayed training posts ({self.reason})"
        )


def validation_sample(posts: list[LabelledPost], settings: TrainConfig) -> list[LabelledPost]:
    """At most `validation_max_posts` of the held-out posts, fixed by post id and seed."""
    if len(posts) <= settings.validation_max_posts:
        return list(posts)
    ranked = sorted(posts, key=lambda post: owner_draw(f"post:{post.post_id}", settings.seed))
    chosen = {post.post_id for post in ranked[: settings.validation_max_posts]}
    return [post for post in posts if post.post_id in chosen]


def plan_run(
    split: Split,
    settings: TrainConfig,
    *,
    cached: dict[str, CachedFile],
    current_trained_at: float | None,
    runs_since_full: int | None,
    version: int,
    full: bool = False,
) -> RunPlan:
    """The posts of this run. `cached` is the feature cache's inventory; `current_trained_at`
    when the model this run starts from was trained (None: it starts afresh); `runs_since_full`
    how many versions were trained since the last full pass."""
    validation = validation_sample(split.validation, settings)
    is_new = [_is_new(post, cached, current_trained_at) for post in split.train]
    new = [post for post, fresh in zip(split.train, is_new, strict=True) if fresh]
    old = [post for post, fresh in zip(split.train, is_new, strict=True) if not fresh]

    def whole(reason: str) -> RunPlan:
        return RunPlan("full", Split(list(split.train), validation), len(new), 0, reason)

    if full:
        return whole("asked for")
    if current_trained_at is None:
        return whole("no model to start from")
    if runs_since_full is None or runs_since_full + 1 >= settings.full_pass_every:
        return whole(f"every {settings.full_pass_every} runs")
    if len(old) <= settings.replay_posts:
        return whole("few enough posts")
    rng = np.random.default_rng([settings.seed, version])
    picked = set(rng.choice(len(old), size=settings.replay_posts, replace=False).tolist())
    replay = {old[i].post_id for i in picked}
    train = [
        post
        for post, fresh in zip(split.train, is_new, strict=True)
        if fresh or post.post_id in replay
    ]
    reason = f"{runs_since_full + 1} of {settings.full_pass_every} runs since the last full pass"
    return RunPlan("incremental", Split(train, validation), len(new), len(replay), reason)


def _is_new(post: LabelledPost, cached: dict[str, CachedFile], trained_at: float | None) -> bool:
    file = cached.get(post.image_sha256)
    return file is None or trained_at is None or file.mtime >= trained_at
