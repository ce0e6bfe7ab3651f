"""The household's page in Debian's Chromium at every phone and desktop width, light and dark.

One seeded box serves the whole module: a trained tiny model (with what it learned), enhanced
photos with their sidecars, a failed one, and a day of 5-minute history ending now (times
injected). One browser and one page go through 320, 390, 430, 768 and 1440 CSS px in both colour
schemes and check, at each: no sideways scrolling, no WCAG 2.2 AA violation found by axe-core
(bundled by axe-playwright-python: nothing is fetched), every button and control at least 44 by
44 CSS px, one h1, no server path or API link in the visible text, and chart bars equal to the
counts /api/history gives. A second, empty box shows the first-run card. Screenshots at phone
size go to test-artifacts/ (the README's come from there).
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import jpeg_bytes
from support_browser import ARTIFACTS, launch_chromium, log_in, watch_for_problems
from support_daemon import TEST_PASSWORD, give_password, seed_store
from support_model import TINY_MODEL

from instaflyd.config import Config, build_config
from instaflyd.jobs.outputs import Enhancement, Sidecar, write_sidecar
from instaflyd.status.history import HistorySampler
from instaflyd.store import Database
from instaflyd.store.history import MINUTES_5, HistorySample
from instaflyd.store.jobs import enqueue_job, finish_job
from instaflyd.web import create_app
from instaflyd.web.server import WebServer

pytestmark = [pytest.mark.slow, pytest.mark.browser]

WIDTHS = (320, 390, 430, 768, 1440)
SCHEMES = ("light", "dark")
SAMPLES = 23 * 12 + 1  # 5-minute samples over the last 23 hours (clear of the day's moving edge)
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
TARGET = 44  # CSS px, both ways
CONTROLS = (
    "button, .button, input:not([type=hidden]):not(.visually-hidden), select, textarea,"
    " summary, .ranges a, [role=button]"
)
PHOTOS = [  # name, score before, score after, edits the sidecar records
    ("IMG_0001.jpg", -2.937, -2.83, {"exposure": 0.1, "temperature": 0.05, "saturation": 0.2}),
    ("beach.jpg", -3.2, -3.0, {"exposure": 0.2, "vignette": -0.06}),
    ("IMG_0003.jpg", -2.5, -2.45, {"contrast": -0.1}),
]


def box_config(data: Path) -> Config:
    values: dict[str, Any] = {section: dict(keys) for section, keys in TINY_MODEL.items()}
    values["web"] = {"host": "127.0.0.1"}
    values["watch"] = {"drop_dir": "drop", "output_dir": "enhanced"}
    return build_config(values, data_dir=data)


def seed_photos(config: Config) -> None:
    """Enhanced photos with real files and sidecars, one that failed, as the enhancer leaves them."""
    drop, out = config.watch.drop_dir, config.watch.output_dir
    drop.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    with Database(config.db_path) as db, db.transaction() as conn:
        for n, (name, before, after, edits) in enumerate(PHOTOS):
            photo = drop / name
            photo.write_bytes(jpeg_bytes(800, 600, 40 + n))
            result = out / (Path(name).stem + ".instafly.jpg")
            result.write_bytes(jpeg_bytes(800, 600, 50 + n))
            sidecar = result.with_suffix(".json")
            write_sidecar(sidecar, Sidecar("done", name, enhancement=Enhancement(
                result.name, before, after, edits, 2.0, "edits", 1, 8, 800, 600, "test",
            )))  # fmt: skip
            job = enqueue_job(conn, str(photo), f"sha-{n}")
            finish_job(conn, job, "done", output_path=str(result), sidecar_path=str(sidecar),
                       score_before=before, score_after=after, model_version=1)  # fmt: skip
        broken = drop / "notes.jpg"
        broken.write_bytes(b"not a photo")
        job = enqueue_job(conn, str(broken), "sha-broken")
        finish_job(conn, job, "rejected", reason="not an image the box can read")
        # What v1 learned about edits: the trainer finds it from finished photos like these.
        from instaflyd.model.lessons import edit_gains
        from instaflyd.store.learned import record_lessons

        record_lessons(conn, 1, [], [], edit_gains(conn))


def seed_history(config: Config, now: float) -> None:
    """A day of samples: posts growing, photos enhanced a few per hour (time injected)."""
    sampler = HistorySampler(clock=lambda: now)
    with Database(config.db_path) as db:
        for k in range(SAMPLES):
            at = now - (SAMPLES - 1) * MINUTES_5 + k * MINUTES_5
            enhanced = k // 20  # one photo every 100 minutes
            sampler.record(db, HistorySample(at, 60 + k // 3, 50 + k // 4, 400, 10 * k, enhanced,
                                             0.1 * enhanced))  # fmt: skip


@pytest.fixture(scope="module")
def boxes(
    tmp_path_factory: pytest.TempPathFactory, trained_data_dir: Path
) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("page")
    trained = shutil.copytree(trained_data_dir, root / "trained")
    config = box_config(trained)
    with sqlite3.connect(config.db_path) as conn:  # the session store's undecodable image
        conn.execute("DELETE FROM posts WHERE id = '4999999'")  # is for the training tests
    seed_photos(config)
    seed_history(config, time.time())
    give_password(trained)
    fresh = box_config(root / "fresh")
    seed_store(fresh.data_dir, posts=8, owners=2)
    give_password(fresh.data_dir)
    servers = [WebServer(create_app(c), "127.0.0.1", 0) for c in (config, fresh)]
    for server in servers:
        server.start()
    try:
        yield {
            "url": f"http://{servers[0].address}",
            "fresh_url": f"http://{servers[1].address}",
            "config": config,
        }
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def page(boxes: dict[str, Any]) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        context = chromium.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True)
        page = context.new_page()
        page.problems = watch_for_problems(page)
        log_in(page, boxes["url"] + "/", TEST_PASSWORD)
        yield page
        context.close()
        chromium.close()


def show(page: Any, url: str, width: int, scheme: str) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.emulate_media(color_scheme=scheme)
    page.goto(url, wait_until="networkidle")
    page.wait_for_function(
        "() => document.querySelectorAll('#gallery .photo').length > 0"
        " || !document.getElementById('gallery')"
    )
    for image in page.locator("img").all():  # previews load lazily, as they come into view
        image.scroll_into_view_if_needed()
    try:
        page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    except Exception:
        raise AssertionError(
            page.evaluate(
                "[...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
                ".map(i => i.currentSrc || i.src)"
            )
        ) from None
    page.evaluate("window.scrollTo(0, 0)")


def small_controls(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        CONTROLS,
        f"""els => els.filter(e => e.getClientRects().length && getComputedStyle(e).visibility
                                   !== 'hidden')
              .map(e => [e, e.getBoundingClientRect()])
              .filter(([e, r]) => r.width < {TARGET} - 0.5 || r.height < {TARGET} - 0.5)
              .map(([e, r]) => `${{e.outerHTML.slice(0, 80)}}: ${{r.width}}x${{r.height}}`)""",
    )


def axe_violations(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG_AA}})
    return [
        f"{v['id']}: {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
    ]


def unexpected(problems: list[str]) -> list[str]:
    """Problems but the previews the box was too busy to draw at once (503, Retry-After): the
    page asks for those again, and `show` waits until every image has loaded."""
    busy = r"503 \S+/(images|thumbs)/|Failed to load resource: .* 503 \(SERVICE UNAVAILABLE\)"
    return [p for p in problems if not re.match(busy, p)]


def server_paths(config: Config) -> list[str]:
    return [str(config.data_dir), str(config.watch.drop_dir), str(config.watch.output_dir)]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", WIDTHS)
def test_the_page_fits_reads_and_can_be_tapped(
    page: Any, boxes: dict[str, Any], width: int, scheme: str
) -> None:
    show(page, boxes["url"] + "/", width, scheme)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.locator("h1").count() == 1
    assert small_controls(page) == []
    visible = page.locator("body").inner_text()
    for path in server_paths(boxes["config"]):
        assert path not in visible
    assert not re.search(r"(^|\s)/(api|metrics|home|tmp|var|srv|root)\b", visible)
    assert "/api/" not in visible
    # The same photo is shown once, in household terms.
    names = page.locator("#gallery .photo-name").all_inner_texts()
    assert sorted(names) == sorted([name for name, *_ in PHOTOS] + ["notes.jpg"])
    first = page.locator("#gallery .photo", has_text="IMG_0001.jpg")
    assert first.locator(".scores").inner_text() == (
        "Expected likes per 1,000 followers: 53 → 59 (+11%)"
    )
    assert first.locator(".edits").inner_text() == "Warmer, more colourful, a little brighter."
    # The charts' bars are the API's counts, the enhanced-per-hour chart's included.
    for chart in ("capture", "enhanced"):
        api = page.request.get(f"{boxes['url']}/api/history?series={chart}&range=day").json()
        key = "posts" if chart == "capture" else "photos"
        bars = page.locator(f'figure[data-chart="{chart}"] rect.bar title').all_text_contents()
        assert [int(b.replace(",", "")) for b in bars] == [p[key] for p in api["points"]]
        if chart == "enhanced":
            assert sum(p["photos"] for p in api["points"]) == 13  # (SAMPLES - 1) // 20
    if width == 390:
        page.screenshot(path=str(ARTIFACTS / f"page-{width}-{scheme}.png"), full_page=True)
        for card in ("photos", "model", "history"):
            page.locator(f"#{card}").screenshot(path=str(ARTIFACTS / f"page-{card}-{scheme}.png"))
    # Everything, the Details included, passes axe-core's WCAG 2.2 AA rules.
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    assert axe_violations(page) == []
    assert small_controls(page) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert unexpected(page.problems) == []


def test_what_the_box_learned_is_shown_in_pictures(page: Any, boxes: dict[str, Any]) -> None:
    show(page, boxes["url"] + "/", 390, "light")
    status = page.request.get(boxes["url"] + "/api/status").json()
    learned = status["model"]["learned"]
    assert len(learned["highest"]) == len(learned["lowest"]) == 6
    highest = page.locator("#learned-highest li")
    assert highest.count() == 6
    assert highest.locator("img").count() == 6
    rates = [round(p["like_rate"] * 1000) for p in learned["highest"]]
    shown = highest.locator("strong").all_inner_texts()
    assert [round(float(s.replace(",", ""))) for s in shown] == rates
    edits = page.locator("#learned-edits li").all_inner_texts()
    assert edits and "expected likes, over" in edits[0]
    model = page.locator("#model").inner_text()
    assert re.search(r"It predicts which of two posts does better \d+ of 100 times", model)
    assert unexpected(page.problems) == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_first_run_card_says_what_to_do_once(
    page: Any, boxes: dict[str, Any], scheme: str
) -> None:
    context = page.context.browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True,
                                               color_scheme=scheme)  # fmt: skip
    fresh = context.new_page()
    problems = watch_for_problems(fresh)
    log_in(fresh, boxes["fresh_url"] + "/", TEST_PASSWORD)
    card = fresh.locator("#first-run")
    text = card.inner_text()
    assert "8 of 20 labelled posts, from 2 of 3 accounts" in text
    assert text.count("starting knowledge") == 1
    assert fresh.evaluate("document.documentElement.scrollWidth") <= 390
    assert axe_violations(fresh) == []
    assert small_controls(fresh) == []
    card.screenshot(path=str(ARTIFACTS / f"page-first-run-{scheme}.png"))
    assert unexpected(problems) == []
    context.close()
