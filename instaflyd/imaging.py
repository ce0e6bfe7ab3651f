"""The one place Instafly opens an image, with one rule: the pixels are counted before any is
decoded.

Every decoder goes through `open_image`: capture's check of CDN bodies, the status page's
thumbnails, the model's inputs and enhancement. The size comes from the header, so a small file
that claims a huge picture (a 280 KB PNG of 9,400 x 9,400 decodes to 350 MB) is refused for the
price of reading its header. Two limits, each used wherever its images go:

- `CAPTURED_MAX_PIXELS` for what capture takes from Instagram, which serves at most
  1440 x 1800 (2.6 MP): capture refuses more, and what reads captured images (training,
  their thumbnails) holds them to the same limit. Not configurable: Instagram decides it.
- the photo limit, `enhance.max_pixels` in the config (phones take 12-50 MP photos): drop-folder
  photos, their thumbnails, `instaflyd score`.

Pillow's own bomb limit is a module global; it is lifted only while a header is read, under a
lock, since this limit replaces it.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pillow_heif
from PIL import Image

pillow_heif.register_heif_opener()

CAPTURED_MAX_PIXELS = 8_000_000

_PILLOW_LIMIT_LOCK = threading.Lock()


class TooManyPixels(ValueError):
    """The image claims more pixels than the limit; nothing was decoded."""

    def __init__(self, width: int, height: int, max_pixels: int) -> None:
        super().__init__(
            f"image is {width * height:,} pixels ({width:,} x {height:,}),"
            f" over the limit of {max_pixels:,}"
        )
        self.width, self.height, self.max_pixels = width, height, max_pixels


@contextlib.contextmanager
def open_image(source: str | Path | bytes | BinaryIO, max_pixels: int) -> Iterator[Image.Image]:
    """The image opened lazily (header read, no pixels decoded), closed on leaving.

    Raises TooManyPixels over `max_pixels`, and what Image.open raises for a file it cannot
    read (FileNotFoundError, UnidentifiedImageError, OSError, ...).
    """
    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    with _PILLOW_LIMIT_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # checked against max_pixels right below
        try:
            image = Image.open(fp)
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise TooManyPixels(width, height, max_pixels)
        yield image
