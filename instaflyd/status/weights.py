"""The ImageNet VGG16 notop weights file: where it lives and whether it is the right one.

Only the standard library here: the supervisor, the status page and `stats` ask for the status
without loading TensorFlow. Fetching and importing the file (`instaflyd weights fetch|import`)
are in `instaflyd.model.weights`, which verifies it with the same constants.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from instaflyd.config import Config

WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_BYTES = 58_889_256
WEIGHTS_MD5 = "6d6bbae143d832006294945121d1f1fc"


@dataclass(frozen=True)
class WeightsStatus:
    setting: str  # model.weights: imagenet | none | a path
    path: str | None  # the file that setting reads, if any
    present: bool
    ok: bool  # usable for training: present and verified, or random init asked for
    message: str  # one sentence for people, including how to fix it

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def imagenet_weights_path(config: Config) -> Path:
    return config.weights_dir / WEIGHTS_FILE


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
        return WeightsStatus(
            "imagenet", str(path), False, False,
            f"the ImageNet VGG16 weights are missing ({path}); run 'instaflyd weights fetch' "
            f"where the box has internet, or 'instaflyd weights import FILE' with a copy of "
            f"{WEIGHTS_FILE}",
        )  # fmt: skip
    if not imagenet_file_is_genuine(path):
        return WeightsStatus(
            "imagenet", str(path), True, False,
            f"{path} is not the published ImageNet VGG16 notop file (size or md5 differ); "
            "fetch or import it again",
        )  # fmt: skip
    return WeightsStatus("imagenet", str(path), True, True, "ImageNet VGG16 weights present")


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
