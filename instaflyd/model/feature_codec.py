"""How one post's cached features are written to disk: compactly, since a box keeps tens of
thousands of them on an SD card.

The features are block5_conv2's output, after its ReLU: never negative, and many are zero. Each
channel is quantised to 8 bits against its own largest value (a zero stays exactly zero, the
largest value is exact, the others are off by at most 1/510 of the channel's maximum), and the
bytes are deflated channel by channel (within a channel's map the zeros run together).
`bench/feature_compression.py` measured the choice (README, "Feature cache"): with random
weights (half the values zero) the files are 3.5x smaller than float16 ones at 320 px, and
training on them gave the same validation Spearman as training on float16 (+0.0002).

A file is a NumPy `.npz` archive (`q`: uint8 (C, H, W), `scale`: float32 (C,)); opening it
reads only the zip directory at the end, so a truncated file is recognised without decoding it.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib

import numpy as np

FORMAT = "uint8-per-channel-deflate"
SUFFIX = ".npz"
LEVELS = 255

# What a damaged or foreign file raises while being opened or decoded.
DECODE_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)


def encode(value: np.ndarray) -> bytes:
    """(H, W, C) non-negative features -> the bytes of a compact file."""
    value = np.maximum(np.asarray(value, dtype=np.float32), 0)
    scale = value.max(axis=(0, 1)).astype(np.float32)
    safe = np.where(scale > 0, scale, 1).astype(np.float32)
    quantised = np.rint(value / safe * LEVELS).astype(np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, q=np.ascontiguousarray(quantised.transpose(2, 0, 1)), scale=scale)
    return buffer.getvalue()


def decode(source: io.BytesIO | str | os.PathLike[str]) -> np.ndarray:
    """A compact file (a path or a file object) -> (H, W, C) float16 features."""
    with np.load(source, allow_pickle=False) as archive:
        quantised, scale = archive["q"], archive["scale"]
    if quantised.dtype != np.uint8 or quantised.ndim != 3 or scale.shape != quantised.shape[:1]:
        raise ValueError("not a compact feature file")
    channels_last = quantised.transpose(1, 2, 0).astype(np.float32)
    return (channels_last * (scale / LEVELS)).astype(np.float16)


def is_complete(path: str | os.PathLike[str]) -> bool:
    """Whether a file is a whole compact archive (its zip directory names both arrays),
    without decoding it."""
    try:
        with zipfile.ZipFile(path) as archive:
            return sorted(archive.namelist()) == ["q.npy", "scale.npy"]
    except DECODE_ERRORS:
        return False
