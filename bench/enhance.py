"""Benchmark: the 2017 pixel ascent against `edits` (and the improved `pixels`), side by side.

One process, one model, one photo:

- the model: the product's scorer (`instaflyd.model.backbone`: VGG16, block5_conv3 and a small
  head) at 320x320 with random weights, so that it runs offline;
- the photo: a generated 12-megapixel landscape (sky, sun, hills, houses, texture, sensor noise),
  saved as JPEG;
- "2017": the original method, momentum ascent on the pixels of a 320x320 copy
  (v = gamma*v + lr*grad; x += v, lr 10, gamma 0.01) for 100 steps, its gradient step compiled
  once (the 2017 code rebuilt it every step; that is not what is compared here);
- "edits": `enhance_file` with the default steps, written at full resolution;
- "pixels": `enhance_file` in the improved pixel mode, for reference.

Each is timed from the JPEG on disk to the JPEG written. Printed for each: seconds, the score
before and after (of the written file, at the model's input size), output resolution, and the
structural similarity (SSIM, `tf.image.ssim`) of output to input at 320x320 and at 1000x750,
and the most memory the method needed on top of what the process held before it.

    .venv/bin/python bench/enhance.py [--megapixels 12] [--steps-2017 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import tensorflow as tf
from PIL import Image

from instaflyd.config import Config, build_config
from instaflyd.enhance.io import encode_jpeg, open_image
from instaflyd.enhance.pipeline import enhance_file, model_copy, score_pixels
from instaflyd.model.backbone import build_backbone, build_scorer_model, build_tail
from instaflyd.model.registry import KerasScorer

SIZE = 320
LEARNING_RATE_2017 = 10.0
GAMMA_2017 = 0.01


def random_vgg16_scorer(config: Config) -> KerasScorer:
    """The product's scorer (VGG16 frozen part + block5_conv3 + head) with random weights."""
    backbone = build_backbone(config, "none", SIZE, seed=0)
    tail = build_tail(seed=0, conv_weights=backbone.tail_conv_weights)
    return KerasScorer(None, SIZE, build_scorer_model(backbone, tail))


