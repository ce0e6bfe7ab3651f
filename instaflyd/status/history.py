"""The history behind the page's charts: sampling the status document, and reading it back.

`HistorySampler` writes one sample of the status document's totals per 5-minute bucket (the
daemon's `StatusEmitter` offers it every snapshot) and prunes the old buckets in the same
transaction, so the table never outgrows its budget (`instaflyd.store.history`). Time comes from
an injected clock, so a test runs a year of samples in seconds.

`history_series` turns the stored buckets into the points of one chart, for one range: levels
(posts, labelled posts and the next training's threshold), changes per bucket (posts captured,
photos enhanced and their mean gain), and the validation figures of every model version.
`/api/history` returns these points as JSON; the page draws the same ones.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from instaflyd.clock import SteadyClock
from instaflyd.status.document import StatusDocument
from instaflyd.store import Database
from instaflyd.store.history import (
    DAY,
    HOUR,
    MINUTES_5,
    HistoryRow,
    HistorySample,
    bucket_of,
    first_finer_row,
    forget_history_after,
    history_row_before,
    history_rows,
    last_sample_time,
    prune_history,
    record_sample,
)
from instaflyd.store.versions import VersionMetrics, version_metrics

log = logging.getLogger("instafly.status")

SeriesName = Literal["posts", "capture", "enhanced", "models"]
RangeName = Literal["day", "month", "year"]
SERIES: tuple[SeriesName, ...] = get_args(SeriesName)
RANGES: tuple[RangeName, ...] = get_args(RangeName)
SAMPLE_EVERY = MINUTES_5
QUIET_DAYS = 3  # "nothing captured for 3 days": no phone seems to use the proxy


@dataclass(frozen=True)
class RangeSpec:
    seconds: int  # how far back the range reaches
    levels: int  # the tier (bucket length) of level charts
    changes: int  # the tier of per-bucket charts (captured per hour, enhanced per day)


RANGE_SPECS: dict[RangeName, RangeSpec] = {
    "day": RangeSpec(DAY, MINUTES_5, HOUR),
    "month": RangeSpec(30 * DAY, HOUR, DAY),
    "year": RangeSpec(365 * DAY, DAY, DAY),
}


class UnknownSeries(ValueError):
    """A series or range name that is not one of ours."""


@dataclass(frozen=True)
class LevelPoint:
    time: int  # the bucket's start
    posts: int
    labelled: int
    next_training_at: int


@dataclass(frozen=True)
class CapturePoint:
    time: int
    posts: int  # new posts captured in the bucket
    flows: int  # Instagram responses seen in the bucket


@dataclass(frozen=True)
class EnhancedPoint:
    time: int
    photos: int  # photos enhanced in the bucket
    mean_gain: float | None  # their mean predicted score gain (None when there were none)


Point = LevelPoint | CapturePoint | EnhancedPoint | VersionMetrics


@dataclass(frozen=True)
class HistorySeries:
    series: SeriesName
    range: RangeName
    bucket_seconds: int | None  # None for the model versions (one point per version)
    since: float
    until: float
    points: list[Point]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_of(document: StatusDocument, now: float) -> HistorySample:
    """The totals of `document` that the history keeps."""
    totals = document.capture.totals
    goal = document.model.goal
    return HistorySample(
        time=now,
        posts=totals.posts,
        labelled=totals.labelled,
        # The goal counts labelled posts (before the first model) or new ones since the current
        # model: either way, training is due when the labelled total has grown by what is missing.
        next_training_at=totals.labelled + max(0, goal.posts_goal - goal.posts),
        flows=document.capture.counters.get("flows", 0),
        enhanced=document.drop_folder.enhanced.photos,
        score_gain=document.drop_folder.enhanced.score_gain,
    )


class HistorySampler:
    """Records at most one sample per 5-minute bucket, pruning the old buckets as it goes."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        """`clock` is the wall clock; what is old enough to prune is decided on a SteadyClock
        over it and `monotonic` (default: time.monotonic for the real clock, the injected
        clock itself for a test's simulated time, which has no steps unless the test adds one)."""
        self.clock = clock
        if monotonic is None:
            monotonic = time.monotonic if clock is time.time else clock
        self.steady = SteadyClock(clock, monotonic)
        self._last_bucket: int | None = None

    def due(self, db: Database) -> bool:
        now = self.clock()
        if self._last_bucket is None:
            last = last_sample_time(db.conn)
            self._last_bucket = bucket_of(last, SAMPLE_EVERY) if last is not None else -1
        return bucket_of(now, SAMPLE_EVERY) != self._last_bucket

    def offer(self, db: Database, document: StatusDocument) -> bool:
        """Record `document` if this bucket has no sample yet; returns whether it did."""
        if not self.due(db):
            return False
        self.record(db, sample_of(document, self.clock()))
        return True

    def record(self, db: Database, sample: HistorySample) -> None:
        with db.transaction() as conn:
            if forgotten := forget_history_after(conn, sample.time):
                log.warning(
                    "the clock was set back: %d chart points dated after now were removed",
                    forgotten,
                )
            record_sample(conn, sample)
            prune_history(conn, min(sample.time, self.steady.now()))
        self._last_bucket = bucket_of(sample.time, SAMPLE_EVERY)


def parse_request(series: str | None, range_: str | None) -> tuple[SeriesName, RangeName]:
    """Validated names (range defaults to a day); UnknownSeries says what is allowed."""
    if series not in SERIES:
        raise UnknownSeries(
            f"unknown series {_shown(series)}: choose one of {', '.join(SERIES)}"
            if series
            else f"the series parameter is missing: choose one of {', '.join(SERIES)}"
        )
    range_ = range_ or "day"
    if range_ not in RANGES:
        raise UnknownSeries(f"unknown range {_shown(range_)}: choose one of {', '.join(RANGES)}")
    return series, range_


def history_series(
    conn: sqlite3.Connection, series: SeriesName, range_: RangeName, now: float
) -> HistorySeries:
    spec = RANGE_SPECS[range_]
    since = now - spec.seconds
    if series == "models":  # every version, whenever trained: they are few and kept forever
        return HistorySeries(series, range_, None, since, now, list(version_metrics(conn)))
    tier = spec.levels if series == "posts" else spec.changes
    # The buckets that lie within the range: its first one starts at or after `since`.
    rows = history_rows(conn, tier, since + tier - 1)
    points: list[Point]
    if series == "posts":
        points = [
            LevelPoint(r.bucket, r.sample.posts, r.sample.labelled, r.sample.next_training_at)
            for r in rows
        ]
    else:
        before = history_row_before(conn, tier, rows[0].bucket) if rows else None
        if rows and before is None:  # the first bucket ever: from its first finer sample on
            before = first_finer_row(conn, tier, rows[0].bucket)
        pairs = list(zip([before, *rows[:-1]], rows, strict=True)) if rows else []
        points = [
            _capture_point(prev, row) if series == "capture" else _enhanced_point(prev, row)
            for prev, row in pairs
        ]
    return HistorySeries(series, range_, tier, since, now, points)


def quiet_capture(last_capture: float | None, now: float) -> str | None:
    """A hint when nothing was captured for QUIET_DAYS days (or ever): no phone uses the proxy."""
    if last_capture is None:
        return "Nothing captured yet: no phone has used the proxy so far."
    days = int((now - last_capture) // DAY)
    if days < QUIET_DAYS:
        return None
    return f"Nothing captured for {days} days: no phone seems to be using the proxy."


def _shown(value: str) -> str:
    """A client's value, quoted and cut short, for an error message."""
    return repr(value if len(value) <= 40 else value[:40] + "…")


def _capture_point(prev: HistoryRow | None, row: HistoryRow) -> CapturePoint:
    start = prev.sample if prev is not None else row.sample  # the first bucket ever: no change
    return CapturePoint(
        row.bucket,
        posts=max(0, row.sample.posts - start.posts),
        flows=max(0, row.sample.flows - start.flows),
    )


def _enhanced_point(prev: HistoryRow | None, row: HistoryRow) -> EnhancedPoint:
    start = prev.sample if prev is not None else row.sample
    photos = row.sample.enhanced - start.enhanced
    if photos <= 0:  # none, or jobs that went away: nothing to average
        return EnhancedPoint(row.bucket, 0, None)
    gain = (row.sample.score_gain - start.score_gain) / photos
    return EnhancedPoint(row.bucket, photos, round(gain, 6))
