"""Clock steps (an injected offset on the wall clock) must not delete history or hide new data.

A step forward must not prune the event log or the charts' history as "older than N days"; a
step back must not leave future-dated history standing as the newest totals.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import sql_all, sql_scalar

from instaflyd.clock import SteadyClock
from instaflyd.config import build_config
from instaflyd.daemon.housekeeping import DAY, Housekeeping
from instaflyd.status.history import HistorySampler, history_series
from instaflyd.store import Database
from instaflyd.store.events import prune_events
from instaflyd.store.history import HOUR, MINUTES_5, HistorySample, history_size

START = 1_800_000_000.0


class SteppedClock:
    """A wall clock that runs with a monotonic one until the test steps it."""

    def __init__(self) -> None:
        self.monotonic = 0.0
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds

    def wall(self) -> float:
        return START + self.monotonic + self.offset

    def mono(self) -> float:
        return self.monotonic


def test_the_steady_clock_ignores_a_step_forward_and_follows_a_step_back() -> None:
    clock = SteppedClock()
    steady = SteadyClock(clock.wall, clock.mono)
    clock.advance(60)
    assert steady.now() == START + 60
    clock.offset = 40 * DAY  # NTP, a person or a bad GPS steps the clock ahead
    clock.advance(10)
    assert steady.now() == START + 70
    assert steady.step() == 40 * DAY
    clock.offset = -DAY  # and then a day behind the truth
    assert steady.now() == START + 70 - DAY
    clock.advance(5)
    assert steady.now() == START + 75 - DAY


def add_events(db: Database, count: int, ts: float) -> None:
    with db.transaction() as conn:
        conn.executemany(
            "INSERT INTO events (ts, component, level, kind, message)"
            " VALUES (?, 'proxy', 'info', 'test', 'x')",
            [(ts,)] * count,
        )


def events(db: Database) -> int:
    return int(sql_scalar(db, "SELECT COUNT(*) FROM events"))


def test_a_step_forward_does_not_prune_the_event_log(tmp_path: Path) -> None:
    config = build_config({"data_dir": str(tmp_path / "data")})
    clock = SteppedClock()
    with Database(config.db_path) as db:
        add_events(db, 7, START - 40 * DAY)  # older than the 30 days kept
        add_events(db, 1500, START - 2 * DAY)  # two days of a busy box's log
        housekeeping = Housekeeping(config, db, SteadyClock(clock.wall, clock.mono))
        assert housekeeping.tick() == 7
        clock.offset = 60 * DAY  # the clock jumps two months ahead
        clock.advance(2 * 3600)  # the next prune is due
        assert housekeeping.tick() == 0
        assert events(db) == 1500


def test_the_newest_events_are_never_pruned_by_age(tmp_path: Path) -> None:
    with Database(tmp_path / "instafly.db") as db:
        add_events(db, 1200, START - 100 * DAY)
        assert prune_events(db, START) == 200  # the newest 1,000 stay, however old they look
        assert events(db) == 1000


def sample(now: float, posts: int) -> HistorySample:
    return HistorySample(now, posts, posts // 2, 50, posts * 3, 0, 0.0)


@pytest.mark.parametrize("step", [-DAY, -3 * HOUR])
def test_a_step_back_leaves_no_future_dated_history_hiding_new_samples(
    tmp_path: Path, step: float
) -> None:
    clock = SteppedClock()
    sampler = HistorySampler(clock.wall, clock.mono)
    with Database(tmp_path / "instafly.db") as db:
        for n in range(0, 2 * 24 * 12):  # two days, every 5 minutes, posts growing
            sampler.record(db, sample(clock.wall(), 100 + n))
            clock.advance(MINUTES_5)
        clock.offset = step  # the clock is set back
        sampler.record(db, sample(clock.wall(), 9_999))
        now = clock.wall()
        day = history_series(db.conn, "posts", "day", now)
        assert day.points[-1].posts == 9_999  # type: ignore[union-attr]
        assert all(p.time <= now for p in day.points)
        assert not [r for r in sql_all(db, "SELECT bucket FROM history") if r[0] > now]


def test_a_step_forward_does_not_prune_the_history(tmp_path: Path) -> None:
    clock = SteppedClock()
    sampler = HistorySampler(clock.wall, clock.mono)
    with Database(tmp_path / "instafly.db") as db:
        for n in range(0, 24 * 12):
            sampler.record(db, sample(clock.wall(), 100 + n))
            clock.advance(MINUTES_5)
        kept = history_size(db.conn)
        clock.offset = 400 * DAY  # beyond the longest tier's span (a year)
        sampler.record(db, sample(clock.wall(), 500))
        # Nothing before the step was pruned; the sample after it was added to each tier.
        assert history_size(db.conn) == kept + 3
        assert sql_scalar(db, "SELECT MIN(time) FROM history") == START


def test_real_history_is_still_bounded_without_steps(tmp_path: Path) -> None:
    clock = SteppedClock()
    sampler = HistorySampler(clock.wall, clock.mono)
    with Database(tmp_path / "instafly.db") as db:
        for n in range(0, 4 * 24):  # four days, hourly
            sampler.record(db, sample(clock.wall(), n))
            clock.advance(HOUR)
        five_minute_rows = sql_scalar(
            db, "SELECT COUNT(*) FROM history WHERE tier = ?", (MINUTES_5,)
        )
    assert five_minute_rows == 49  # two days' span of hourly samples, the edge included
