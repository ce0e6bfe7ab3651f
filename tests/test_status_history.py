"""The bounded status history: sampled on a schedule, downsampled and pruned into its budget
over a simulated year (the clock is injected), read back as the points of /api/history."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from support_daemon import TEST_PASSWORD, give_password, seed_store

from instaflyd.config import Config, build_config
from instaflyd.status.emitter import StatusEmitter
from instaflyd.status.history import HistorySampler, history_series, quiet_capture
from instaflyd.store import Database
from instaflyd.store.history import (
    DAY,
    HOUR,
    MAX_ROWS,
    MINUTES_5,
    HistorySample,
    bucket_of,
    history_rows,
    history_size,
)
from instaflyd.store.versions import add_model_version
from instaflyd.web import create_app

YEAR_START = 1_767_225_600  # 2026-01-01 00:00 UTC
HISTORY_BUDGET_BYTES = 512 * 1024


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sample(now: float, n: int) -> HistorySample:
    return HistorySample(now, posts=n, labelled=n // 2, next_training_at=n // 2 + 50,
                         flows=3 * n, enhanced=n // 100, score_gain=n / 1000)  # fmt: skip


def run_sampler(db: Database, sampler: HistorySampler, clock: FakeClock, times: range) -> int:
    """Offer a sample at each time, the way the emitter does; returns how many were kept."""
    kept = 0
    for n, now in enumerate(times):
        clock.now = now
        if sampler.due(db):
            sampler.record(db, sample(now, n))
            kept += 1
    return kept


def assert_within_budget(db: Database, now: float) -> None:
    # Every bucket of every tier is there, and nothing older: 5-minute points for 48 h,
    # hourly ones for 30 days, daily ones for a year (each span includes its current bucket).
    assert history_size(db.conn) == MAX_ROWS == 577 + 721 + 366
    for tier, span in ((MINUTES_5, 2 * DAY), (HOUR, 30 * DAY), (DAY, 365 * DAY)):
        rows = history_rows(db.conn, tier, 0)
        assert rows[0].bucket == bucket_of(now - span, tier)
        assert rows[-1].bucket == bucket_of(now, tier)
        assert [b.bucket - a.bucket for a, b in itertools.pairwise(rows)] == [tier] * (
            len(rows) - 1
        )
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert os.path.getsize(db.path) < HISTORY_BUDGET_BYTES


@pytest.mark.slow
def test_a_year_of_samples_stays_within_the_history_budget(tmp_path: Path) -> None:
    # Hourly samples for most of the year (as if the box were busy elsewhere), then one every
    # minute for the last three days: at most one per 5-minute bucket is kept.
    clock = FakeClock(YEAR_START)
    sampler = HistorySampler(clock=clock)
    end = YEAR_START + 365 * DAY
    with Database(tmp_path / "instafly.db") as db:
        run_sampler(db, sampler, clock, range(YEAR_START, end - 3 * DAY, HOUR))
        kept = run_sampler(db, sampler, clock, range(end - 3 * DAY, end + 1, 60))
        assert kept == 3 * 288 + 1  # one per 5-minute bucket, not one per offer
        assert_within_budget(db, end)
        # Each bucket holds its last sample: the newest day ends with the newest sample.
        newest_day = history_rows(db.conn, DAY, end)[-1].sample
        newest_5 = history_rows(db.conn, MINUTES_5, end)[-1].sample
        assert newest_day == newest_5 and newest_day.time == end


@pytest.mark.slow
def test_a_year_of_five_minute_samples_stays_within_the_history_budget(tmp_path: Path) -> None:
    clock = FakeClock(YEAR_START)
    sampler = HistorySampler(clock=clock)
    end = YEAR_START + 365 * DAY
    with Database(tmp_path / "instafly.db") as db:
        kept = run_sampler(db, sampler, clock, range(YEAR_START, end + 1, MINUTES_5))
        assert kept == 365 * 288 + 1
        assert_within_budget(db, end)


def test_the_sampler_takes_up_where_the_stored_history_ends(tmp_path: Path) -> None:
    clock = FakeClock(YEAR_START + 10)
    with Database(tmp_path / "instafly.db") as db:
        HistorySampler(clock=clock).record(db, sample(clock.now, 1))
        restarted = HistorySampler(clock=clock)  # a daemon restart in the same 5 minutes
        assert not restarted.due(db)
        clock.now += MINUTES_5
        assert restarted.due(db)


def test_the_emitter_samples_the_status_document(tmp_path: Path) -> None:
    config = build_config({"model": {"input_size": 64, "weights": "none"}}, data_dir=tmp_path)
    seed_store(config.data_dir, posts=12, owners=4)
    emitter = StatusEmitter(config, None, every=3600, sampler=HistorySampler(FakeClock(YEAR_START)))
    emitter.start()
    try:
        document = emitter.refresh()
    finally:
        emitter.stop()
    assert document is not None
    with Database(config.db_path) as db:
        rows = history_rows(db.conn, MINUTES_5, 0)
    assert [r.bucket for r in rows] == [YEAR_START]
    kept = rows[0].sample
    assert (kept.posts, kept.labelled, kept.enhanced) == (12, 12, 0)
    # Before the first model training is due at min_labelled_posts labelled posts.
    assert kept.next_training_at == config.train.min_labelled_posts


def test_the_quiet_capture_hint() -> None:
    now = YEAR_START
    assert quiet_capture(None, now) == "Nothing captured yet: no phone has used the proxy so far."
    assert quiet_capture(now - 3 * DAY + 60, now) is None
    assert quiet_capture(now - 3 * DAY, now) == (
        "Nothing captured for 3 days: no phone seems to be using the proxy."
    )


# --- /api/history ----------------------------------------------------------------------------


def history_config(data_dir: Path) -> Config:
    return build_config({"model": {"input_size": 64, "weights": "none"}}, data_dir=data_dir)


def seed_history(config: Config, now: float) -> int:
    """Three hourly samples in the last hours and two model versions; returns the first hour."""
    first = bucket_of(now, HOUR) - 3 * HOUR
    sampler = HistorySampler()
    with Database(config.db_path) as db:
        for hour, (posts, labelled, flows, enhanced, gain) in enumerate(
            [(10, 5, 100, 0, 0.0), (25, 10, 160, 2, 0.2), (40, 20, 400, 5, 0.8)]
        ):
            sampler.record(db, HistorySample(first + hour * HOUR + 10, posts, labelled, 50,
                                             flows, enhanced, gain))  # fmt: skip
        with db.transaction() as conn:
            metrics = {"val_srcc": 0.31, "val_pairwise_accuracy": 0.61}
            add_model_version(conn, 1, "models/v0001", 40, 40, metrics, promoted=True, now=now)
            worse = {"val_srcc": 0.22, "val_pairwise_accuracy": 0.58}
            add_model_version(conn, 2, "models/v0002", 60, 60, worse, promoted=False, now=now)
    return first


@pytest.fixture
def history_client(tmp_path: Path) -> tuple[FlaskClient, int]:
    config = history_config(tmp_path / "data")
    first = seed_history(config, time.time())
    return logged_in(config), first


def logged_in(config: Config) -> FlaskClient:
    give_password(config.data_dir)
    client = create_app(config).test_client()
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    login = client.post("/login", data={"password": TEST_PASSWORD, "csrf_token": token})
    assert login.status_code == 302
    return client


def test_api_history_returns_the_points_of_each_series(
    history_client: tuple[FlaskClient, int],
) -> None:
    client, first = history_client
    posts = client.get("/api/history?series=posts&range=day").get_json()
    assert (posts["series"], posts["range"], posts["bucket_seconds"]) == ("posts", "day", 300)
    assert posts["points"] == [
        {"time": first, "posts": 10, "labelled": 5, "next_training_at": 50},
        {"time": first + HOUR, "posts": 25, "labelled": 10, "next_training_at": 50},
        {"time": first + 2 * HOUR, "posts": 40, "labelled": 20, "next_training_at": 50},
    ]
    capture = client.get("/api/history?series=capture&range=day").get_json()
    assert capture["bucket_seconds"] == HOUR
    assert capture["points"] == [
        {"time": first, "posts": 0, "flows": 0},  # the first sample ever: no change known
        {"time": first + HOUR, "posts": 15, "flows": 60},
        {"time": first + 2 * HOUR, "posts": 15, "flows": 240},
    ]
    enhanced = client.get("/api/history?series=enhanced&range=day").get_json()
    assert enhanced["points"] == [
        {"time": first, "photos": 0, "mean_gain": None},
        {"time": first + HOUR, "photos": 2, "mean_gain": pytest.approx(0.1)},
        {"time": first + 2 * HOUR, "photos": 3, "mean_gain": pytest.approx(0.2)},
    ]
    month = client.get("/api/history?series=posts&range=month").get_json()
    assert month["bucket_seconds"] == HOUR and [p["posts"] for p in month["points"]] == [10, 25, 40]
    year = client.get("/api/history?series=capture&range=year").get_json()
    assert year["bucket_seconds"] == DAY
    assert sum(p["posts"] for p in year["points"]) <= 30  # one or two days: no change invented
    models = client.get("/api/history?series=models").get_json()  # the range defaults to a day
    assert [
        (m["version"], m["promoted"], m["val_srcc"], m["val_pairwise_accuracy"])
        for m in models["points"]
    ] == [(1, True, 0.31, 0.61), (2, False, 0.22, 0.58)]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "the series parameter is missing: choose one of posts, capture, enhanced, models"),
        ("series=likes", "unknown series 'likes': choose one of posts, capture, enhanced, models"),
        ("series=posts&range=week", "unknown range 'week': choose one of day, month, year"),
        ("series=" + "x" * 5000, "unknown series '" + "x" * 40 + "…': choose one of"),
    ],
)
def test_api_history_refuses_unknown_series_and_ranges(
    history_client: tuple[FlaskClient, int], query: str, message: str
) -> None:
    client, _ = history_client
    response = client.get(f"/api/history?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(message)


def test_api_history_needs_the_password(tmp_path: Path) -> None:
    config = history_config(tmp_path / "data")
    give_password(config.data_dir)
    response = create_app(config).test_client().get("/api/history?series=posts")
    assert response.status_code in (302, 401)
    assert b"points" not in response.data


def test_the_page_draws_the_same_points_and_the_quiet_hint(
    history_client: tuple[FlaskClient, int],
) -> None:
    client, _ = history_client
    html = client.get("/?range=day").get_data(as_text=True)
    for chart, points in (("posts", 3), ("capture", 3), ("models", 2), ("enhanced", 3)):
        assert f'data-chart="{chart}" data-points="{points}"' in html
    # Three vertices per line of the posts chart, and the numbers as text for screen readers.
    assert html.count('<polyline class="line series-a"') == 2  # posts; models' Spearman
    assert "<td>40</td><td>20</td><td>50</td>" in html
    assert '<circle class="dot series-a not-promoted"' in html
    # The models chart in the household's words, the raw figures beside them.
    assert (
        "2 models learned; the newest, not better, so not used picks the better of two posts 58 times in 100 (rank correlation 0.220, pairwise accuracy 0.580)."
        in html
    )
    assert "orders posts as their likes do" in html and "picks the better of two posts" in html
    assert 'aria-labelledby="chart-posts-title chart-posts-desc"' in html
    assert "Nothing captured yet: no phone has used the proxy so far." in html
    assert client.get("/?range=decade").status_code == 400


def test_an_empty_history_has_no_points_and_the_page_says_so(tmp_path: Path) -> None:
    config = history_config(tmp_path / "data")
    with Database(config.db_path) as db:
        for name in ("posts", "capture", "enhanced", "models"):
            assert history_series(db.conn, name, "year", YEAR_START).points == []
    html = logged_in(config).get("/").get_data(as_text=True)
    assert html.count("No history yet: the first point appears within 5 minutes") == 3
    assert "No model version yet." in html
    assert '<svg class="chart-svg"' not in html
