"""Drawing one thumbnail of an image file, bounded: in the caller's process only when it is
small to decode, otherwise in a short-lived child process with a memory limit.

`render_thumbnail(path, width, max_pixels, max_decoded_bytes)` decodes at most the pixels it
needs: a JPEG is decoded at 1/2, 1/4 or 1/8 scale (`Image.draft`), then reduced by whole steps
before it is resampled. When the pixels that decoding would still hold exceed
`max_decoded_bytes` (a 10,000 x 10,000 PNG is 400 MB decoded), it raises `TooLargeHere`
without decoding anything; the page then runs this module as a child process
(`python -m instaflyd.imaging_thumbnail PATH WIDTH MAX_PIXELS`), which limits its own address
space and CPU time first, writes the JPEG to stdout and exits, so its memory goes back at once.
The child's exit status says why it failed (see the EXIT_ constants).

Standard library and Pillow only, so the child starts in a fraction of a second.
"""

from __future__ import annotations

import io
import resource
import sys
from pathlib import Path

from PIL import Image, ImageOps

from instaflyd.imaging import TooManyPixels, open_image

BYTES_PER_PIXEL = 4  # Pillow keeps RGB, RGBA and most other modes at 4 bytes a pixel
JPEG_QUALITY = 82
ROTATED = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height
CHILD_MEMORY_BYTES = 640 * 1024 * 1024  # the child's address space, Python included
CHILD_BASE_BYTES = 96 * 1024 * 1024  # of which Python, Pillow and pillow-heif take about this
CHILD_CPU_SECONDS = 30
EXIT_TOO_MANY_PIXELS, EXIT_NOT_AN_IMAGE, EXIT_OUT_OF_MEMORY = 3, 4, 5


class TooLargeHere(Exception):
    """Decoding this image would hold more than the caller allows; nothing was decoded."""

    def __init__(self, width: int, height: int, needed: int) -> None:
        super().__init__(f"{width:,} x {height:,} pixels need {needed / 2**20:,.0f} MiB to draw")
        self.needed = needed


def render_thumbnail(
    path: str | Path, width: int, max_pixels: int, max_decoded_bytes: int | None = None
) -> bytes:
    """A JPEG at most `width` pixels wide (and 2 x `width` high), upright (EXIF orientation).

    Raises TooManyPixels over `max_pixels`, TooLargeHere when decoding would hold more than
    `max_decoded_bytes`, OSError when the file is no image."""
    with open_image(path, max_pixels) as image:
        image.draft("RGB", (width, width))  # a JPEG decodes at 1/2 to 1/8, either way up
        needed = drawing_bytes(image)
        if max_decoded_bytes is not None and needed > max_decoded_bytes:
            raise TooLargeHere(*image.size, needed)
        # Only now: a PNG's EXIF may follow its pixels, and reading it decodes them.
        box = (width, 2 * width)
        if image.getexif().get(0x0112) in ROTATED:  # stored on its side: turned after resizing
            box = (2 * width, width)
        image.thumbnail(box, reducing_gap=2.0)  # reduce by whole steps, then resample
        upright = ImageOps.exif_transpose(image)
    if upright.mode != "RGB":
        upright = upright.convert("RGB")
    out = io.BytesIO()
    upright.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


def drawing_bytes(image: Image.Image) -> int:
    """The memory drawing a thumbnail of `image` (as opened, after any draft) holds at its peak:
    the decoded pixels, twice over for an image with transparency (Pillow resizes a copy with
    premultiplied alpha)."""
    copies = 2 if image.mode in ("RGBA", "LA", "PA", "P", "RGBa", "La") else 1
    return image.size[0] * image.size[1] * BYTES_PER_PIXEL * copies


def _child(argv: list[str]) -> int:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (CHILD_CPU_SECONDS, CHILD_CPU_SECONDS))
    path, width, max_pixels = argv[0], int(argv[1]), int(argv[2])
    try:
        data = render_thumbnail(path, width, max_pixels)
    except TooManyPixels as exc:
        print(exc, file=sys.stderr)
        return EXIT_TOO_MANY_PIXELS
    except MemoryError:
        print(f"not enough memory within {CHILD_MEMORY_BYTES:,} bytes", file=sys.stderr)
        return EXIT_OUT_OF_MEMORY
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_NOT_AN_IMAGE
    sys.stdout.buffer.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
