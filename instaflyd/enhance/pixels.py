"""The `pixels` mode: the 2017 method, gradient ascent on the pixels, with what works better.

The original took raw momentum steps on a 320x320 copy, which gives high-frequency noise. Here,
after keras-io's deep_dream example and Olah et al. 2017 ("Feature Visualization"):

- octaves: optimise a small image first, then larger ones, so coarse structure comes before
  detail; the detail that shrinking removed from the photo is re-injected after each octave;
- jitter: the image is shifted by a few random pixels before each step, so the change cannot
  rely on exact pixel positions (adversarial noise does);
- gradient normalisation: each step moves the pixels by `STEP_SIZE` on average, whatever the
  units and scale of the model's score;
- a total-variation penalty: its gradient, normalised the same way and weighted `TV_WEIGHT`,
  is subtracted from each step, which smooths what the ascent adds.

Each octave image is resized to the model's input size inside the loss, so every step scores a
whole S x S picture. For a photo the change found at S x S is upscaled and added to the
full-resolution original (`add_change`), so the output keeps the photo's size and detail.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from PIL import Image

from instaflyd.enhance.edits import Progress
from instaflyd.model.scoring import Scorer

OCTAVES = 3
OCTAVE_SCALE = 1.4
STEP_SIZE = 1.5  # mean change per pixel and step, in 0..255 units
JITTER = 0.03  # largest random shift, as a fraction of the octave's size
TV_WEIGHT = 0.3


def settings() -> dict[str, float]:
    """The method's settings, for the sidecar."""
    return {
        "octaves": OCTAVES,
        "octave_scale": OCTAVE_SCALE,
        "step_size": STEP_SIZE,
        "jitter": JITTER,
        "tv_weight": TV_WEIGHT,
    }


def octave_sizes(size: int) -> list[int]:
    """Smallest first, ending at `size`."""
    return [round(size / OCTAVE_SCALE**k) for k in reversed(range(OCTAVES))]


def steps_per_octave(steps: int) -> list[int]:
    """`steps` split over the octaves; the largest octave gets the remainder."""
    share, extra = divmod(steps, OCTAVES)
    return [share] * (OCTAVES - 1) + [share + extra]


def _normalised(gradient: tf.Tensor) -> tf.Tensor:
    return gradient / (tf.reduce_mean(tf.abs(gradient)) + 1e-8)


def _resize(image: tf.Tensor, size: int) -> tf.Tensor:
    return tf.image.resize(image, (size, size), antialias=True)


class PixelAscent:
    """Octave gradient ascent on the pixels for one scorer; the step is compiled once."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self._step = tf.function(self.gradient_ascent_step, reduce_retracing=True)

    def compute_loss(self, image: tf.Tensor) -> tf.Tensor:
        """The model's score of a (1, h, w, 3) image in 0..255, seen at its input size."""
        return self.scorer(_resize(image, self.scorer.input_size))[0]

    def gradient_ascent_step(
        self, image: tf.Tensor, shift: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(image)
            score = self.compute_loss(tf.roll(image, shift, axis=[1, 2]))
            variation = tf.reduce_sum(tf.image.total_variation(image))
        direction = _normalised(tape.gradient(score, image)) - TV_WEIGHT * _normalised(
            tape.gradient(variation, image)
        )
        return tf.clip_by_value(image + STEP_SIZE * direction, 0.0, 255.0), score

    def ascend(
        self,
        start: tf.Tensor,
        steps: int,
        *,
        original: tf.Tensor | None = None,
        seed: int = 0,
        progress: Progress | None = None,
    ) -> tf.Tensor:
        """Run the octaves from `start` (1, s, s, 3); returns (1, S, S, 3) in 0..255.

        With `original` (1, S, S, 3), the detail lost by shrinking it is re-injected after each
        octave, as deep_dream does.
        """
        rng = np.random.default_rng(seed)
        sizes = octave_sizes(self.scorer.input_size)
        shrunk_original = _resize(original, sizes[0]) if original is not None else None
        image, done = start, 0
        for size, octave_steps in zip(sizes, steps_per_octave(steps), strict=True):
            image = _resize(image, size)
            reach = max(1, round(JITTER * size))
            for _ in range(octave_steps):
                shift = tf.constant(rng.integers(-reach, reach + 1, size=2), tf.int32)
                image, score = self._step(image, shift)
                done += 1
                if progress is not None:
                    progress(done, steps, float(score))
            if original is not None and shrunk_original is not None:
                same_size_original = _resize(original, size)
                image += same_size_original - _resize(shrunk_original, size)
                shrunk_original = same_size_original
        return tf.clip_by_value(image, 0.0, 255.0)


def add_change(pixels: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Upscale the change `after - before` (S, S, 3) to the photo's size and add it to `pixels`.

    One channel at a time, so a 12-megapixel photo needs tens of megabytes, not gigabytes.
    """
    height, width = pixels.shape[:2]
    change = (after - before).astype(np.float32)
    out = np.empty_like(pixels)
    for channel in range(3):
        upscaled = Image.fromarray(np.ascontiguousarray(change[..., channel])).resize(
            (width, height), Image.Resampling.BICUBIC
        )
        total = pixels[..., channel] + np.asarray(upscaled)
        out[..., channel] = np.clip(np.rint(total), 0, 255)
    return out
