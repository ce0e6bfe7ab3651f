"""The charts tell the truth: photos enhanced in a box's first hour count in that hour, an empty
box draws no stray scale, one sample of posts is said, not drawn as a dash."""

from __future__ import annotations

from pathlib import Path

from instaflyd.status.history import EnhancedPoint, HistorySampler, history_series
from instaflyd.store import Database
from instaflyd.store.history import HistorySample
from instaflyd.web.charts import enhanced_chart, posts_chart

HOUR0 = 1_800_000_000 - 1_800_000_000 % 3600  # the start of an hour


def sample(at: float, enhanced: int, gain: float = 0.0) -> HistorySample:
    return HistorySample(at, 10, 5, 50, 0, enhanced, gain)


def test_photos_enhanced_in_the_first_hour_ever_count_in_that_hour(tmp_path: Path) -> None:
    sampler = HistorySampler()
    with Database(tmp_path / "instafly.db") as db:
        sampler.record(db, sample(HOUR0 + 60, 0))  # the daemon starts: nothing enhanced
        sampler.record(db, sample(HOUR0 + 1500, 3, 0.3))  # three photos enhanced
        sampler.record(db, sample(HOUR0 + 3300, 3, 0.3))
        sampler.record(db, sample(HOUR0 + 3600 + 600, 4, 0.5))  # one more the next hour
        series = history_series(db.conn, "enhanced", "day", HOUR0 + 3600 + 700)
    points = [p for p in series.points if isinstance(p, EnhancedPoint)]
    assert [(p.time, p.photos) for p in points] == [(HOUR0, 3), (HOUR0 + 3600, 1)]
    assert points[0].mean_gain == 0.1 and points[1].mean_gain == 0.2
    chart = str(enhanced_chart(series))
    assert chart.count('<rect class="bar"') == 2
    assert "<title>3</title>" in chart and "<title>1</title>" in chart


def test_an_empty_box_draws_no_stray_gain_scale(tmp_path: Path) -> None:
    with Database(tmp_path / "instafly.db") as db:
        HistorySampler().record(db, sample(HOUR0 + 60, 0))
        HistorySampler().record(db, sample(HOUR0 + 3700, 0))
        series = history_series(db.conn, "enhanced", "day", HOUR0 + 3800)
    chart = str(enhanced_chart(series))
    assert "+0.010" not in chart and "%</text>" not in chart  # no scale for gains never made
    assert '<circle class="dot' not in chart


def test_one_sample_of_posts_is_said_not_drawn(tmp_path: Path) -> None:
    with Database(tmp_path / "instafly.db") as db:
        HistorySampler().record(db, sample(HOUR0 + 60, 0))
        series = history_series(db.conn, "posts", "day", HOUR0 + 120)
    chart = str(posts_chart(series))
    assert "<polyline" not in chart
    assert "10 posts, 5 of them can be learned from" in chart
    assert 'data-points="1"' in chart
