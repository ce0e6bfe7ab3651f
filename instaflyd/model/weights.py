"""Fetching and importing the ImageNet VGG16 notop weights file (`instaflyd weights fetch|import`).

Fetching uses Keras's downloader, imported only then; both verify the file (size and md5, the
constants in `instaflyd.status.weights`) before it takes its final name. Whether the file is
there and genuine is `instaflyd.status.weights`, which the supervisor and the page read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
from pathlib import Path

from instaflyd.config import Config
from instaflyd.fsutil import TEMP_PREFIX, atomic_writer
from instaflyd.status import weights as published
from instaflyd.status.weights import (
    WEIGHTS_FILE,
    WeightsStatus,
    imagenet_file_is_genuine,
    imagenet_status,
    imagenet_weights_path,
)


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
                    file_hash=published.WEIGHTS_MD5,
                    hash_algorithm="md5",
                    cache_dir=temp,
                    cache_subdir="download",
                )
            )
        except ValueError as exc:  # Keras: "Incomplete or corrupted file detected. ..."
            raise WeightsError(
                f"the file at {config.model.weights_url} is not the ImageNet VGG16 notop file "
                f"(md5 mismatch, expected {published.WEIGHTS_MD5}): {exc}"
            ) from exc
        except Exception as exc:  # Keras raises a bare Exception for URL failures
            raise WeightsError(f"cannot download {config.model.weights_url}: {exc}") from exc
        size = downloaded.stat().st_size
        if size != published.WEIGHTS_BYTES:
            raise WeightsError(
                f"the file at {config.model.weights_url} has {size:,} bytes, "
                f"not the {published.WEIGHTS_BYTES:,} of the ImageNet VGG16 notop file"
            )
        os.replace(downloaded, target)
    return imagenet_status(config)


def import_weights(config: Config, source: Path) -> WeightsStatus:
    """Copy a local copy of the ImageNet notop file into place, checking size and md5 on the way."""
    try:
        size = source.stat().st_size
    except OSError as exc:
        raise WeightsError(f"cannot read {source}: {exc.strerror}") from exc
    if size != published.WEIGHTS_BYTES:
        raise WeightsError(
            f"{source} has {size:,} bytes; the ImageNet VGG16 notop file ({WEIGHTS_FILE}) "
            f"has {published.WEIGHTS_BYTES:,}"
        )
    digest = hashlib.md5(usedforsecurity=False)
    with source.open("rb") as reader, atomic_writer(imagenet_weights_path(config)) as writer:
        for block in iter(lambda: reader.read(1 << 20), b""):
            digest.update(block)
            writer.write(block)
        if digest.hexdigest() != published.WEIGHTS_MD5:
            raise WeightsError(
                f"{source} is not the ImageNet VGG16 notop file: md5 {digest.hexdigest()}, "
                f"expected {published.WEIGHTS_MD5}"
            )
    return imagenet_status(config)
