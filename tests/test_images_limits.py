"""One image-opening function with one pixel limit per kind of image; captured images hold only
their own bytes, and those waiting for their JSON are bounded in bytes."""

from __future__ import annotations

import io
import re
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support_capture import huge_png

from instaflyd.capture.images import ImageRejected, VerifiedImage, verify_image
from instaflyd.capture.matching import PendingImages
from instaflyd.enhance.io import RejectedImage
from instaflyd.enhance.io import open_image as open_photo
from instaflyd.imaging import CAPTURED_MAX_PIXELS, TooManyPixels, open_image
from instaflyd.imaging_thumbnail import render_thumbnail
from instaflyd.model.inputs import ImageReadError, load_image

MiB = 1024 * 1024


def encode(image: Image.Image, kind: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


def test_a_huge_png_is_refused_by_every_decoder_before_a_pixel_is_decoded(tmp_path: Path) -> None:
    data = huge_png()
    assert 50_000 < len(data) < 400_000
    path = tmp_path / "huge.png"
    path.write_bytes(data)
    message = re.escape("image is 88,360,000 pixels (9,400 x 9,400), over the limit of 8,000,000")
    tracemalloc.start()
    try:
        with pytest.raises(ImageRejected, match=message):
            verify_image(data)  # capture
        with pytest.raises(TooManyPixels, match=message):
            render_thumbnail(
                path, 360, CAPTURED_MAX_PIXELS
            )  # the page's thumbnail of a captured image
        with pytest.raises(ImageReadError, match=message):
            load_image(path, 64)  # training
        with pytest.raises(RejectedImage, match="over the limit of 50,000,000"):
            open_photo(path, max_pixels=50_000_000, max_file_mb=10)  # enhancement
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB, f"{peak / MiB:.1f} MiB: pixels were decoded"


def test_drop_folder_photos_keep_their_own_larger_limit(tmp_path: Path) -> None:
    """A 12 MP phone photo is over what capture takes, and within enhance.max_pixels."""
    path = tmp_path / "phone.jpg"
    path.write_bytes(encode(Image.new("RGB", (4000, 3000), (90, 120, 30)), "JPEG"))
    with pytest.raises(TooManyPixels):
        render_thumbnail(path, 360, CAPTURED_MAX_PIXELS)
    thumbnail = render_thumbnail(path, 360, 100_000_000)
    assert Image.open(io.BytesIO(thumbnail)).size == (360, 270)
    assert load_image(path, 64, max_pixels=100_000_000).shape == (64, 64, 3)
    with open_image(path, 12_000_000) as image:
        assert image.size == (4000, 3000)


def photo(kind: str, **options: object) -> bytes:
    noise = np.random.default_rng(7).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    return encode(Image.fromarray(noise), kind, **options)


@pytest.mark.parametrize(
    ("kind", "options", "ext"),
    [
        ("JPEG", {}, "jpg"),
        ("JPEG", {"progressive": True}, "jpg"),
        ("PNG", {}, "png"),
        ("WEBP", {}, "webp"),
    ],
)
def test_only_the_image_itself_is_kept_never_what_follows_it(
    kind: str, options: dict, ext: str
) -> None:
    image = photo(kind, **options)
    junk = b"\xff\xd9 not part of the image \x00\xff" * 40_000  # ~1.2 MB, even a fake EOI
    verified = verify_image(image + junk)
    assert (verified.data, verified.ext, verified.width, verified.height) == (image, ext, 64, 48)


def test_an_image_whose_file_is_far_larger_than_its_pixels_need_is_refused() -> None:
    padded = encode(Image.new("RGB", (64, 64)), "PNG", pnginfo=None)
    text = b"tEXt" + b"Comment\0" + b"x" * 2_000_000
    chunk = struct.pack(">I", len(text) - 4) + text + struct.pack(">I", zlib.crc32(text))
    bloated = padded[:33] + chunk + padded[33:]  # after IHDR
    with pytest.raises(ImageRejected, match="more than a 64 x 64 image needs"):
        verify_image(bloated)


def test_a_jpeg_without_its_end_is_refused() -> None:
    image = photo("JPEG")
    with pytest.raises(ImageRejected, match="truncated JPEG image"):
        verify_image(image[:-2])


def waiting(size: int) -> VerifiedImage:
    return VerifiedImage(b"x" * size, "jpg", 10, 10)


def test_waiting_images_are_bounded_in_bytes_oldest_leaving_first() -> None:
    pending = PendingImages(max_count=500, max_age_seconds=900, max_bytes=3_000)
    gave_up = [pending.add(f"{i}_n.jpg", waiting(1_000), now=float(i)) for i in range(5)]
    assert gave_up == [0, 0, 0, 1, 1]
    assert (len(pending), pending.bytes) == (3, 3_000)
    assert pending.pop("0_n.jpg") is None and pending.pop("1_n.jpg") is None
    assert pending.pop("4_n.jpg") is not None
    assert pending.bytes == 2_000
    assert pending.add("big_n.jpg", waiting(5_000), now=6.0) == 3  # over the bound on its own
    assert (len(pending), pending.bytes) == (0, 0)
    assert pending.expire(time.time()) == 0


def test_the_page_never_draws_a_thumbnail_of_a_huge_captured_image(tmp_path: Path) -> None:
    """A 9,400 x 9,400 PNG stored before capture refused such images: /images/<sha> is a 404
    answered from the header, and the page's other thumbnails still come."""
    from support_daemon import basic_auth, give_password, seed_store

    from instaflyd.config import build_config
    from instaflyd.store import Database, ImageFiles
    from instaflyd.store.images import record_image
    from instaflyd.web import create_app

    config = build_config({"model": {"input_size": 64, "weights": "none"}}, tmp_path / "data")
    seed_store(config.data_dir, posts=2, owners=1)
    give_password(config.data_dir)
    huge = ImageFiles(config.images_dir).put(huge_png(), "png")
    with Database(config.db_path) as db, db.transaction() as conn:
        record_image(conn, huge, 9400, 9400, huge.path.stat().st_size)
    client = create_app(config).test_client()
    normal = next(p for p in config.images_dir.rglob("*.jpg")).stem
    tracemalloc.start()
    try:
        refused = client.get(f"/images/{huge.sha256}", headers=basic_auth())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.status_code == 404
    assert peak < 8 * MiB, f"{peak / MiB:.1f} MiB: the picture was decoded"
    shown = client.get(f"/images/{normal}", headers=basic_auth())
    assert (shown.status_code, shown.data[:2]) == (200, b"\xff\xd8")
