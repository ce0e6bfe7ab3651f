"""What the enhancement tests share: scorers that need no trained model, and test images.

- `BrightColourfulScorer`: a fixed analytic score (brightness plus colourfulness), so tests that
  need "the score went up" are deterministic.
- `TinyCnnScorer`: a small random-weight Keras CNN, a stand-in with a real network's gradients.
- `marked(...)`: a picture with a red block in the top-left corner and a blue one in the
  top-right, so a test can tell whether an image came out right side up (or mirrored).
- `cmyk_icc_profile()`: a minimal CMYK ICC profile, built here because the box has none; it maps
  CMYK like the naive formula but with a yellow cast, so a test can tell it was used.
"""

from __future__ import annotations

import io
import struct

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, ImageCms

RED = (220, 30, 30)
BLUE = (30, 40, 210)
GREY = (120, 130, 140)


class BrightColourfulScorer:
    """Mean brightness plus twice the mean distance of each channel from the pixel's grey."""

    version = None

    def __init__(self, input_size: int = 64) -> None:
        self.input_size = input_size

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        x = images / 255.0
        grey = tf.reduce_mean(x, axis=-1, keepdims=True)
        return tf.reduce_mean(x, axis=[1, 2, 3]) + 2.0 * tf.reduce_mean(
            tf.abs(x - grey), axis=[1, 2, 3]
        )


class TinyCnnScorer:
    """Two random-weight conv layers, global pooling and a dense output: a network's gradients.
    Built for `input_size`, or for any size (None), as the product's globally pooled head is."""

    version = 7

    def __init__(self, input_size: int | None = 32, seed: int = 3) -> None:
        self.input_size = input_size
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((input_size, input_size, 3))
        x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
        x = keras.layers.Conv2D(8, 3, activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(8, 3, activation="relu")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        self.model = keras.Model(inputs, keras.layers.Dense(1)(x))

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        return self.model(images)[:, 0]


def photo_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, slightly dull colour gradient with sensor-like noise, (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy, xx = yy / height, xx / width
    image = np.stack([60 + 90 * xx, 70 + 70 * yy, 100 + 50 * (1 - xx) * yy], axis=-1)
    image += 25 * np.sin(6 * xx + 3 * yy)[..., None] + rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def marked(width: int = 60, height: int = 40) -> np.ndarray:
    """(H, W, 3) uint8: grey, a red block top-left and a blue block top-right."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = GREY
    bh, bw = height // 4, width // 4
    image[:bh, :bw] = RED
    image[:bh, -bw:] = BLUE
    return image


def corners(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mean colour near the top-left, top-right and bottom-left of an image (as int)."""
    height, width = pixels.shape[:2]
    bh, bw = max(1, height // 10), max(1, width // 10)
    top_left = pixels[bh : 2 * bh, bw : 2 * bw]
    top_right = pixels[bh : 2 * bh, -2 * bw : -bw]
    bottom_left = pixels[-2 * bh : -bh, bw : 2 * bw]
    return tuple(np.rint(p.reshape(-1, 3).mean(axis=0)).astype(int) for p in (
        top_left, top_right, bottom_left
    ))  # fmt: skip


def assert_upright(pixels: np.ndarray, width: int, height: int, tolerance: int = 12) -> None:
    """`pixels` is the `marked` picture of that size, right side up, in RGB."""
    assert pixels.shape == (height, width, 3) and pixels.dtype == np.uint8
    top_left, top_right, bottom_left = corners(pixels)
    for got, want in ((top_left, RED), (top_right, BLUE), (bottom_left, GREY)):
        assert np.abs(got - np.array(want)).max() <= tolerance, (got, want)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def cmyk_icc_profile(yellow_cast: int = 12) -> bytes:
    """An ICC v2 CMYK profile (one 2-point lut16 A2B0 table to Lab) with a yellow cast.

    Each CMYK corner maps to the Lab colour of the naive conversion
    R = (1-C)(1-K), G = (1-M)(1-K), B = (1-Y)(1-K), with b* raised by `yellow_cast`.
    """
    corners_cmyk = [(c, m, y, k) for c in (0, 1) for m in (0, 1) for y in (0, 1) for k in (0, 1)]
    rgb = np.array(
        [[(1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k)] for c, m, y, k in corners_cmyk]
    )
    rgb_image = Image.fromarray(np.rint(rgb * 255).astype(np.uint8)[None])
    lab = ImageCms.profileToProfile(
        rgb_image, ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), outputMode="LAB"
    )
    lab8 = np.asarray(lab)[0]  # L: 0..255 for 0..100; a, b: signed bytes
    lightness = lab8[:, 0].astype(np.int64)
    a, b = lab8[:, 1].view(np.int8).astype(np.int64), lab8[:, 2].view(np.int8).astype(np.int64)
    legacy = np.stack([lightness, a + 128, np.clip(b + yellow_cast, -128, 127) + 128], axis=1)
    clut = (legacy * 256).astype(">u2").tobytes()  # ICC v2 16-bit Lab: L 0xFF00 = 100, a 0x8000 = 0

    def fixed(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    identity = b"".join(fixed(1.0 if i % 4 == 0 else 0.0) for i in range(9))
    ramp = struct.pack(">HH", 0, 65535)
    a2b0 = (
        b"mft2" + bytes(4) + struct.pack(">BBBB", 4, 3, 2, 0) + identity
        + struct.pack(">HH", 2, 2) + ramp * 4 + clut + ramp * 3
    )  # fmt: skip
    text = b"Instafly test CMYK\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67)
    wtpt = b"XYZ " + bytes(4) + fixed(0.9642) + fixed(1.0) + fixed(0.8249)
    cprt = b"text" + bytes(4) + b"public domain\0"
    tags = [(b"desc", desc), (b"wtpt", wtpt), (b"cprt", cprt), (b"A2B0", a2b0)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (
        struct.pack(">I", size) + b"lcms" + struct.pack(">I", 0x02100000) + b"prtr" + b"CMYK"
        + b"Lab " + bytes(12) + b"acsp" + bytes(24) + struct.pack(">I", 0)
        + fixed(0.9642) + fixed(1.0) + fixed(0.8249) + bytes(48)
    )  # fmt: skip
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data
