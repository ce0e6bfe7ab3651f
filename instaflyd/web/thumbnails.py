"""Small JPEG previews of captured images and drop-folder photos, for the status page.

Only files inside the folders the caller allows are ever read: the path is resolved (symlinks
and "..") first, so a crafted job row or URL cannot make the page serve another file. Images are
opened through `instaflyd.imaging.open_image` with the caller's pixel limit, so a picture that
claims too many pixels is refused before it is decoded.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterable
from pathlib import Path

from PIL import ImageOps

from instaflyd.imaging import open_image

THUMBNAIL_SIDE = 360


class NotAllowed(Exception):
    """The file is outside the allowed folders, or is not there."""


def allowed_file(path: str | Path, roots: Iterable[Path]) -> Path:
    """`path` resolved, if it is an existing file inside one of `roots`; else NotAllowed."""
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        raise NotAllowed(f"{path} is outside the store's folders")
    if not resolved.is_file():
        raise NotAllowed(f"{path} does not exist")
    return resolved


def thumbnail_jpeg(path: Path, max_pixels: int) -> bytes:
    """A JPEG at most THUMBNAIL_SIDE pixels on its longer side, upright (EXIF orientation).

    Raises instaflyd.imaging.TooManyPixels over `max_pixels`, OSError when it is no image."""
    stat = path.stat()
    return _thumbnail(str(path), stat.st_mtime_ns, stat.st_size, max_pixels)


@functools.lru_cache(maxsize=128)
def _thumbnail(path: str, _mtime_ns: int, _size: int, max_pixels: int) -> bytes:
    with open_image(path, max_pixels) as image:
        image.draft("RGB", (THUMBNAIL_SIDE * 2, THUMBNAIL_SIDE * 2))  # fast JPEG downscale
        upright = ImageOps.exif_transpose(image).convert("RGB")
    upright.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    out = io.BytesIO()
    upright.save(out, "JPEG", quality=82, optimize=True)
    return out.getvalue()
