"""Thumbnails within a budget: a huge picture never decodes in the page's process, misses are
drawn a few at a time, and what is kept on disk stays under its byte budget.

The attack of issue 20 (item 3), for real: a 1.7 MB PNG of 10,000 x 10,000 RGBA pixels (400 MB
decoded) queued as a drop-folder photo, and its thumbnail asked for eight times at once, at
every width, from the page running in a process of its own; the page's peak memory is read from
/proc. Before, the page held 1.39 GB for one such thumbnail and 8.78 GB for eight.
"""

from __future__ import annotations

import functools
import io
import struct
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import pytest
import requests
from helpers import wait_until
from PIL import Image
from support_page import page_process
from support_web import log_in as logged_in
from support_web import page_config

from instaflyd.config import load_config
from instaflyd.store import Database
from instaflyd.store.jobs import enqueue_job
from instaflyd.web import thumbnails
from instaflyd.web.thumbnails import WIDTHS, NoPreview, NotAllowed, Thumbnails, srcset, width_from

MiB = 1024 * 1024


@functools.lru_cache(maxsize=2)
def blank_png(side: int, color_type: int) -> bytes:
    """A PNG of side x side zero pixels (color type 6: RGBA, 2: RGB), written without ever
    holding the picture: one IDAT of compressed zero rows."""
    channels = {2: 3, 6: 4}[color_type]
    row = b"\0" * (side * channels + 1)
    deflater = zlib.compressobj(1)
    idat = b"".join(deflater.compress(row) for _ in range(side)) + deflater.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", side, side, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def queue_photo(config_path: Path, name: str, data: bytes) -> int:
    config = load_config(config_path)
    config.watch.drop_dir.mkdir(parents=True, exist_ok=True)
    path = config.watch.drop_dir / name
    path.write_bytes(data)
    with Database(config.db_path) as db, db.transaction() as conn:
        job_id = enqueue_job(conn, str(path), name)
    assert job_id is not None
    return job_id


@pytest.mark.slow
def test_a_huge_photo_never_decodes_in_the_page(tmp_path: Path) -> None:
    config_path = page_config(tmp_path)
    huge = queue_photo(config_path, "huge.png", blank_png(10_000, 6))  # 400 MB with alpha
    big = queue_photo(config_path, "big.png", blank_png(7_000, 2))  # 49 MP, 196 MB decoded
    with page_process(config_path) as page:
        base = f"http://127.0.0.1:{page.port}"
        browser = logged_in(base)
        assert requests.get(base + "/healthz", timeout=5).status_code == 200
        before = page.status_field("VmHWM")
        answers: list[tuple[int, int, int]] = []

        def fetch(job: int, width: int) -> None:
            url = f"{base}/thumbs/job/{job}/before?w={width}"
            response = browser.get(url, timeout=60)
            size = Image.open(io.BytesIO(response.content)).size[0] if response.ok else 0
            answers.append((job, response.status_code, size))

        started = time.monotonic()
        fetchers = [
            threading.Thread(target=fetch, args=(job, width))
            for job in (huge, big)
            for width in (*WIDTHS, WIDTHS[0])
        ]
        for thread in fetchers:
            thread.start()
        for thread in fetchers:
            thread.join()
        took = time.monotonic() - started
        peak = page.status_field("VmHWM")
        # The 49 MP photo is drawn (by the child, in every width asked for) or, beyond the
        # drawing budget, refused for now with 503; the 100 MP RGBA one is refused from its
        # header: 404 (too large to preview), never decoded.
        by_job = {job: Counter(code for j, code, _ in answers if j == job) for job in (huge, big)}
        assert set(by_job[huge]) <= {404, 503} and by_job[huge][404] >= 1, answers
        assert set(by_job[big]) <= {200, 503} and by_job[big][200] >= 1, answers
        assert all(size in WIDTHS for job, code, size in answers if code == 200), answers
        assert peak - before < 64 * MiB, f"the page grew by {(peak - before) / MiB:.0f} MiB"
        # Asked again, every width of the big one comes from the disk cache, at once.
        for width in WIDTHS:
            started = time.monotonic()
            response = browser.get(f"{base}/thumbs/job/{big}/before?w={width}")
            assert response.status_code == 200
            assert Image.open(io.BytesIO(response.content)).size[0] == width
        kept = list((load_config(config_path).data_dir / thumbnails.CACHE_FOLDER).rglob("*.jpg"))
        assert len(kept) == len(WIDTHS)
        assert all(oct(file.stat().st_mode & 0o777) == "0o640" for file in kept)
        # Other widths are refused rather than drawn and kept.
        for width in ("100", "1081", "abc", "360 "):
            url = f"{base}/thumbs/job/{big}/before?w={width}"
            assert browser.get(url).status_code == 404
        assert page.status_field("VmHWM") - before < 64 * MiB
    print(f"8 concurrent misses: {took:.1f} s; page peak +{(peak - before) / MiB:.1f} MiB")


