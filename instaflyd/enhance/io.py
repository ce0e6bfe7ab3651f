"""Read any photo a phone or camera makes into upright 8-bit RGB, and write the enhanced JPEG.

`open_image` accepts what Pillow (with pillow-heif for HEIC) can read: JPEG, PNG, WebP, the first
page of a TIFF, the first frame of a GIF, HEIC. It applies the EXIF orientation, turns CMYK (through
its ICC profile when it has one), 16-bit, greyscale, palette and transparent images into RGB (the
transparent parts on white), and refuses what it should not decode with a reason a person
understands: an empty or non-image file, a truncated image, too many pixels (decompression bombs),
a file over the size limit. Every refusal is a `RejectedImage`. The original file is only read.

`encode_jpeg` writes the result with the original's EXIF (orientation reset to 1, since the pixels
are now upright) and its ICC profile, so the photo keeps its date, camera and colours.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageOps, UnidentifiedImageError

from instaflyd import imaging

log = logging.getLogger("instafly.enhance")

_SNIFF_BYTES = 4096
_MAX_JPEG_EXIF = 65_533 - 6  # one APP1 segment, minus its "Exif\0\0" header
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_SRGB_BYTES = _SRGB.tobytes()
# What a file that Pillow cannot identify probably is, from its first bytes.
_IMAGE_SIGNATURES = (
    (b"\x89PNG", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"II*\0", "TIFF"),
    (b"MM\0*", "TIFF"),
    (b"RIFF", "WebP"),
)
_OTHER_SIGNATURES = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
)


class RejectedImage(Exception):
    """The input cannot be enhanced; the message says why, in words a person understands."""


UNREADABLE = "cannot read the file (permission denied)"


@dataclass(frozen=True)
class LoadedImage:
    """An upright photo as (height, width, 3) uint8 RGB, with the metadata to write back."""

    pixels: np.ndarray
    exif: bytes | None  # orientation already reset to 1
    icc_profile: bytes | None  # describes `pixels` (sRGB after a CMYK/greyscale conversion)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def open_image(path: Path, *, max_pixels: int, max_file_mb: float) -> LoadedImage:
    """Read `path` into upright RGB, or raise RejectedImage saying why it cannot be used."""
    _check_file(path, max_file_mb)
    stack, image = _open(path, max_pixels)
    with stack:
        try:
            image.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise RejectedImage(_damaged(exc)) from None
        upright = ImageOps.exif_transpose(image)
        exif = _exif_upright(image)
        icc = image.info.get("icc_profile") or None
    rgb, icc = _to_rgb(upright, icc)
    return LoadedImage(np.asarray(rgb, dtype=np.uint8), exif, icc)


def encode_jpeg(
    pixels: np.ndarray, *, quality: int, exif: bytes | None, icc_profile: bytes | None
) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes carrying the given EXIF and ICC profile."""
    if exif is not None and len(exif) > _MAX_JPEG_EXIF:
        log.warning("EXIF block of %d bytes does not fit in a JPEG; writing without it", len(exif))
        exif = None
    options: dict[str, object] = {"quality": quality, "optimize": True}
    if exif:
        options["exif"] = exif
    if icc_profile:
        options["icc_profile"] = icc_profile
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def _check_file(path: Path, max_file_mb: float) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise RejectedImage("no such file") from None
    except OSError as exc:
        raise RejectedImage(f"cannot read the file: {exc.strerror}") from None
    if not path.is_file():
        raise RejectedImage("not a file")
    if size == 0:
        raise RejectedImage("not an image: the file is empty")
    if size > max_file_mb * 1_000_000:
        raise RejectedImage(
            f"file is {size / 1_000_000:,.1f} MB, over the limit of {max_file_mb:g} MB"
        )


def _open(path: Path, max_pixels: int) -> tuple[contextlib.ExitStack, Image.Image]:
    """The image opened lazily (header only) through the program's one opening function; its
    refusals as RejectedImage. Errors while the caller decodes are the caller's."""
    stack = contextlib.ExitStack()
    try:
        image = stack.enter_context(imaging.open_image(path, max_pixels))
    except imaging.TooManyPixels as exc:
        raise RejectedImage(str(exc)) from None
    except UnidentifiedImageError:
        raise RejectedImage(_unidentified(path)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise RejectedImage(_damaged(exc)) from None
    return stack, image


def _damaged(exc: BaseException) -> str:
    reason = str(exc) or type(exc).__name__
    truncated = "truncated" in reason.lower() or isinstance(exc, EOFError)
    return f"{'truncated' if truncated else 'damaged'} image: {reason}"


def _unidentified(path: Path) -> str:
    """Why Pillow could not identify the file: a damaged image, or what the file is instead."""
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    for signature, name in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return f"damaged image: the file starts like a {name} but its header is cut or corrupt"
    for signature, name in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return f"not an image: the file is {name}"
    if head[4:8] == b"ftyp":
        return "not an image: the file is a video or a format this box cannot read"
    if _is_text(head):
        return "not an image: the file is a text document"
    return "not an image: the file is in a format this box cannot read"


def _is_text(head: bytes) -> bool:
    if b"\0" in head:
        return False
    for cut in range(4):  # the sample may end inside a multi-byte character
        try:
            head[: len(head) - cut].decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False


def _exif_upright(image: Image.Image) -> bytes | None:
    """The image's EXIF with Orientation = 1 (the pixels will be transposed to match)."""
    exif = image.getexif()
    if not exif:
        return None
    if ExifTags.Base.Orientation in exif:
        exif[ExifTags.Base.Orientation] = 1
    return exif.tobytes()


def _to_rgb(image: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """8-bit RGB pixels and the ICC profile that describes them."""
    if image.mode in (*_SIXTEEN_BIT_MODES, "I", "F"):
        image = _to_8bit_grey(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        image = _on_white(image)
    profile = _read_profile(icc)
    space = profile.profile.xcolor_space.strip() if profile else None
    if image.mode == "RGB":
        return image, icc if space == "RGB" else None
    if profile is not None and (space, image.mode) in (("CMYK", "CMYK"), ("GRAY", "L")):
        converted = ImageCms.profileToProfile(
            image,
            profile,
            _SRGB,
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
            outputMode="RGB",
            flags=ImageCms.Flags.BLACKPOINTCOMPENSATION,
        )
        assert converted is not None
        return converted, _SRGB_BYTES
    try:
        return image.convert("RGB"), None
    except ValueError as exc:
        raise RejectedImage(f"unsupported colour mode {image.mode}: {exc}") from None


def _peak(values: np.ndarray) -> float:
    """The largest value, at least 0 (an empty image: 0). Written without `max(initial=...)`,
    whose type numpy 2.4 and 2.5 (Python 3.11 and 3.12+) describe differently."""
    return max(0.0, float(values.max())) if values.size else 0.0


def _to_8bit_grey(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float greyscale -> 8-bit, scaled (not clipped) to 0..255."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode in _SIXTEEN_BIT_MODES:
        top = 65535.0
    elif image.mode == "F":
        top = 1.0 if _peak(values) <= 1.0 else 255.0
    else:  # "I": 16-bit PNG and TIFF data often arrive in 32-bit integer mode
        peak = _peak(values)
        top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else float(peak)
    scaled = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled)


def _on_white(image: Image.Image) -> Image.Image:
    """Composite a transparent image on a white background."""
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _read_profile(icc: bytes | None) -> ImageCms.ImageCmsProfile | None:
    if not icc:
        return None
    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ImageCms.PyCMSError):
        log.warning("ignoring an unreadable ICC profile of %d bytes", len(icc))
        return None
