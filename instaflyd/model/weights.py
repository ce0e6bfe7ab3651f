"""The ImageNet VGG16 notop weights file: where it lives and whether it is the right one.

Only the standard library here: the supervisor, the status page and `stats` ask for the status
without loading TensorFlow. Fetching (with Keras's downloader, imported only then) and importing
the file are `instaflyd weights fetch|import`; both verify it before it takes its final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from instaflyd.config import Config
from instaflyd.fsutil import TEMP_PREFIX, atomic_writer

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


class WeightsError(Exception):
    """The weights file could not be fetched or imported; the message says why."""


def fetch_weights(config: Config) -> WeightsStatus:
    """Download the ImageNet notop file from `model.weights_url` with Keras's own downloader.

    Keras checks the md5; the file is downloaded into a hidden temp folder beside its final
    place and renamed only once it is verified. Keras's progress bar goes to stderr.
    """
    import keras

    target = imagenet_weights_path(config)
    if target.is_file() and imagenet_file_is_genuine(target):
        return imagenet_status(config)
    config.weights_dir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix=TEMP_PREFIX, dir=config.weights_dir) as temp,
        contextlib.redirect_stdout(sys.stderr),
    ):
        try:
            downloaded = Path(
                keras.utils.get_file(
                    WEIGHTS_FILE,
                    config.model.weights_url,
                    file_hash=WEIGHTS_MD5,
                    hash_algorithm="md5",
                    cache_dir=temp,
                    cache_subdir="download",
                )
            )
        except ValueError as exc:  # Keras: "Incomplete or corrupted file detected. ..."
            raise WeightsError(
                f"the file at {config.model.weights_url} is not the ImageNet VGG16 notop file "
                f"(md5 mismatch, expected {WEIGHTS_MD5}): {exc}"
            ) from exc
        except Exception as exc:  # Keras raises a bare Exception for URL failures
            raise WeightsError(f"cannot download {config.model.weights_url}: {exc}") from exc
        size = downloaded.stat().st_size
        if size != WEIGHTS_BYTES:
            raise WeightsError(
                f"the file at {config.model.weights_url} has {size:,} bytes, "
                f"not the {WEIGHTS_BYTES:,} of the ImageNet VGG16 notop file"
            )
        os.replace(downloaded, target)
    return imagenet_status(config)


def import_weights(config: Config, source: Path) -> WeightsStatus:
    """Copy a local copy of the ImageNet notop file into place, checking size and md5 on the way."""
    try:
        size = source.stat().st_size
    except OSError as exc:
        raise WeightsError(f"cannot read {source}: {exc.strerror}") from exc
    if size != WEIGHTS_BYTES:
        raise WeightsError(
            f"{source} has {size:,} bytes; the ImageNet VGG16 notop file ({WEIGHTS_FILE}) "
            f"has {WEIGHTS_BYTES:,}"
        )
    digest = hashlib.md5(usedforsecurity=False)
    with source.open("rb") as reader, atomic_writer(imagenet_weights_path(config)) as writer:
        for block in iter(lambda: reader.read(1 << 20), b""):
            digest.update(block)
            writer.write(block)
        if digest.hexdigest() != WEIGHTS_MD5:
            raise WeightsError(
                f"{source} is not the ImageNet VGG16 notop file: md5 {digest.hexdigest()}, "
                f"expected {WEIGHTS_MD5}"
            )
    return imagenet_status(config)
