"""`instaflyd generate`: the most insta-bae image, grown from noise, as the 2017 project did.

The start is grey with faint random noise at the smallest octave (`seed` makes it repeatable);
the `pixels` ascent then runs its octaves with nothing to re-inject. The result is a picture at
the model's input size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from instaflyd.config import Config
from instaflyd.enhance.edits import Progress
from instaflyd.enhance.io import encode_jpeg
from instaflyd.enhance.pipeline import compiled_for, score_pixels
from instaflyd.enhance.pixels import PixelAscent, octave_sizes
from instaflyd.fsutil import atomic_write_bytes
from instaflyd.model.scoring import Scorer

NOISE_LEVEL = 16.0  # standard deviation of the starting noise, in 0..255 units


@dataclass(frozen=True)
class Generated:
    output: Path
    score_start: float
    score: float
    size: int


def noise_image(size: int, seed: int) -> tf.Tensor:
    """(1, size, size, 3) mid-grey with faint Gaussian noise, in 0..255."""
    rng = np.random.default_rng(seed)
    noise = 128.0 + NOISE_LEVEL * rng.standard_normal((1, size, size, 3))
    return tf.constant(np.clip(noise, 0.0, 255.0), tf.float32)


def generate_file(
    output: Path,
    scorer: Scorer,
    config: Config,
    steps: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> Generated:
    """Grow an image from noise and write it to `output` as JPEG."""
    size = scorer.input_size
    start = noise_image(octave_sizes(size)[0], seed)
    ascent: PixelAscent = compiled_for(PixelAscent, scorer)
    image = ascent.ascend(start, steps or config.enhance.steps, seed=seed, progress=progress)
    pixels = np.rint(image[0].numpy()).astype(np.uint8)
    atomic_write_bytes(
        output,
        encode_jpeg(pixels, quality=config.enhance.jpeg_quality, exif=None, icc_profile=None),
    )
    return Generated(
        output=output,
        score_start=score_pixels(scorer, tf.image.resize(start, (size, size))),
        score=score_pixels(scorer, tf.constant(pixels[None], tf.float32)),
        size=size,
    )
