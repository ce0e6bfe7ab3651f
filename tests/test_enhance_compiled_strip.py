"""The full-size edit is one XLA-compiled function per strip: the same pixels as the edits
computed op by op, within one level of rounding."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from support_enhance import photo_like

from instaflyd.enhance import filters

EDITS = tf.constant([0.6, -0.5, 0.4, 0.5, 0.7, -0.6, 0.5, 0.8, -0.9], tf.float32)


def op_by_op(pixels: np.ndarray, raw: tf.Tensor) -> np.ndarray:
    height, width = pixels.shape[:2]
    y, x = filters.frame_coordinates(height, width)
    return filters.edit_strip(tf.constant(pixels), raw, y, x).numpy()


def test_the_compiled_edit_gives_the_pixels_of_the_uncompiled_one() -> None:
    pixels = photo_like(333, 250, seed=4)
    compiled = filters.apply_full(pixels, EDITS).astype(int)
    reference = op_by_op(pixels, EDITS).astype(int)
    assert np.abs(compiled - pixels.astype(int)).mean() > 5  # the edits did change the photo
    difference = np.abs(compiled - reference)
    assert difference.max() <= 1 and difference.mean() < 0.01