def landscape(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A photo-like scene: sky, sun, hills, houses, texture at several scales, sensor noise."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]

    def texture(cells: int) -> np.ndarray:  # smooth random field in [-1, 1]
        small = rng.uniform(-1, 1, (cells * 3 // 4 + 1, cells + 1)).astype(np.float32)
        return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))

    detail = 0.5 * texture(12) + 0.3 * texture(60) + 0.2 * texture(300)
    horizon = 0.55 + 0.06 * np.sin(7 * x + 1) + 0.02 * np.sin(23 * x) + 0.02 * texture(8)[:1]
    ground = y > horizon
    depth = np.clip((y - horizon) / (1 - horizon), 0, 1)
    sun = np.exp(-((x - 0.72) ** 2 + ((y - 0.22) * 0.75) ** 2) / 0.004)
    image = np.empty((height, width, 3), np.float32)
    for channel, (sky_top, sky_low, grass, far) in enumerate(
        ((70, 190, 60, 120), (120, 210, 95, 140), (200, 230, 45, 150))
    ):
        sky = sky_top + (sky_low - sky_top) * y + 8 * detail + (255 - sky_low) * 0.8 * sun
        land = far + (grass - far) * depth**0.6 + 30 * detail * (0.4 + depth)
        image[..., channel] = np.where(ground, land, sky)
    for left, width_frac, roof in ((0.12, 0.08, (150, 60, 50)), (0.24, 0.06, (90, 90, 100)),
                                   (0.55, 0.1, (170, 150, 120))):  # fmt: skip
        x0, x1 = int(left * width), int((left + width_frac) * width)
        top, bottom = int(0.5 * height), int(0.68 * height)
        image[top:bottom, x0:x1] = (215, 205, 185)
        image[top - (x1 - x0) // 4 : top, x0:x1] = roof
        for wy in range(top + 40, bottom - 60, 90):
            for wx in range(x0 + 30, x1 - 50, 80):
                image[wy : wy + 45, wx : wx + 35] = (60, 70, 90)
    vignette = 1 - 0.25 * ((x - 0.5) ** 2 + (y - 0.5) ** 2)
    image = image * vignette[..., None] + 3 * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def original_2017(path: Path, output: Path, scorer: KerasScorer, steps: int) -> Path:
    """Momentum ascent on the pixels of a 320x320 copy; writes a 320x320 JPEG."""
    photo = open_image(path, max_pixels=200_000_000, max_file_mb=200)
    image = tf.Variable(model_copy(photo.pixels, SIZE))
    velocity = tf.Variable(tf.zeros_like(image))

    @tf.function
    def gradient_ascent_step() -> None:
        with tf.GradientTape() as tape:
            score = scorer(image)[0]
        velocity.assign(GAMMA_2017 * velocity + LEARNING_RATE_2017 * tape.gradient(score, image))
        image.assign_add(velocity)

    for _ in range(steps):
        gradient_ascent_step()
    pixels = np.clip(np.rint(image[0].numpy()), 0, 255).astype(np.uint8)
    output.write_bytes(encode_jpeg(pixels, quality=92, exif=None, icc_profile=None))
    return output


def read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def ssim(a: np.ndarray, b: np.ndarray, size: tuple[int, int]) -> float:
    """SSIM of two images, both resized to `size` (width, height)."""

    def at(pixels: np.ndarray) -> tf.Tensor:
        resized = Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS)
        return tf.constant(np.asarray(resized, np.float32)[None])

    return float(tf.image.ssim(at(a), at(b), max_val=255.0)[0])


class MemoryWatch:
    """The most memory (RSS) the process used above its level at the start, sampled every 20 ms."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> MemoryWatch:
        self._start = self._rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_mb = max(self.peak_mb, self._rss_mb() - self._start)

    @staticmethod
    def _rss_mb() -> float:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--steps-2017", type=int, default=100)
    args = parser.parse_args()

    width = round((args.megapixels * 1e6 * 4 / 3) ** 0.5)
    height = width * 3 // 4
    workdir = Path(tempfile.mkdtemp(prefix="instafly-bench-"))
    photo = workdir / "landscape.jpg"
    photo.write_bytes(
        encode_jpeg(landscape(width, height), quality=92, exif=None, icc_profile=None)
    )
    original = read(photo)
    print(
        f"photo: {width}x{height} ({width * height / 1e6:.1f} MP), {photo.stat().st_size:,} bytes"
    )

    config = build_config({"model": {"input_size": SIZE, "weights": "none"}})
    scorer = random_vgg16_scorer(config)
    before = score_pixels(scorer, model_copy(original, SIZE))  # also builds the model once
    print(f"model: VGG16 at {SIZE}, random weights; score of the photo {before:.5f}")
    print(f"edits: default steps {config.enhance.steps} (early stopping)\n")

    rows = []
    with MemoryWatch() as memory:
        started = time.perf_counter()
        out = original_2017(photo, workdir / "2017.jpg", scorer, args.steps_2017)
        seconds = time.perf_counter() - started
    rows.append((f"2017 ({args.steps_2017} steps)", seconds, out, memory.peak_mb))
    params = {}
    for mode in ("edits", "pixels"):
        with MemoryWatch() as memory:
            started = time.perf_counter()
            result = enhance_file(photo, workdir, scorer, config, mode=mode)
            seconds = time.perf_counter() - started
        rows.append((f"{mode} ({result.steps} steps)", seconds, result.output, memory.peak_mb))
        params[mode] = result.params

    print(f"{'method':<20}{'seconds':>9}{'score after':>13}{'gain':>10}{'output':>11}"
          f"{'SSIM@320':>10}{'SSIM@1000':>11}{'|change|':>10}{'+RSS MB':>9}")  # fmt: skip
    measured = {}
    small_original = model_copy(original, SIZE)
    for name, seconds, output, extra_mb in rows:
        pixels = read(output)
        small = model_copy(pixels, SIZE)
        after = score_pixels(scorer, small)
        change = float(tf.reduce_mean(tf.abs(small - small_original)))
        common = ssim(original, pixels, (SIZE, SIZE)), ssim(original, pixels, (1000, 750))
        measured[name.split()[0]] = (seconds, after - before)
        size = f"{pixels.shape[1]}x{pixels.shape[0]}"
        print(f"{name:<20}{seconds:>9.1f}{after:>13.5f}{after - before:>+10.5f}{size:>11}"
              f"{common[0]:>10.3f}{common[1]:>11.3f}{change:>10.2f}{extra_mb:>9.0f}")  # fmt: skip
    (t_old, g_old), (t_edits, g_edits) = measured["2017"], measured["edits"]
    print(f"\nedits / 2017: time {t_edits / t_old:.2f}x; score gain {g_edits:+.5f} against "
          f"{g_old:+.5f}" + (f" ({g_edits / g_old:.1f}x)" if g_old > 0 else ""))  # fmt: skip
    print(f"edits parameters: {params['edits']}")
    print("|change|: mean absolute change of the pixels at 320x320, in 0..255 units")
    print("+RSS MB: the most memory the method used above the process's level before it")
    print(f"files in {workdir}")


if __name__ == "__main__":
    main()
