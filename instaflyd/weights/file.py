"""The ImageNet VGG16 notop weights file itself: its name, size and md5, where a setting puts it,
and whether a copy is the genuine one.

`model.weights` is `imagenet` (the published file, in data_dir/weights/), `none` (random initial
weights: tests and demos) or a path; `weights_file` turns the setting into the file keras loads.
Only the standard library here: the supervisor and the page ask without loading TensorFlow.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from instaflyd.config import Config

WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_BYTES = 58_889_256
WEIGHTS_MD5 = "6d6bbae143d832006294945121d1f1fc"
PARTIAL_SUFFIX = ".partial"


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


def weights_file(config: Config, setting: str | None = None) -> Path | None:
    """The file a `model.weights` setting (by default the config's) reads; None for `none`
    (random initialisation)."""
    setting = config.model.weights if setting is None else setting
    if setting == "none":
        return None
    if setting == "imagenet":
        return imagenet_weights_path(config)
    return Path(setting)


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
