"""Global photo edits as one differentiable function of a few bounded parameters.

The edits are the sliders of a photo app: white balance (temperature, tint), exposure, contrast,
shadows, highlights, gamma, saturation and a vignette. Each raw parameter is unbounded; `bounded`
squashes it with tanh into the edit's range, so the optimiser can never push an edit past what
looks natural, and all zeros is the identity.

Every edit is computed per pixel from the pixel's colour and its position in the frame, with no
statistics of the whole image, so the same function gives the same result on the small copy the
optimiser sees (inside a GradientTape) and on the full-resolution photo, which `apply_full`
processes in horizontal strips to keep memory small. `tf.image.adjust_contrast/saturation/hue`
have no gradients, so the maths is written out here.

A strip is edited by one XLA-compiled function (`jit_compile=True`): XLA fuses the chain of
per-pixel operations into one pass over the strip instead of one pass (and one intermediate
array) per operation; `bench/photo_latency.py` measured it 4x cheaper in CPU on a 12 MP photo,
the pixels equal within one level of rounding. Every strip of a photo has the same shape (the
last one is padded), so a photo size is compiled once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class Edit:
    name: str
    limit: float  # the bounded value lies in [-limit, limit]
    meaning: str


EDITS: tuple[Edit, ...] = (
    Edit("temperature", 0.10, "warmer (+) or cooler (-): red up and blue down, or the reverse"),
    Edit("tint", 0.10, "magenta (+) or green (-)"),
    Edit("exposure", 0.50, "stops of brightness: the image times 2**exposure"),
    Edit("contrast", 0.40, "spread of tones around mid-grey, times 1 + contrast"),
    Edit("shadows", 0.14, "lift (+) or deepen (-) the dark tones; the curve stays monotonic"),
    Edit("highlights", 0.14, "recover (-) or boost (+) the bright tones; stays monotonic"),
    Edit("gamma", 0.40, "mid-tones brighter (+) or darker (-): value ** 2**-gamma"),
    Edit("saturation", 0.50, "colour strength around the grey of the same luminance"),
    Edit("vignette", 0.30, "corners brighter (+) or darker (-), smoothly from the centre"),
)
EDIT_NAMES: tuple[str, ...] = tuple(edit.name for edit in EDITS)
LIMITS = tf.constant([edit.limit for edit in EDITS], tf.float32)
LUMA = tf.constant([0.2126, 0.7152, 0.0722], tf.float32)  # Rec. 709 / sRGB weights
_TONE_PEAK = 27.0 / 4.0  # makes x(1-x)^2 and x^2(1-x) peak at 1
_DARKEST = 1e-4  # keeps the gamma curve's gradient finite at black
STRIP_PIXELS = 1 << 20  # pixels per strip in apply_full: ~12 MB per float32 intermediate


def identity() -> tf.Tensor:
    """Raw parameters that change nothing."""
    return tf.zeros([len(EDITS)], tf.float32)


def bounded(raw: tf.Tensor) -> tf.Tensor:
    """Raw parameters -> edit values, each within its limit."""
    return tf.tanh(raw) * LIMITS


def describe(raw: tf.Tensor | np.ndarray) -> dict[str, float]:
    """The edit values by name, rounded for people and JSON."""
    values = bounded(tf.convert_to_tensor(raw, tf.float32)).numpy()
    return {name: round(float(value), 4) for name, value in zip(EDIT_NAMES, values, strict=True)}


def frame_coordinates(
    height: int, width: int, row_start: int = 0, rows: int | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """Pixel-centre coordinates in [-1, 1] across the whole frame, for rows [start, start+rows).

    Returns y with shape (rows, 1) and x with shape (1, width), so a strip of a large photo gets
    the same vignette as the corresponding rows of the whole photo.
    """
    rows = height - row_start if rows is None else rows
    y = (tf.range(row_start, row_start + rows, dtype=tf.float32) + 0.5) / height * 2.0 - 1.0
    x = (tf.range(width, dtype=tf.float32) + 0.5) / width * 2.0 - 1.0
    return y[:, None], x[None, :]


def apply_edits(image: tf.Tensor, raw: tf.Tensor, y: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """Edit RGB values in [0, 1], shape (..., H, W, 3), at frame coordinates y (H, 1), x (1, W)."""
    temperature, tint, exposure, contrast, shadows, highlights, gamma, saturation, vignette = (
        tf.unstack(bounded(raw))
    )
    image = image * tf.stack(
        [1.0 + temperature + tint / 2, 1.0 - tint, 1.0 - temperature + tint / 2]
    )
    image = image * tf.pow(2.0, exposure)
    image = 0.5 + (image - 0.5) * (1.0 + contrast)
    image = tf.clip_by_value(image, 0.0, 1.0)
    image = (
        image
        + shadows * _TONE_PEAK * image * tf.square(1.0 - image)
        + highlights * _TONE_PEAK * tf.square(image) * (1.0 - image)
    )
    # value ** g written as value * value ** (g - 1): the same curve, but exactly the
    # identity at gamma 0, black included (the search's first step then scores the photo
    # itself, and that score is recorded as the score before)
    image = image * tf.pow(tf.maximum(image, _DARKEST), tf.pow(2.0, -gamma) - 1.0)
    luma = tf.reduce_sum(image * LUMA, axis=-1, keepdims=True)
    image = luma + (image - luma) * (1.0 + saturation)
    radius2 = (tf.square(y) + tf.square(x)) / 2.0  # 0 at the centre, 1 in the corners
    image = image * (1.0 + vignette * radius2)[..., None]
    return tf.clip_by_value(image, 0.0, 1.0)


def apply_small(images: tf.Tensor, raw: tf.Tensor) -> tf.Tensor:
    """Edit a batch (N, S, S, 3) of values in [0, 255], differentiably; for the optimiser."""
    height, width = images.shape[1], images.shape[2]
    y, x = frame_coordinates(height, width)
    return apply_edits(images / 255.0, raw, y, x) * 255.0


def edit_strip(strip: tf.Tensor, raw: tf.Tensor, y: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """One strip of uint8 pixels at frame coordinates y, x, edited; uncompiled."""
    edited = apply_edits(tf.cast(strip, tf.float32) / 255.0, raw, y, x)
    return tf.cast(tf.round(edited * 255.0), tf.uint8)


_edit_strip = tf.function(edit_strip, jit_compile=True, reduce_retracing=True)


def apply_full(pixels: np.ndarray, raw: tf.Tensor | np.ndarray) -> np.ndarray:
    """Edit a full-resolution (H, W, 3) uint8 photo strip by strip; returns a new uint8 array."""
    height, width = pixels.shape[:2]
    raw = tf.convert_to_tensor(raw, tf.float32)
    rows_per_strip = min(height, max(1, STRIP_PIXELS // width))
    out = np.empty_like(pixels)
    for start in range(0, height, rows_per_strip):
        rows = min(rows_per_strip, height - start)
        strip = pixels[start : start + rows]
        if rows < rows_per_strip:  # the last strip, padded to the others' shape
            strip = np.concatenate([strip, np.zeros_like(pixels[: rows_per_strip - rows])])
        y, x = frame_coordinates(height, width, start, rows_per_strip)
        out[start : start + rows] = _edit_strip(strip, raw, y, x).numpy()[:rows]
    return out
