"""Is training due, and if not, why not: the question the daemon's scheduler asks.

The store's counts and arithmetic, no TensorFlow: the supervisor and the page ask it often.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

from instaflyd.config import Config
from instaflyd.store.stats import labelled_count, labelled_owner_count
from instaflyd.store.versions import current_model_version, in_progress, latest_training_run
from instaflyd.weights.status import weights_status


@dataclass(frozen=True)
class TrainingStatus:
    due: bool
    reason: str  # one sentence for people: why it is due, or what it waits for
    labelled: int  # labelled posts in the store
    owners: int  # distinct owners among them
    new_since_current: int  # labelled posts added since the current model was trained
    needed: int  # more labelled posts needed before training is due (0 when due)
    current_version: int | None
    running: bool
    weights_ok: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def training_status(
    config: Config, conn: sqlite3.Connection, *, allow_random_weights: bool = False
) -> TrainingStatus:
    """Whether training is due now; with `allow_random_weights`, missing weights do not block."""
    labelled = labelled_count(conn)
    owners = labelled_owner_count(conn)
    current = current_model_version(conn)
    run = latest_training_run(conn)
    running = in_progress(run)
    weights = weights_status(config)
    if current is None:
        new = labelled
        needed = max(0, config.train.min_labelled_posts - labelled)
    else:
        new = max(0, labelled - current.labelled_total)
        needed = max(0, config.train.min_new_posts - new)

    def status(due: bool, reason: str) -> TrainingStatus:
        return TrainingStatus(
            due=due, reason=reason, labelled=labelled, owners=owners, new_since_current=new,
            needed=needed, current_version=current.version if current else None,
            running=running, weights_ok=weights.ok,
        )  # fmt: skip

    if running and run is not None:
        return status(False, f"training is running (pid {run.pid})")
    if not weights.ok and not allow_random_weights:
        return status(False, weights.message)
    if needed:
        what = "labelled posts" if current is None else "new labelled posts"
        return status(False, f"waiting for {needed} more {what} ({new} so far)")
    if owners < config.train.min_owners:
        return status(
            False,
            f"waiting for posts from {config.train.min_owners - owners} more accounts "
            f"({owners} so far; validation needs owners never trained on)",
        )
    return status(True, f"training is due: {new} new labelled posts")
