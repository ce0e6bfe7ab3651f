"""The household's page in Debian's Chromium at phone size, against a running `instaflyd run`.

One daemon with a tiny trained model and a real worker serves the tests of this module: the
layout at phone width (long usernames, the set-up QR code and its warning), and photos sent from
the page: three chosen at once, their upload progress, the results with the before/after
comparison, and a download that is the full-resolution output with its EXIF.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import cli_env
from PIL import Image
from support_browser import ARTIFACTS, PHONE, launch_chromium, log_in, watch_for_problems
from support_daemon import TEST_PASSWORD, RunningDaemon, daemon_config, running_daemon
from support_model import OWNERS, TINY_MODEL, tiny_config, train_tiny_model

from instaflyd.store import AccountRecord, Database
from instaflyd.store.posts import upsert_account

pytestmark = [pytest.mark.slow, pytest.mark.browser]

LONG_NAMES = {owner: f"the.longest_username{owner}_ever_x"[:30] for owner, _, _ in OWNERS}
EXIF_DATE = "2024:07:14 18:30:00"
EXIF_MAKE = "Instafly Test Camera"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    tmp = tmp_path_factory.mktemp("household")
    data = tmp / "data"
    result = train_tiny_model(tiny_config(data))
    assert result.promoted
    with Database(data / "instafly.db") as db, db.transaction() as conn:
        for owner, username in LONG_NAMES.items():
            upsert_account(conn, AccountRecord(owner, username))
    config, web_port, proxy_port = daemon_config(
        tmp,
        data,
        model=TINY_MODEL["model"],
        train={**TINY_MODEL["train"], "min_new_posts": 1000},
        enhance={"steps": 2},
    )
    with running_daemon(config, data, web_port, proxy_port, cli_env()) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


def photo_with_exif(path: Path, size: tuple[int, int], seed: int) -> Path:
    """A real photo with the EXIF a phone writes (date taken, camera make)."""
    image = Image.new("RGB", size)
    image.putdata([((x * 3 + seed) % 256, (y * 2) % 256, (x + y + seed * 40) % 256)
                   for y in range(size[1]) for x in range(size[0])])  # fmt: skip
    exif = Image.Exif()
    exif[0x010F] = EXIF_MAKE  # Make
    exif.get_ifd(0x8769)[0x9003] = EXIF_DATE  # DateTimeOriginal
    kind = {".jpg": "JPEG", ".png": "PNG", ".heic": "HEIF"}[path.suffix]
    image.save(path, kind, exif=exif.tobytes(), **({"quality": 90} if kind == "JPEG" else {}))
    return path


def boxes(page: Any, selector: str) -> list[dict[str, float]]:
    return page.eval_on_selector_all(
        selector,
        "els => els.map(e => { const r = e.getBoundingClientRect();"
        " return {left: r.left, right: r.right, top: r.top, bottom: r.bottom,"
        " overflow: e.scrollWidth - e.clientWidth}; })",
    )


def test_at_phone_width_usernames_stay_apart_and_the_qr_code_is_centred(
    daemon: RunningDaemon, browser: Any
) -> None:
    context = browser.new_context(**PHONE)
    page = context.new_page()
    problems = watch_for_problems(page)
    log_in(page, daemon.url + "/", TEST_PASSWORD)
    names = boxes(page, ".thumbs .who")
    cells = boxes(page, ".thumbs li")
    assert len(names) == 6
    assert {page.locator(".thumbs .who").nth(i).get_attribute("title") for i in range(6)} <= {
        "@" + name for name in LONG_NAMES.values()
    }
    for name, cell in zip(names, cells, strict=True):
        # Each name stays inside its own thumbnail's column (cut with an ellipsis), so
        # neighbours never run into each other.
        assert cell["left"] - 0.5 <= name["left"] and name["right"] <= cell["right"] + 0.5
    assert any(name["overflow"] > 0 for name in names)  # long enough to need cutting here
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    qr = boxes(page, ".qr svg")[0]
    card = boxes(page, "#setup")[0]
    assert abs((qr["left"] + qr["right"]) / 2 - (card["left"] + card["right"]) / 2) < 2
    warning = page.locator("#setup .note-warn").all_inner_texts()
    assert any(
        "This page listens only on 127.0.0.1, which phones cannot reach" in w for w in warning
    )
    page.locator("#setup").screenshot(path=str(ARTIFACTS / "household-setup-phone.png"))
    page.locator("#capture").screenshot(path=str(ARTIFACTS / "household-capture-phone.png"))
    assert problems == []
    context.close()


# Records every upload progress event the page receives, to show progress really is reported.
RECORD_PROGRESS = """
window.uploadProgress = [];
const add = XMLHttpRequestUpload.prototype.addEventListener;
XMLHttpRequestUpload.prototype.addEventListener = function (type, listener, ...rest) {
  if (type !== "progress") return add.call(this, type, listener, ...rest);
  return add.call(this, type, (event) => {
    window.uploadProgress.push([event.loaded, event.total]);
    listener(event);
  }, ...rest);
};
"""


def test_three_photos_sent_from_the_phone_come_back_enhanced_with_exif(
    daemon: RunningDaemon, browser: Any, tmp_path: Path
) -> None:
    chosen = [
        photo_with_exif(tmp_path / "IMG_0001.jpg", (640, 480), 1),
        photo_with_exif(tmp_path / "IMG_0002.heic", (400, 300), 2),
        photo_with_exif(tmp_path / "screenshot.png", (300, 400), 3),
    ]
    context = browser.new_context(**PHONE, accept_downloads=True)
    context.add_init_script(RECORD_PROGRESS)
    page = context.new_page()
    problems = watch_for_problems(page)
    log_in(page, daemon.url + "/", TEST_PASSWORD)
    picker = page.locator("#photo-input")
    assert picker.get_attribute("multiple") is not None
    assert "image/*" in picker.get_attribute("accept")
    assert page.locator("label[for=photo-input]").inner_text() == "Enhance photos…"

    picker.set_input_files([str(path) for path in chosen])
    uploads = page.locator("#uploads .upload")
    page.wait_for_function(
        "() => document.querySelectorAll('#uploads .upload[data-state=sent]').length === 3",
        timeout=30000,
    )
    assert uploads.locator(".upload-name").all_inner_texts() == [p.name for p in chosen]
    assert uploads.locator(".upload-state").all_inner_texts() == ["sent"] * 3
    assert [uploads.nth(i).locator("progress").evaluate("p => p.value") for i in range(3)] == [
        1
    ] * 3
    progress = page.evaluate("window.uploadProgress")
    finished = [loaded for loaded, total in progress if loaded == total]
    assert len(finished) >= 3  # each upload reported reaching its whole size
    for path in chosen:  # each request body holds the whole file
        assert any(loaded > path.stat().st_size for loaded in finished), path.name

    # The gallery, newest first, once the worker has enhanced all three.
    page.wait_for_function(
        "() => document.querySelectorAll('#gallery .photo[data-state=done]').length >= 3",
        timeout=180000,
    )
    names = page.locator("#gallery .photo .photo-text > strong").all_inner_texts()
    assert names[:3] == ["screenshot.png", "IMG_0002.heic", "IMG_0001.jpg"]
    first = page.locator("#gallery .photo").nth(2)  # IMG_0001.jpg
    assert first.locator(".scores").inner_text().startswith("Expected likes per 1,000 followers: ")
    assert first.locator(".edits").inner_text().endswith(".")  # the edits in words
    assert "score (log of likes per follower)" in first.locator(".raw").text_content()
    compare = first.locator(".compare")
    compare.scroll_into_view_if_needed()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#gallery .compare img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    assert compare.locator("img").count() == 2
    assert compare.locator(".compare-label").all_inner_texts() == ["Before", "After"]
    split = "c => getComputedStyle(c).getPropertyValue('--split').trim()"
    assert compare.evaluate(split) == "50%"
    slider = first.locator(".compare-slider")
    assert slider.bounding_box()["height"] >= 44  # a real touch target
    slider.fill("20")  # slide
    assert compare.evaluate(split) == "20%"
    slider.focus()
    page.keyboard.press("ArrowRight")  # and keys move it
    assert compare.evaluate(split) == "25%"
    compare.tap(position={"x": 20, "y": 20})  # tap: all before
    assert compare.evaluate(split) == "100%"
    assert compare.locator(".compare-label-before").is_visible()
    assert compare.locator(".compare-label-after").is_hidden()
    compare.tap(position={"x": 20, "y": 20})  # tap again: all after
    assert compare.evaluate(split) == "0%"
    page.locator("#photos").screenshot(path=str(ARTIFACTS / "household-photos-phone.png"))

    with page.expect_download() as info:
        first.locator("a.download").click()
    download = info.value
    assert download.suggested_filename == "IMG_0001.instafly.jpg"
    saved = tmp_path / "downloaded.jpg"
    download.save_as(saved)
    output = daemon.data_dir / "enhanced" / "IMG_0001.instafly.jpg"
    assert saved.read_bytes() == output.read_bytes()
    with Image.open(io.BytesIO(saved.read_bytes())) as enhanced:
        assert enhanced.format == "JPEG"
        assert enhanced.size == (640, 480)  # full resolution, not a preview
        exif = enhanced.getexif()
        assert exif[0x010F] == EXIF_MAKE
        assert exif.get_ifd(0x8769)[0x9003] == EXIF_DATE
    assert problems == []
    context.close()


def test_train_now_shows_the_outcome_when_it_is_done(daemon: RunningDaemon, browser: Any) -> None:
    context = browser.new_context(**PHONE)
    page = context.new_page()
    problems = watch_for_problems(page)
    log_in(page, daemon.url + "/#model", TEST_PASSWORD)
    assert "now in use" in page.locator("#last-training").inner_text()  # the fixture's run
    goal = page.locator("#training-goal").inner_text()
    assert goal == "0 of 1,000 new labelled posts"
    page.locator("#model button", has_text="Learn now").click()
    assert page.locator(".flash-ok").inner_text() == "Training starts now."
    # No reload: the card redraws itself when the run has ended, with its outcome.
    page.wait_for_function(
        "() => document.querySelector('#last-training')?.dataset.finished !== "
        + repr(page.locator("#last-training").get_attribute("data-finished")),
        timeout=240000,
        polling=1000,
    )
    text = page.locator("#last-training").inner_text()
    assert "now in use" in text or "the box keeps that" in text
    assert "took " in text
    outcome = daemon.status()["model"]["last_outcome"]
    assert outcome["version"] == 2 and outcome["current_version"] == 1
    page.locator("#model").screenshot(path=str(ARTIFACTS / "household-model-phone.png"))
    assert problems == []
    context.close()
