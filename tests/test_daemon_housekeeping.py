"""The event log is pruned to `log.events_retention_days`, on a schedule (time injected)."""

from __future__ import annotations

from pathlib import Path

import pytest

from instaflyd.config import ConfigError, build_config
from instaflyd.daemon.housekeeping import DAY, PRUNE_EVERY_SECONDS, Housekeeping
from instaflyd.store import Database
from instaflyd.store.events import PRUNE_BATCH, prune_events

NOW = 1_800_000_000.0


def add_events(db: Database, ages_in_days: list[float]) -> None:
    with db.transaction() as conn:
        conn.executemany(
            "INSERT INTO events (ts, component, level, kind, message)"
            " VALUES (?, 'proxy', 'warning', 'parse_error', ?)",
            [(NOW - age * DAY, f"{age} days old") for age in ages_in_days],
        )


def messages(db: Database) -> list[str]:
    return [row[0] for row in db.conn.execute("SELECT message FROM events ORDER BY ts")]


def test_events_older_than_the_retention_are_pruned_hourly(data_dir: Path) -> None:
    config = build_config({"log": {"events_retention_days": 7}}, data_dir=data_dir)
    with Database(config.db_path) as db:
        add_events(db, [40, 8, 6.5, 0.1])
        housekeeping = Housekeeping(config, db, keep_newest=0)
        assert housekeeping.tick(NOW) == 2
        assert messages(db) == ["6.5 days old", "0.1 days old"]

        # half an hour later 6.5-day-old events are 6.52 days old: still kept, and not due yet
        add_events(db, [30])
        assert housekeeping.tick(NOW + 1800) == 0
        assert len(messages(db)) == 3
        # a day and an hour later: due, and the 6.5-day-old one has passed 7 days
        assert housekeeping.tick(NOW + DAY + PRUNE_EVERY_SECONDS) == 2
        assert messages(db) == ["0.1 days old"]
        assert housekeeping.pruned == 4


def test_a_long_backlog_is_deleted_in_batches(data_dir: Path) -> None:
    config = build_config({}, data_dir=data_dir)
    assert config.log.events_retention_days == 30
    with Database(config.db_path) as db:
        add_events(db, [100.0] * (2 * PRUNE_BATCH + 7) + [1.0])
        assert prune_events(db, NOW - 30 * DAY, keep_newest=0) == 2 * PRUNE_BATCH + 7
        assert messages(db) == ["1.0 days old"]


def test_the_retention_must_be_positive(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match="events_retention_days"):
        build_config({"log": {"events_retention_days": 0}}, data_dir=data_dir)