def test_widths_and_srcset() -> None:
    assert width_from(None) == width_from("") == WIDTHS[0]
    assert [width_from(str(width)) for width in WIDTHS] == list(WIDTHS)
    for bad in ("0", "361", "-360", "1e3", "9" * 40):
        with pytest.raises(NotAllowed):
            width_from(bad)
    assert (
        srcset("/images/ab")
        == "/images/ab?w=360 360w, /images/ab?w=720 720w, /images/ab?w=1080 1080w"
    )


def phone_photo(tmp_path: Path, name: str, seed: int) -> Path:
    path = tmp_path / name
    noise = Image.effect_noise((1600, 1200), 8 + seed).convert("RGB")
    Image.blend(Image.linear_gradient("L").convert("RGB").resize((1600, 1200)), noise, 0.2).save(
        path, "JPEG", quality=90
    )
    return path


@pytest.mark.slow
def test_the_disk_cache_stays_within_its_byte_budget(tmp_path: Path) -> None:
    cache = Thumbnails(tmp_path / "cache", max_bytes=50_000)
    drawn = [
        cache.jpeg(phone_photo(tmp_path, f"p{i}.jpg", i), width, 100_000_000)
        for i in range(4)
        for width in WIDTHS
    ]
    assert sum(len(data) for data in drawn) > 2 * 50_000  # far more than the budget was drawn
    files = list((tmp_path / "cache").rglob("*.jpg"))
    assert 0 < cache.kept_bytes() <= 50_000
    assert sum(file.stat().st_size for file in files) == cache.kept_bytes()
    # A new cache on the same folder (the page restarted) finds the same total.
    assert Thumbnails(tmp_path / "cache", max_bytes=50_000).kept_bytes() == cache.kept_bytes()
    # The newest is kept and served from disk: no drawing.
    last = tmp_path / "p3.jpg"
    cache.drawn = 0
    assert cache.jpeg(last, WIDTHS[-1], 100_000_000) == drawn[-1]
    assert cache.drawn == 0


def test_a_file_that_is_no_image_is_remembered_not_decoded_again(tmp_path: Path) -> None:
    cache = Thumbnails(tmp_path / "cache")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8" + b"\0" * 5000)
    for _ in range(3):
        with pytest.raises(NoPreview):
            cache.jpeg(junk, WIDTHS[0], 100_000_000)
    assert cache.drawn == 0 and len(cache._failures) == 1


def test_beyond_the_waiting_budget_previews_are_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MAX_WAITING requests may draw or wait; the next is Busy at once, not a held thread."""
    cache = Thumbnails(tmp_path / "cache")
    release = threading.Event()
    entered = threading.Semaphore(0)

    def slow(*args: object) -> bytes:
        entered.release()
        release.wait(10)
        return b"\xff\xd8slow"

    monkeypatch.setattr(thumbnails, "render_thumbnail", slow)
    photos = [phone_photo(tmp_path, f"w{i}.jpg", i) for i in range(thumbnails.MAX_WAITING + 1)]
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda p=p: results.append(cache.jpeg(p, 360, 10**8)))
        for p in photos[:-1]
    ]
    for thread in threads:
        thread.start()
    for _ in range(thumbnails.MAX_DRAWING):
        assert entered.acquire(timeout=5)
    wait_until(lambda: cache._waiting == thumbnails.MAX_WAITING, 10, "the others waiting")
    started = time.monotonic()
    with pytest.raises(thumbnails.Busy):
        cache.jpeg(photos[-1], 360, 10**8)
    assert time.monotonic() - started < 0.5 and cache.busy == 1
    release.set()
    for thread in threads:
        thread.join(10)
    assert results == [b"\xff\xd8slow"] * thumbnails.MAX_WAITING
