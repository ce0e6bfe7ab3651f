"""The differentiable edits: bounded, identity at zero, a gradient for every parameter, and the
same result on the small copy as on the full-resolution photo."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from support_enhance import photo_like

from instaflyd.enhance import filters
from instaflyd.enhance.io import encode_jpeg
from instaflyd.enhance.pipeline import model_copy


def some_edits() -> tf.Tensor:
    """A mix of moderate edits in both directions, every parameter non-zero."""
    return tf.constant([0.6, -0.5, 0.4, 0.5, 0.7, -0.6, 0.5, 0.8, -0.9], tf.float32)


def test_every_parameter_has_a_gradient_on_a_typical_image() -> None:
    small = model_copy(photo_like(96, 128), 64)
    weights = tf.random.stateless_normal(small.shape, seed=(1, 2))
    for raw in (filters.identity(), some_edits()):
        raw = tf.Variable(raw)
        with tf.GradientTape() as tape:
            target = tf.reduce_sum(filters.apply_small(small, raw) * weights) / 64**2
        gradient = tape.gradient(target, raw).numpy()
        assert gradient.shape == (len(filters.EDITS),)
        assert np.all(np.abs(gradient) > 1e-3), dict(zip(filters.EDIT_NAMES, gradient, strict=True))


def test_identity_reproduces_the_input() -> None:
    pixels = photo_like(120, 160)
    assert np.array_equal(filters.apply_full(pixels, filters.identity()), pixels)
    small = model_copy(pixels, 64)
    difference = (filters.apply_small(small, filters.identity()) - small).numpy()
    assert np.abs(difference).max() < 0.05


def test_identity_through_jpeg_differs_only_by_jpeg_rounding() -> None:
    """The written file is byte for byte the JPEG of the unedited input."""
    pixels = photo_like(120, 160)
    edited = filters.apply_full(pixels, filters.identity())
    data = encode_jpeg(edited, quality=92, exif=None, icc_profile=None)
    assert data == encode_jpeg(pixels, quality=92, exif=None, icc_profile=None)
    decoded = np.asarray(Image.open(io.BytesIO(data)), dtype=np.int16)
    assert np.abs(decoded - pixels).mean() < 4.0  # what JPEG itself does to a noisy photo


def test_parameters_are_bounded_and_the_output_stays_in_range() -> None:
    extreme = tf.constant([50.0, -50.0] * 4 + [50.0])
    values = filters.describe(extreme)
    assert values == {
        edit.name: round(edit.limit * (1 if i % 2 == 0 else -1), 4)
        for i, edit in enumerate(filters.EDITS)
    }
    out = filters.apply_small(model_copy(photo_like(64, 64), 64), extreme).numpy()
    assert out.min() >= 0.0 and out.max() <= 255.0


@pytest.mark.parametrize(
    ("name", "brighter"), [("exposure", True), ("gamma", True), ("shadows", True)]
)
def test_edits_do_what_their_names_say(name: str, brighter: bool) -> None:
    small = model_copy(photo_like(64, 64), 64)
    raw = np.zeros(len(filters.EDITS), np.float32)
    raw[filters.EDIT_NAMES.index(name)] = 1.0
    change = float(tf.reduce_mean(filters.apply_small(small, raw) - small))
    assert change > 2.0 if brighter else change < -2.0


def test_saturation_and_vignette_do_what_their_names_say() -> None:
    small = model_copy(photo_like(64, 64), 64)

    def spread(images: tf.Tensor) -> float:
        return float(tf.reduce_mean(tf.math.reduce_std(images, axis=-1)))

    saturated = filters.apply_small(small, _only("saturation", 1.0))
    assert spread(saturated) > 1.3 * spread(small)
    darker_corners = filters.apply_small(small, _only("vignette", -1.0)) - small
    assert float(darker_corners[0, 0, 0, 0]) < -10.0
    assert abs(float(darker_corners[0, 32, 32, 0])) < 1.0


def test_full_resolution_matches_the_small_copy() -> None:
    full = photo_like(480, 640, seed=5)
    raw = some_edits()
    on_small = filters.apply_small(model_copy(full, 64), raw)
    on_full = model_copy(filters.apply_full(full, raw), 64)
    difference = np.abs((on_small - on_full).numpy())
    assert difference.mean() < 0.5 and difference.max() < 4.0, (
        difference.mean(),
        difference.max(),
    )


def test_strips_give_the_same_result_as_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    full = photo_like(301, 200, seed=2)
    whole = filters.apply_full(full, some_edits())
    monkeypatch.setattr(filters, "STRIP_PIXELS", 200 * 7)  # 43 strips, the last one short
    assert np.array_equal(filters.apply_full(full, some_edits()), whole)


def _only(name: str, value: float) -> np.ndarray:
    raw = np.zeros(len(filters.EDITS), np.float32)
    raw[filters.EDIT_NAMES.index(name)] = value
    return raw
