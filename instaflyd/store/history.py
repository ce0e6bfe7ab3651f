"""The status history: samples of the store's totals, kept in three tiers of buckets.

Each sample is written into every tier at once, replacing the bucket's earlier sample, so each
row holds the last sample of its bucket and no separate downsampling pass is needed: 5-minute
buckets for two days, hourly ones for 30 days, daily ones for a year. `prune_history` deletes
what is older than a tier's span, which bounds the table to ~1,700 rows (a few hundred kB).
The counts are cumulative; what happened within a bucket is the difference to the bucket
before it (`instaflyd.status.history`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from instaflyd.store.rows import record

MINUTES_5 = 300
HOUR = 3600
DAY = 86400


@dataclass(frozen=True)
class Tier:
    seconds: int  # one bucket
    span: float  # how long its buckets are kept


TIERS = (Tier(MINUTES_5, 2 * DAY), Tier(HOUR, 30 * DAY), Tier(DAY, 365 * DAY))
MAX_ROWS = sum(int(tier.span // tier.seconds) + 1 for tier in TIERS)


@dataclass(frozen=True)
class HistorySample:
    """The totals at one moment, taken from the status document."""

    time: float
    posts: int
    labelled: int
    next_training_at: int  # the labelled-post count at which the next training is due
    flows: int
    enhanced: int  # photos enhanced so far
    score_gain: float  # the sum of their predicted score gains


@dataclass(frozen=True)
class HistoryRow:
    """A stored sample: the last one taken in its bucket."""

    tier: int
    bucket: int
    sample: HistorySample


def record_sample(conn: sqlite3.Connection, sample: HistorySample) -> None:
    """Put `sample` in the bucket of every tier that holds its time (the last sample wins)."""
    values = (
        sample.time, sample.posts, sample.labelled, sample.next_training_at, sample.flows,
        sample.enhanced, sample.score_gain,
    )  # fmt: skip
    conn.executemany(
        "INSERT OR REPLACE INTO history (tier, bucket, time, posts, labelled, next_training_at,"
        "   flows, enhanced, score_gain) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(tier.seconds, bucket_of(sample.time, tier.seconds), *values) for tier in TIERS],
    )


def forget_history_after(conn: sqlite3.Connection, now: float) -> int:
    """Delete the buckets after the one holding `now`, in every tier; returns how many went.

    A live sample taken at `now` is the newest truth: buckets dated later were written while
    the clock ran ahead (it has been stepped back since), and their stale totals would
    otherwise stand as the newest."""
    return sum(
        conn.execute(
            "DELETE FROM history WHERE tier = ? AND bucket > ?",
            (tier.seconds, bucket_of(now, tier.seconds)),
        ).rowcount
        for tier in TIERS
    )


def prune_history(conn: sqlite3.Connection, now: float) -> int:
    """Delete the buckets older than their tier's span; returns how many went."""
    deleted = 0
    for tier in TIERS:
        deleted += conn.execute(
            "DELETE FROM history WHERE tier = ? AND bucket < ?",
            (tier.seconds, bucket_of(now - tier.span, tier.seconds)),
        ).rowcount
    return deleted


def history_rows(conn: sqlite3.Connection, tier: int, since: float) -> list[HistoryRow]:
    """The buckets of `tier` from the one holding `since` on, oldest first (by the key)."""
    rows = conn.execute(
        "SELECT * FROM history WHERE tier = ? AND bucket >= ? ORDER BY bucket",
        (tier, bucket_of(since, tier)),
    ).fetchall()
    return [_row(row) for row in rows]


def history_row_before(conn: sqlite3.Connection, tier: int, bucket: int) -> HistoryRow | None:
    """The last bucket of `tier` before `bucket`: where the first bucket's changes start."""
    row = conn.execute(
        "SELECT * FROM history WHERE tier = ? AND bucket < ? ORDER BY bucket DESC LIMIT 1",
        (tier, bucket),
    ).fetchone()
    return _row(row) if row is not None else None


def first_finer_row(conn: sqlite3.Connection, tier: int, bucket: int) -> HistoryRow | None:
    """The earliest sample of a finer tier inside `tier`'s `bucket`: where the changes of a
    tier's first bucket start (its own row holds the bucket's last sample, not its first)."""
    row = conn.execute(
        "SELECT * FROM history WHERE tier < ? AND bucket >= ? AND bucket < ? ORDER BY time LIMIT 1",
        (tier, bucket, bucket + tier),
    ).fetchone()
    return _row(row) if row is not None else None


def last_sample_time(conn: sqlite3.Connection) -> float | None:
    row = conn.execute(
        "SELECT MAX(time) FROM history WHERE tier = ?", (TIERS[0].seconds,)
    ).fetchone()
    return None if row[0] is None else float(row[0])


def history_size(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM history").fetchone()[0])


def bucket_of(time: float, seconds: int) -> int:
    return int(time // seconds) * seconds


def _row(row: sqlite3.Row) -> HistoryRow:
    return record(HistoryRow, row, sample=record(HistorySample, row))
