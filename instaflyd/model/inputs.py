"""Images as the model sees them: decoded, EXIF-rotated, RGB, resized to the square input.

The whole picture is resized to `size` x `size` (no crop, so nothing the audience saw is cut
off); Instagram's aspect ratios (1.91:1 to 4:5) are close enough to square for that.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from instaflyd.imaging import CAPTURED_MAX_PIXELS, open_image


class ImageReadError(Exception):
    """An image file cannot be read; the message names the file and the reason."""


def square_copy(rgb: Image.Image, size: int) -> np.ndarray:
    """The whole frame squeezed to (size, size, 3) uint8: the one resize rule of training,
    scoring and enhancement, so all three see a photo the same way."""
    small = rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(small, dtype=np.uint8)


def load_image(path: Path, size: int, max_pixels: int = CAPTURED_MAX_PIXELS) -> np.ndarray:
    """(size, size, 3) uint8 RGB; captured images by default (training), photos with the
    photo limit (`instaflyd score`)."""
    try:
        with open_image(path, max_pixels) as image:
            return square_copy(ImageOps.exif_transpose(image).convert("RGB"), size)
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path}: no such file") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from exc


def load_images(
    paths: Sequence[Path], size: int, max_pixels: int = CAPTURED_MAX_PIXELS
) -> np.ndarray:
    """(N, size, size, 3) float32 RGB in [0, 255]: the Scorer's input."""
    batch = np.empty((len(paths), size, size, 3), dtype=np.float32)
    for i, path in enumerate(paths):
        batch[i] = load_image(path, size, max_pixels)
    return batch
