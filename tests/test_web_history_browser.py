"""The history charts as a person sees them: Debian's Chromium at phone and desktop sizes, on
the real app served by waitress, with a day of 5-minute samples and three model versions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from support_browser import ARTIFACTS, PHONE, launch_chromium, log_in, watch_for_problems
from support_daemon import TEST_PASSWORD, give_password, seed_store

from instaflyd.config import Config, build_config
from instaflyd.status.history import HistorySampler
from instaflyd.store import Database
from instaflyd.store.history import MINUTES_5, HistorySample
from instaflyd.store.versions import add_model_version
from instaflyd.web import create_app
from instaflyd.web.server import WebServer

pytestmark = [pytest.mark.slow, pytest.mark.browser]

DESKTOP = {"viewport": {"width": 1280, "height": 900}}
# What each chart draws per point: a polyline vertex, a bar, or a dot per version.
COUNT_POINTS = {
    "posts": "el => el.querySelector('polyline.series-a').points.numberOfItems",
    "capture": "el => el.querySelectorAll('rect.bar').length",
    "enhanced": "el => el.querySelectorAll('rect.bar').length",
    "models": "el => el.querySelectorAll('circle.dot.series-a').length",
}


SAMPLES = 23 * 12 + 1  # 5-minute samples over the last 23 hours: none near the day's far edge,
# so the counts do not change while the tests run (the range's start moves with the clock)


def seed_a_day(config: Config, now: float) -> None:
    sampler = HistorySampler()
    with Database(config.db_path) as db:
        for k in range(SAMPLES):
            at = now - (SAMPLES - 1) * MINUTES_5 + k * MINUTES_5
            sampler.record(db, HistorySample(at, 100 + 2 * k, 50 + k, 400, 10 * k, k // 12,
                                             0.05 * (k // 12)))  # fmt: skip
        with db.transaction() as conn:
            for version, srcc, promoted in ((1, 0.21, True), (2, 0.18, False), (3, 0.34, True)):
                metrics = {"val_srcc": srcc, "val_pairwise_accuracy": 0.5 + srcc / 2}
                add_model_version(conn, version, f"models/v{version:04d}", 40 * version,
                                  40 * version, metrics, promoted=promoted, now=now)  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("history") / "data"
    config = build_config(
        {"model": {"input_size": 64, "weights": "none"}, "web": {"host": "127.0.0.1"}},
        data_dir=data,
    )
    seed_store(config.data_dir, posts=6, owners=2)
    seed_a_day(config, time.time())
    give_password(config.data_dir)
    web = WebServer(create_app(config), "127.0.0.1", 0)
    web.start()
    try:
        yield f"http://{web.address}"
    finally:
        web.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.mark.parametrize(
    ("size", "context_options", "scheme"),
    [("phone", PHONE, "light"), ("desktop", DESKTOP, "dark")],
)
def test_the_charts_draw_every_point_of_the_api_at_phone_and_desktop_sizes(
    served: str, browser: Any, size: str, context_options: dict[str, Any], scheme: str
) -> None:
    context = browser.new_context(**context_options, color_scheme=scheme)
    page = context.new_page()
    problems = watch_for_problems(page)
    log_in(page, served + "/?range=day", TEST_PASSWORD)
    for chart, count in COUNT_POINTS.items():
        api = page.request.get(f"{served}/api/history?series={chart}&range=day").json()
        figure = page.locator(f'figure[data-chart="{chart}"]')
        assert figure.get_attribute("data-points") == str(len(api["points"]))
        assert figure.locator("svg").evaluate(count) == len(api["points"])
        box = figure.locator("svg").bounding_box()
        assert box["width"] > (0.8 * 390 if size == "phone" else 300)  # wide enough to read
        assert box["x"] + box["width"] <= context_options["viewport"]["width"]
    posts = page.request.get(f"{served}/api/history?series=posts&range=day").json()["points"]
    assert len(posts) == SAMPLES  # every 5-minute bucket, one sample each
    assert [p["posts"] for p in posts][-1] == 100 + 2 * (SAMPLES - 1)
    # The numbers are there as text for screen readers, and the page does not scroll sideways.
    rows = page.locator('figure[data-chart="models"] table tbody tr').all_inner_texts()
    assert [r.split("\t")[:3] for r in rows] == [
        ["v1", "yes", "0.210"], ["v2", "no", "0.180"], ["v3", "yes", "0.340"],
    ]  # fmt: skip
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # The colour scheme reaches the SVG: dark mode draws the posts line in the dark palette.
    stroke = page.locator('figure[data-chart="posts"] polyline.series-a').evaluate(
        "el => getComputedStyle(el).stroke"
    )
    assert stroke == ("rgb(255, 111, 168)" if scheme == "dark" else "rgb(193, 53, 132)")
    assert "Nothing captured for" in page.locator("#quiet-capture").inner_text()
    page.locator("#history").screenshot(path=str(ARTIFACTS / f"history-{size}-{scheme}.png"))
    # Another range is a link away, and draws its own points.
    page.click('.ranges a:has-text("Month")')
    page.wait_for_load_state("networkidle")
    month = page.request.get(f"{served}/api/history?series=posts&range=month").json()
    assert len(month["points"]) == 24  # the hours of the samples (23 h span 24 buckets)
    assert page.locator('figure[data-chart="posts"]').get_attribute("data-points") == "24"
    assert page.url.endswith("/?range=month#history")
    assert problems == []
    context.close()
