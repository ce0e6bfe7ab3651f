"""The ImageNet VGG16 notop weights file: where it lives and whether it is the right one.

Only the standard library here: the supervisor, the status page and `stats` ask for the status
without loading TensorFlow. Fetching the file (`instaflyd weights fetch`, which the daemon runs
by itself while the file is missing) is in `instaflyd.model.weights`; it reports its progress
in `weights/fetch.json`, read here. Taking in a copy (`instaflyd weights import`, the page's
upload) is `receive_weights`. Every way in checks size and md5 before the file takes its name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Literal

from instaflyd.config import Config
from instaflyd.fsutil import atomic_writer

WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_BYTES = 58_889_256
WEIGHTS_MD5 = "6d6bbae143d832006294945121d1f1fc"
PARTIAL_SUFFIX = ".partial"
FETCH_STATE_FILE = "fetch.json"


@dataclass(frozen=True)
class DownloadProgress:
    """How the download of the weights goes: `weights/fetch.json`, read by the status page."""

    state: Literal["downloading", "failed"]
    bytes: int
    total: int
    error: str | None
    offline: bool  # failed because the box could not reach the server (or lost it midway)
    updated: float


@dataclass(frozen=True)
class WeightsStatus:
    setting: str  # model.weights: imagenet | none | a path
    path: str | None  # the file that setting reads, if any
    present: bool
    ok: bool  # usable for training: present and verified, or random init asked for
    message: str  # one sentence for people, including how to fix it
    download: DownloadProgress | None = None  # a download running or failed (imagenet only)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class WeightsError(Exception):
    """The weights file could not be fetched or imported; the message says why."""

    def __init__(self, message: str, offline: bool = False) -> None:
        super().__init__(message)
        self.offline = offline  # the box could not reach the server (or lost it midway)


def imagenet_weights_path(config: Config) -> Path:
    return config.weights_dir / WEIGHTS_FILE


def partial_path(config: Config) -> Path:
    """Where a download collects its bytes until it is complete and verified."""
    return config.weights_dir / f"{WEIGHTS_FILE}{PARTIAL_SUFFIX}"


def fetch_state_path(config: Config) -> Path:
    return config.weights_dir / FETCH_STATE_FILE


def download_progress(config: Config) -> DownloadProgress | None:
    """The last word of a download that is running or failed; None when none has started."""
    try:
        record = json.loads(fetch_state_path(config).read_text(encoding="utf-8"))
        return DownloadProgress(**record)
    except (OSError, ValueError, TypeError):
        return None


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_verified: dict[tuple[str, int, int], bool] = {}


def imagenet_file_is_genuine(path: Path) -> bool:
    """Size and md5 match the published file (the md5 is remembered per path, size and mtime)."""
    stat = path.stat()
    if stat.st_size != WEIGHTS_BYTES:
        return False
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        _verified[key] = file_md5(path) == WEIGHTS_MD5
    return _verified[key]


def imagenet_status(config: Config) -> WeightsStatus:
    """Whether the ImageNet notop file is in data_dir/weights/ and genuine, whatever the setting."""
    path = imagenet_weights_path(config)
    if not path.is_file():
        download = download_progress(config)
        return WeightsStatus(
            "imagenet", str(path), False, False, _missing_message(path, download), download
        )
    if not imagenet_file_is_genuine(path):
        return WeightsStatus(
            "imagenet", str(path), True, False,
            f"{path} is not the published ImageNet VGG16 notop file (size or md5 differ); "
            "fetch or import it again",
        )  # fmt: skip
    return WeightsStatus("imagenet", str(path), True, True, "ImageNet VGG16 weights present")


def _missing_message(path: Path, download: DownloadProgress | None) -> str:
    how = (
        f"upload {WEIGHTS_FILE} on the status page, or run 'instaflyd weights import FILE' "
        "with a copy of it"
    )
    if download is None:
        return (
            f"the ImageNet VGG16 weights are missing ({path}); run 'instaflyd weights fetch' "
            f"where the box has internet, or {how}"
        )
    done = f"{download.bytes / 1e6:.1f} of {download.total / 1e6:.1f} MB"
    if download.state == "downloading":
        return f"downloading the ImageNet VGG16 weights: {done}"
    if download.offline:
        return (
            f"this box cannot reach the internet to download the ImageNet VGG16 weights "
            f"({done} so far; it tries again by itself): {how}"
        )
    return f"the download of the ImageNet VGG16 weights failed: {download.error}; {how}"


def weights_status(config: Config) -> WeightsStatus:
    setting = config.model.weights
    if setting == "none":
        return WeightsStatus(
            setting, None, False, True,
            "random initial weights (model.weights: none): for tests and demos only; "
            "predictions mean little",
        )  # fmt: skip
    if setting == "imagenet":
        return imagenet_status(config)
    path = Path(setting)
    if not path.is_file():
        return WeightsStatus(
            setting, str(path), False, False,
            f"the weights file {path} set in model.weights does not exist",
        )  # fmt: skip
    return WeightsStatus(setting, str(path), True, True, f"weights from {path}")


def receive_weights(
    config: Config, reader: IO[bytes], name: str, size: int | None = None
) -> WeightsStatus:
    """Write the weights read from `reader` into place once their size and md5 check out.

    `size`, when known beforehand, is checked first; the bytes are counted either way, so a
    stream that says one size and sends another (an upload) is refused as well.
    """
    if size is not None and size != WEIGHTS_BYTES:
        raise WeightsError(
            f"{name} has {size:,} bytes; the ImageNet VGG16 notop file ({WEIGHTS_FILE}) "
            f"has {WEIGHTS_BYTES:,}"
        )
    digest = hashlib.md5(usedforsecurity=False)
    have = 0
    with atomic_writer(imagenet_weights_path(config)) as writer:
        for block in iter(lambda: reader.read(1 << 20), b""):
            have += len(block)
            if have > WEIGHTS_BYTES:
                break
            digest.update(block)
            writer.write(block)
        if have != WEIGHTS_BYTES:
            more = "more than " if have > WEIGHTS_BYTES else ""
            raise WeightsError(
                f"{name} is not the ImageNet VGG16 notop file ({WEIGHTS_FILE}): it has "
                f"{more}{have:,} bytes, not {WEIGHTS_BYTES:,}"
            )
        if digest.hexdigest() != WEIGHTS_MD5:
            raise WeightsError(
                f"{name} is not the ImageNet VGG16 notop file: md5 {digest.hexdigest()}, "
                f"expected {WEIGHTS_MD5}"
            )
    fetch_state_path(config).unlink(missing_ok=True)
    partial_path(config).unlink(missing_ok=True)
    return imagenet_status(config)
