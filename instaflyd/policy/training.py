"""When to train: the one rule the scheduler, `instaflyd train` and the status page all ask.

Training is due when enough labelled posts arrived since the last *run* (promoted or not), from
enough owners, with the weights in place, no run alive, and CPU left in the daily budget:

- **Posts since the last run.** A run whose model was not better than the current one leaves
  its posts counted, so the same posts do not make training due again and again.
- **Back-off.** After `n` runs in a row whose model was not better, the run after waits for
  `min_new_posts * 2**n` new posts, or, with `min_new_posts` of them, for a wait since the last
  run that doubles from an hour up to a day: a box whose model stopped improving trains at most
  about once a day.
- **Daily CPU budget.** Runs start only while the trainers' measured CPU time in the last
  24 hours is under `train.cpu_budget_hours_per_day`; a run that has started is let finish.

Everything is read from the store (so a restart remembers) and decided by a pure function of
those facts and an injected clock, so tests need no waiting. No TensorFlow, and nothing above
the store: the supervisor asks this every check, the page every status build.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass
from typing import Any

from instaflyd.config import Config, TrainConfig
from instaflyd.store.stats import labelled_count, labelled_owner_count
from instaflyd.store.versions import (
    current_model_version,
    in_progress,
    latest_model_version,
    latest_training_run,
    not_promoted_streak,
    training_cpu_since,
)

DAY = 86_400.0
FIRST_BACKOFF_SECONDS = 3_600.0  # the wait after one run that was not better...
MAX_BACKOFF_SECONDS = DAY  # ...doubling per such run, up to a day
MAX_POST_DOUBLINGS = 10  # the posts asked for stop doubling at min_new_posts * 1024


@dataclass(frozen=True)
class PolicyState:
    """The facts the rule decides on, as the store holds them at `now` (Unix time)."""

    now: float
    labelled: int  # labelled posts in the store
    owners: int  # distinct owners among them
    current_version: int | None  # the newest promoted version
    last_version: int | None  # the newest version written, promoted or not
    labelled_at_last_run: int | None  # labelled posts when that version was trained
    last_run_end: float | None  # when it was written
    not_better: int  # versions in a row, newest first, that were not promoted
    running_pid: int | None  # a trainer alive now
    cpu_runs: tuple[tuple[float, float], ...]  # (when, CPU seconds) of runs in the last 24 h


@dataclass(frozen=True)
class TrainingBudget:
    """The daily CPU budget for training, in CPU seconds over the last 24 hours."""

    limit_seconds: float
    used_seconds: float
    runs: int  # runs counted in the window
    free_at: float | None  # when enough of the window has passed for the next run (if used up)

    @property
    def used_up(self) -> bool:
        return self.used_seconds >= self.limit_seconds

    @property
    def share_used(self) -> float:
        return min(1.0, self.used_seconds / self.limit_seconds)


@dataclass(frozen=True)
class TrainingPlan:
    """Whether training is due now and, if not, what it waits for (the status document's
    `model.next_training`)."""

    due: bool
    reason: str  # one sentence for people: why it is due, or what it waits for
    labelled: int  # labelled posts in the store
    owners: int  # distinct owners among them
    new_since_last_run: int  # labelled posts added since the last run (all of them before one)
    posts_goal: int  # new labelled posts that make training due (backed off: more)
    needed: int  # more labelled posts before the posts goal is reached (0 when reached)
    current_version: int | None
    running: bool
    weights_ok: bool
    not_better: int  # the last this many models were not better than the current one
    retry_at: float | None  # backed off: from then on `min_new_posts` new posts are enough
    budget: TrainingBudget

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_policy_state(conn: sqlite3.Connection, now: float | None = None) -> PolicyState:
    """The facts `plan_training` needs, read from the store."""
    now = time.time() if now is None else now
    current = current_model_version(conn)
    last = latest_model_version(conn)
    run = latest_training_run(conn)
    return PolicyState(
        now=now,
        labelled=labelled_count(conn),
        owners=labelled_owner_count(conn),
        current_version=current.version if current else None,
        last_version=last.version if last else None,
        labelled_at_last_run=last.labelled_total if last else None,
        last_run_end=last.created if last else None,
        not_better=not_promoted_streak(conn),
        running_pid=run.pid if run is not None and in_progress(run) else None,
        cpu_runs=tuple(training_cpu_since(conn, now - DAY)),
    )


def training_plan(
    config: Config,
    conn: sqlite3.Connection,
    *,
    weights_ok: bool,
    weights_message: str = "",
    allow_random_weights: bool = False,
    now: float | None = None,
) -> TrainingPlan:
    """Is training due now? (The store's facts through `plan_training`.)"""
    return plan_training(
        config.train,
        read_policy_state(conn, now),
        weights_ok=weights_ok,
        weights_message=weights_message,
        allow_random_weights=allow_random_weights,
    )


def backoff_seconds(not_better: int) -> float:
    """The wait since the last run after `not_better` runs in a row that were not better."""
    if not_better <= 0:
        return 0.0
    return min(FIRST_BACKOFF_SECONDS * 2 ** min(not_better - 1, 32), MAX_BACKOFF_SECONDS)


def posts_goal(train: TrainConfig, not_better: int) -> int:
    """New labelled posts since the last run that make training due by themselves."""
    return train.min_new_posts * 2 ** min(max(not_better, 0), MAX_POST_DOUBLINGS)


def budget(train: TrainConfig, state: PolicyState) -> TrainingBudget:
    """CPU used by training in the last 24 hours against the daily budget."""
    limit = train.cpu_budget_hours_per_day * 3600.0
    window = [(at, cpu) for at, cpu in state.cpu_runs if at > state.now - DAY]
    used = sum(cpu for _, cpu in window)
    free_at = None
    if used >= limit:
        remaining = used
        for at, cpu in window:  # oldest first: the budget frees as runs leave the window
            remaining -= cpu
            if remaining < limit:
                free_at = at + DAY
                break
    return TrainingBudget(round(limit, 1), round(used, 1), len(window), free_at)


def plan_training(
    train: TrainConfig,
    state: PolicyState,
    *,
    weights_ok: bool,
    weights_message: str = "",
    allow_random_weights: bool = False,
) -> TrainingPlan:
    """The rule (see the module docstring), as a pure function of the facts."""
    first = state.last_version is None
    if first:
        new = state.labelled
        goal = train.min_labelled_posts
        not_better = 0
    else:
        new = max(0, state.labelled - (state.labelled_at_last_run or 0))
        not_better = state.not_better
        goal = posts_goal(train, not_better)
    retry_at = None
    if not_better and state.last_run_end is not None:
        retry_at = state.last_run_end + backoff_seconds(not_better)
    waited = retry_at is not None and state.now >= retry_at and new >= train.min_new_posts
    spent = budget(train, state)

    def plan(due: bool, reason: str) -> TrainingPlan:
        return TrainingPlan(
            due=due,
            reason=reason,
            labelled=state.labelled,
            owners=state.owners,
            new_since_last_run=new,
            posts_goal=goal,
            needed=max(0, goal - new),
            current_version=state.current_version,
            running=state.running_pid is not None,
            weights_ok=weights_ok,
            not_better=not_better,
            retry_at=retry_at,
            budget=spent,
        )

    if state.running_pid is not None:
        return plan(False, f"training is running (pid {state.running_pid})")
    if not weights_ok and not allow_random_weights:
        return plan(False, weights_message or "the model's weights are missing")
    if new < goal and not waited:
        return plan(False, _waiting(train, state, first, new, goal, retry_at))
    if state.owners < train.min_owners:
        return plan(
            False,
            f"waiting for posts from {train.min_owners - state.owners} more accounts "
            f"({state.owners} so far; validation needs owners never trained on)",
        )
    if spent.used_up:
        when = _in(spent.free_at - state.now) if spent.free_at is not None else "later"
        return plan(
            False,
            f"the daily training budget is used up ({_hours(spent.used_seconds)} of "
            f"{_hours(spent.limit_seconds)} CPU-hours in the last 24 hours); next try {when}",
        )
    if waited and new < goal:
        return plan(
            True,
            f"training is due: {new} new labelled posts, and "
            f"{_duration(state.now - (state.last_run_end or 0))} since the last run",
        )
    return plan(True, f"training is due: {new} new labelled posts")


def _waiting(
    train: TrainConfig, state: PolicyState, first: bool, new: int, goal: int, retry_at: float | None
) -> str:
    if first:
        return f"waiting for {goal - new} more labelled posts ({new} so far)"
    if not state.not_better:
        return f"waiting for {goal - new} more new labelled posts ({new} so far)"
    models = (
        "the last model was"
        if state.not_better == 1
        else f"the last {state.not_better} models were"
    )
    than = f" than v{state.current_version}" if state.current_version is not None else ""
    line = (
        f"{models} not better{than}; next try when {goal:,} new labelled posts have arrived"
        f" ({new:,} so far)"
    )
    if retry_at is not None and state.now < retry_at:
        line += f" or {_in(retry_at - state.now)}"
        if new < train.min_new_posts:
            line += f" once there are {train.min_new_posts:,}"
    elif new < train.min_new_posts:
        line += f" or when there are {train.min_new_posts:,}"
    return line


def _in(seconds: float) -> str:
    return "in a minute" if seconds < 90 else f"in {_duration(seconds)}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600)} h"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f}".removesuffix(".0")
