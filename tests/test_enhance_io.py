"""Image I/O: every kind of photo comes out upright in RGB; bad inputs get a specific reason."""

from __future__ import annotations

import io
import struct
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms
from support_enhance import (
    BLUE,
    GREY,
    RED,
    assert_upright,
    cmyk_icc_profile,
    corners,
    encode,
    marked,
)

from instaflyd.enhance.io import RejectedImage, encode_jpeg, open_image

LIMITS = {"max_pixels": 100_000_000, "max_file_mb": 200}
W, H = 60, 40

# How to store a picture so that a viewer applying EXIF orientation N shows it upright.
STORE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def load(tmp_path: Path, data: bytes, name: str = "in.bin", **limits: float) -> np.ndarray:
    path = tmp_path / name
    path.write_bytes(data)
    return open_image(path, **{**LIMITS, **limits}).pixels


def reason(tmp_path: Path, data: bytes, **limits: float) -> str:
    with pytest.raises(RejectedImage) as caught:
        load(tmp_path, data, **limits)
    return str(caught.value)


@pytest.mark.parametrize("orientation", sorted(STORE_FOR_ORIENTATION))
def test_exif_orientation_is_applied_and_reset_to_1(tmp_path: Path, orientation: int) -> None:
    stored = Image.fromarray(marked(W, H)).transpose(STORE_FOR_ORIENTATION[orientation])
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "TestCam"
    path = tmp_path / "rotated.jpg"
    path.write_bytes(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))

    photo = open_image(path, **LIMITS)

    assert_upright(photo.pixels, W, H)
    kept = Image.Exif()
    kept.load(photo.exif)
    assert kept[ExifTags.Base.Orientation] == 1
    assert kept[ExifTags.Base.Make] == "TestCam"


