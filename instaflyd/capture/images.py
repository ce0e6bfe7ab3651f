"""CDN response bodies -> verified images: only what Pillow recognises as a whole image is kept,
and only the bytes the image needs.

A CDN answers error pages, placeholders and videos too; none of those may become a post's image.
An image over `CAPTURED_MAX_PIXELS` is refused (Instagram serves far less), and so is one whose
file is larger than its pixels could need. Bytes after the image's own end (past a JPEG's EOI, a
PNG's IEND, a WebP's RIFF length) are dropped, so what waits in memory and what is stored is the
image alone.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from instaflyd.imaging import CAPTURED_MAX_PIXELS, TooManyPixels, open_image

# The formats Instagram's CDN serves for post images, and the file extension each is stored with.
FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
# An image file never needs more than uncompressed RGBA plus its metadata.
BYTES_PER_PIXEL = 4
METADATA_BYTES = 256 * 1024


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
        with open_image(data, CAPTURED_MAX_PIXELS) as image:
            kind, (width, height) = image.format, image.size
            image.verify()
    except TooManyPixels as exc:
        raise ImageRejected(str(exc)) from None
    except Exception as exc:  # Pillow raises many types for "not an image"
        raise ImageRejected(f"not an image Pillow can read: {type(exc).__name__}") from None
    if kind not in FORMATS:
        raise ImageRejected(f"{kind} images are not kept")
    if width < 1 or height < 1:
        raise ImageRejected("empty image")
    data = data[: image_end(data, kind)]
    if len(data) > width * height * BYTES_PER_PIXEL + METADATA_BYTES:
        raise ImageRejected(f"{len(data):,} bytes is more than a {width} x {height} image needs")
    return VerifiedImage(data, FORMATS[kind], width, height)


def image_end(data: bytes, kind: str) -> int:
    """Where the image's own bytes end; raises ImageRejected if its end is missing."""
    try:
        end = {"JPEG": _jpeg_end, "PNG": _png_end, "WEBP": _webp_end}[kind](data)
    except (IndexError, ValueError, struct.error):  # ValueError: bytes.index found no marker
        end = None
    if end is None or end > len(data):
        raise ImageRejected(f"truncated {kind} image: its end is missing")
    return end


def _jpeg_end(data: bytes) -> int | None:
    """After the EOI marker, walking segments and entropy-coded scans (progressive too)."""
    position = 2  # after SOI
    while position < len(data):
        if data[position] != 0xFF:
            return None
        while data[position] == 0xFF:  # fill bytes
            position += 1
        marker = data[position]
        position += 1
        if marker == 0xD9:  # EOI
            return position
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length
            continue
        (length,) = struct.unpack_from(">H", data, position)
        position += length
        if marker == 0xDA:  # SOS: the scan runs to the next marker that is not RSTn or stuffing
            while True:
                position = data.index(b"\xff", position)
                following = data[position + 1]
                if following == 0 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    position += 1 if following == 0xFF else 2
                    continue
                break
    return None


def _png_end(data: bytes) -> int | None:
    """After the IEND chunk."""
    position = 8  # after the signature
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        position += 12 + length  # length, type, data, CRC
        if kind == b"IEND":
            return position
    return None


def _webp_end(data: bytes) -> int | None:
    """The RIFF container's own length (padded to even)."""
    (size,) = struct.unpack_from("<I", data, 4)
    return 8 + size + (size & 1)
