"""CDN response bodies -> verified images: only what Pillow recognises as a whole image is kept.

A CDN answers error pages, placeholders and videos too; none of those may become a post's image.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

# The formats Instagram's CDN serves for post images, and the file extension each is stored with.
FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


class ImageRejected(ValueError):
    """A body that is not an image we keep; the message says why."""


@dataclass(frozen=True)
class VerifiedImage:
    data: bytes
    ext: str
    width: int
    height: int

    @property
    def area(self) -> int:
        return self.width * self.height


def verify_image(data: bytes) -> VerifiedImage:
    """Check the bytes with Pillow (format, size, structure) without decoding the pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind, (width, height) = image.format, image.size
                image.verify()
    except Exception as exc:  # Pillow raises many types for "not an image"
        raise ImageRejected(f"not an image Pillow can read: {type(exc).__name__}") from None
    if kind not in FORMATS:
        raise ImageRejected(f"{kind} images are not kept")
    if width < 1 or height < 1:
        raise ImageRejected("empty image")
    return VerifiedImage(data, FORMATS[kind], width, height)