def test_cmyk_without_a_profile_uses_the_plain_formula(tmp_path: Path) -> None:
    cmyk = np.zeros((H, W, 4), np.uint8)
    cmyk[..., 3] = 128  # 50% black: mid grey
    cmyk[: H // 4, : W // 4] = (0, 255, 255, 0)  # magenta + yellow = red
    cmyk[: H // 4, -W // 4 :] = (255, 255, 0, 0)  # cyan + magenta = blue
    photo = open_image(
        _write(tmp_path, Image.fromarray(cmyk, "CMYK"), "JPEG", quality=95), **LIMITS
    )
    top_left, top_right, bottom_left = corners(photo.pixels)
    assert np.abs(top_left - (255, 0, 0)).max() <= 3
    assert np.abs(top_right - (0, 0, 255)).max() <= 3
    assert np.abs(bottom_left - (127, 127, 127)).max() <= 3
    assert photo.icc_profile is None


def test_cmyk_with_a_profile_is_converted_through_it_to_srgb(tmp_path: Path) -> None:
    cmyk = np.zeros((H, W, 4), np.uint8)
    cmyk[..., 3] = 128
    cmyk[: H // 4, : W // 4] = (0, 255, 255, 0)
    image = Image.fromarray(cmyk, "CMYK")
    path = _write(tmp_path, image, "JPEG", quality=95, icc_profile=cmyk_icc_profile(yellow_cast=12))

    photo = open_image(path, **LIMITS)

    top_left, _, grey = corners(photo.pixels)
    assert top_left[0] > 200 and top_left[1] < 60 and top_left[2] < 60  # still red
    # The profile's yellow cast shows: blue well below red, unlike the plain formula's grey.
    assert grey[0] - grey[2] >= 15, grey
    profile = ImageCms.ImageCmsProfile(io.BytesIO(photo.icc_profile))
    assert profile.profile.xcolor_space.strip() == "RGB"
    assert "sRGB" in profile.profile.profile_description


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.full((H, W), 0x8080, np.uint16)
    values[: H // 4, : W // 4] = 65535
    values[: H // 4, -W // 4 :] = 0
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")

    pixels = load(tmp_path, encode(image, "PNG"), "deep.png")

    top_left, top_right, bottom_left = corners(pixels)
    assert (top_left.tolist(), top_right.tolist(), bottom_left.tolist()) == (
        [255, 255, 255],
        [0, 0, 0],
        [128, 128, 128],
    )


def test_greyscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    grey = np.asarray(Image.fromarray(marked(W, H)).convert("L"))
    pixels = load(tmp_path, encode(Image.fromarray(grey), "PNG"), "grey.png")
    assert pixels.shape == (H, W, 3)
    assert np.array_equal(pixels[..., 0], grey) and np.array_equal(pixels[..., 2], grey)


def test_palette_with_a_transparent_entry_becomes_rgb_on_white(tmp_path: Path) -> None:
    indices = np.ones((H, W), np.uint8)  # 1 = grey
    indices[: H // 4, : W // 4] = 2  # red
    indices[: H // 4, -W // 4 :] = 3  # blue
    indices[-H // 4 :, :] = 0  # transparent strip along the bottom
    image = Image.fromarray(indices, "P")
    image.putpalette([0, 0, 0, *GREY, *RED, *BLUE])
    pixels = load(tmp_path, encode(image, "PNG", transparency=0), "palette.png")
    top_left, top_right, _ = corners(pixels)
    assert (top_left.tolist(), top_right.tolist()) == (list(RED), list(BLUE))
    assert pixels[H // 2, W // 2].tolist() == list(GREY)
    assert pixels[-1, 0].tolist() == [255, 255, 255]


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((H, W, 4), np.uint8)  # fully transparent black
    rgba[: H // 4, : W // 4] = (*RED, 255)
    rgba[: H // 4, -W // 4 :] = (0, 0, 255, 128)  # half-transparent blue
    pixels = load(tmp_path, encode(Image.fromarray(rgba, "RGBA"), "PNG"), "alpha.png")
    top_left, top_right, bottom_left = corners(pixels)
    assert top_left.tolist() == list(RED)
    assert np.abs(top_right - (127, 127, 255)).max() <= 1
    assert bottom_left.tolist() == [255, 255, 255]


def test_first_frame_of_a_gif_and_first_page_of_a_tiff(tmp_path: Path) -> None:
    first = Image.fromarray(marked(W, H))
    second = Image.new("RGB", (W, H), (0, 255, 0))
    for fmt, name in (("GIF", "anim.gif"), ("TIFF", "pages.tif")):
        data = encode(first, fmt, save_all=True, append_images=[second])
        assert_upright(load(tmp_path, data, name), W, H, tolerance=20)


@pytest.mark.parametrize("fmt", ["WEBP", "HEIF"])
def test_webp_and_heic_open(tmp_path: Path, fmt: str) -> None:
    data = encode(Image.fromarray(marked(64, 48)), fmt, quality=95)
    assert_upright(load(tmp_path, data, f"photo.{fmt.lower()}"), 64, 48, tolerance=25)


def test_jpeg_keeps_exif_and_icc_profile() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 1
    exif[ExifTags.Base.Model] = "Pixel"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode_jpeg(marked(W, H), quality=90, exif=exif.tobytes(), icc_profile=icc)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.size == (W, H)
        assert image.info["icc_profile"] == icc
        assert image.getexif()[ExifTags.Base.Model] == "Pixel"


# --- inputs that must be refused, each with its own reason -------------------------------


def test_empty_file(tmp_path: Path) -> None:
    assert reason(tmp_path, b"") == "not an image: the file is empty"


def test_text_file(tmp_path: Path) -> None:
    text = "Shopping list\n- milk\n- café crème\n".encode()
    assert reason(tmp_path, text) == "not an image: the file is a text document"


def test_pdf_and_unknown_binary(tmp_path: Path) -> None:
    assert reason(tmp_path, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n") == (
        "not an image: the file is a PDF document"
    )
    binary = bytes(range(256)) * 4
    assert reason(tmp_path, binary) == "not an image: the file is in a format this box cannot read"


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = encode(Image.fromarray(marked(200, 150)), "JPEG", quality=95)
    message = reason(tmp_path, data[: len(data) // 2])
    assert message.startswith("truncated image: image file is truncated"), message


def test_truncated_png(tmp_path: Path) -> None:
    noisy = np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noisy), "PNG")
    message = reason(tmp_path, data[: len(data) // 2])
    assert message.startswith("truncated image: "), message


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    """A tiny PNG whose header claims 40,000 x 40,000 pixels."""
    data = bytearray(encode(Image.new("RGB", (8, 8)), "PNG"))
    ihdr = struct.pack(">II", 40_000, 40_000) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    assert len(data) < 1000
    assert reason(tmp_path, bytes(data)) == (
        "image is 1,600,000,000 pixels (40,000 x 40,000), over the limit of 100,000,000"
    )


def test_pillows_own_limit_is_left_as_it_was_by_threads_opening_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit is lifted while a header is read; racing threads must not leave it lifted."""
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to provoke the race
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 12_345_678)
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(Image.fromarray(marked(W, H)), "PNG"))
    sizes: list[tuple[int, int]] = []

    def open_many() -> None:
        for _ in range(200):
            sizes.append(open_image(photo, **LIMITS).pixels.shape[:2])

    try:
        threads = [threading.Thread(target=open_many) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch_interval)
    assert sizes == [(H, W)] * 800
    assert Image.MAX_IMAGE_PIXELS == 12_345_678


def test_pixel_and_file_size_limits_come_from_the_config(tmp_path: Path) -> None:
    data = encode(Image.fromarray(marked(W, H)), "PNG")
    assert reason(tmp_path, data, max_pixels=2000) == (
        "image is 2,400 pixels (60 x 40), over the limit of 2,000"
    )
    noisy = np.random.default_rng(1).integers(0, 256, (400, 500, 3), dtype=np.uint8)
    big = encode(Image.fromarray(noisy), "PNG")
    assert 550_000 < len(big) < 650_000
    assert reason(tmp_path, big, max_file_mb=0.5) == (
        f"file is {len(big) / 1e6:.1f} MB, over the limit of 0.5 MB"
    )


def test_missing_file_and_folder(tmp_path: Path) -> None:
    for path, expected in ((tmp_path / "nope.jpg", "no such file"), (tmp_path, "not a file")):
        with pytest.raises(RejectedImage, match=f"^{expected}$"):
            open_image(path, **LIMITS)


def _write(tmp_path: Path, image: Image.Image, fmt: str, **options: object) -> Path:
    path = tmp_path / f"image.{fmt.lower()}"
    path.write_bytes(encode(image, fmt, **options))
    return path


def test_image_whose_header_is_cut(tmp_path: Path) -> None:
    data = encode(Image.fromarray(marked(W, H)), "PNG")
    assert reason(tmp_path, data[:40]) == (
        "damaged image: the file starts like a PNG but its header is cut or corrupt"
    )
