"""Taking in a copy of the weights: `instaflyd weights import FILE` and the page's upload.

The bytes are counted and hashed while they are written to a hidden temp file; the file takes
its name only once its size and md5 are the published ones, so a wrong or cut file never
replaces anything.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import IO

from instaflyd.config import Config
from instaflyd.fsutil import atomic_writer
from instaflyd.weights import file
from instaflyd.weights.file import WeightsError
from instaflyd.weights.progress import fetch_state_path
from instaflyd.weights.status import WeightsStatus, imagenet_status


def receive_weights(
    config: Config, reader: IO[bytes], name: str, size: int | None = None
) -> WeightsStatus:
    """Write the weights read from `reader` into place once their size and md5 check out.

    `size`, when known beforehand, is checked first; the bytes are counted either way, so a
    stream that says one size and sends another (an upload) is refused as well.
    """
    expected = file.WEIGHTS_BYTES
    if size is not None and size != expected:
        raise WeightsError(
            f"{name} has {size:,} bytes; the ImageNet VGG16 notop file ({file.WEIGHTS_FILE}) "
            f"has {expected:,}"
        )
    digest = hashlib.md5(usedforsecurity=False)
    have = 0
    with atomic_writer(file.imagenet_weights_path(config)) as writer:
        for block in iter(lambda: reader.read(1 << 20), b""):
            have += len(block)
            if have > expected:
                break
            digest.update(block)
            writer.write(block)
        if have != expected:
            more = "more than " if have > expected else ""
            raise WeightsError(
                f"{name} is not the ImageNet VGG16 notop file ({file.WEIGHTS_FILE}): it has "
                f"{more}{have:,} bytes, not {expected:,}"
            )
        if digest.hexdigest() != file.WEIGHTS_MD5:
            raise WeightsError(
                f"{name} is not the ImageNet VGG16 notop file: md5 {digest.hexdigest()}, "
                f"expected {file.WEIGHTS_MD5}"
            )
    fetch_state_path(config).unlink(missing_ok=True)
    file.partial_path(config).unlink(missing_ok=True)
    return imagenet_status(config)


def import_weights(config: Config, source: Path) -> WeightsStatus:
    """Copy a local copy of the ImageNet notop file into place, checking size and md5 on the way."""
    try:
        size = source.stat().st_size
        reader = source.open("rb")
    except OSError as exc:
        raise WeightsError(f"cannot read {source}: {exc.strerror}") from exc
    with reader:
        return receive_weights(config, reader, str(source), size)
