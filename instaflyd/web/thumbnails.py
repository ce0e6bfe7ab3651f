"""Small JPEG previews of captured images and drop-folder photos, for the status page.

Only files inside the folders the caller allows are ever read: the path is resolved (symlinks
and "..") first, so a crafted job row or URL cannot make the page serve another file.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterable
from pathlib import Path

import pillow_heif
from PIL import Image, ImageOps

THUMBNAIL_SIDE = 360

pillow_heif.register_heif_opener()


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


def thumbnail_jpeg(path: Path) -> bytes:
    """A JPEG at most THUMBNAIL_SIDE pixels on its longer side, upright (EXIF orientation)."""
    stat = path.stat()
    return _thumbnail(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=128)
def _thumbnail(path: str, _mtime_ns: int, _size: int) -> bytes:
    with Image.open(path) as image:
        image.draft("RGB", (THUMBNAIL_SIDE * 2, THUMBNAIL_SIDE * 2))  # fast JPEG downscale
        upright = ImageOps.exif_transpose(image).convert("RGB")
    upright.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    out = io.BytesIO()
    upright.save(out, "JPEG", quality=82, optimize=True)
    return out.getvalue()
