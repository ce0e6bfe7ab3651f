"""The feature cache: the frozen part's output for each image, computed once, reused by every run.

Features live in `features/<key>/<sha[:2]>/<sha256>.npy` as float16, where the key names the
backbone, the input size and the frozen weights' fingerprint. Change any of them and the key
changes: the old folder is deleted and the features are computed again. Each file is written
atomically, so a killed trainer leaves only complete files (and hidden temps, cleaned later).
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instaflyd.fsutil import TEMP_PREFIX, atomic_write_bytes, atomic_write_text, remove_stale_temps
from instaflyd.model.backbone import BACKBONE, Backbone
from instaflyd.model.inputs import ImageReadError, load_image, load_images

log = logging.getLogger("instafly.model.features")

KEY_FILE = "key.json"
BATCH = 16


@dataclass(frozen=True)
class CachedImage:
    sha256: str
    path: Path  # the image file, read only when its features are not cached yet


@dataclass(frozen=True)
class CacheReport:
    computed: int
    reused: int
    unreadable: list[int]  # rows whose image could not be decoded (their features are zeros)


class FeatureCache:
    """Cached frozen-part features of one backbone at one input size."""

    def __init__(self, root: Path, backbone: Backbone) -> None:
        self.backbone = backbone
        self.key = f"{BACKBONE}-{backbone.input_size}-{backbone.fingerprint[:16]}"
        self.folder = root / self.key

    def path_for(self, sha256: str) -> Path:
        return self.folder / sha256[:2] / f"{sha256}.npy"

    def features(self, images: Sequence[CachedImage]) -> tuple[np.ndarray, CacheReport]:
        """(N, S/16, S/16, 512) float16 for `images`, computing only those not cached yet.

        An image that cannot be decoded gets zeros; the report lists its row as unreadable.
        """
        self._claim_folder()
        out = np.zeros((len(images), *self.backbone.feature_shape), dtype=np.float16)
        missing = []
        for i, image in enumerate(images):
            cached = self._read(image.sha256)
            if cached is None:
                missing.append(i)
            else:
                out[i] = cached
        unreadable = []
        for start in range(0, len(missing), BATCH):
            rows, pixels = [], []
            for i in missing[start : start + BATCH]:
                try:
                    pixels.append(load_image(images[i].path, self.backbone.input_size))
                    rows.append(i)
                except ImageReadError as exc:
                    log.warning("%s; its post is left out of training", exc)
                    unreadable.append(i)
            if rows:
                for i, value in zip(rows, self._frozen(np.stack(pixels)), strict=True):
                    self._write(images[i].sha256, value)
                    out[i] = value
        computed = len(missing) - len(unreadable)
        return out, CacheReport(computed, len(images) - len(missing), unreadable)

    def compute(self, paths: Sequence[Path]) -> np.ndarray:
        """The frozen part's output for image files, without the cache, as float16."""
        return self._frozen(load_images(paths, self.backbone.input_size))

    def _frozen(self, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(self.backbone.forward(pixels.astype(np.float32)), dtype=np.float16)

    def _read(self, sha256: str) -> np.ndarray | None:
        path = self.path_for(sha256)
        try:
            value = np.load(path, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError):
            return None  # absent, or unreadable: computed again and rewritten
        return value if value.shape == self.backbone.feature_shape else None

    def _write(self, sha256: str, value: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        atomic_write_bytes(self.path_for(sha256), buffer.getvalue())

    def _claim_folder(self) -> None:
        """Make this key's folder, and delete other keys' folders: their features are stale."""
        root = self.folder.parent
        if root.is_dir():
            for other in root.iterdir():
                if other != self.folder and other.is_dir() and (other / KEY_FILE).is_file():
                    shutil.rmtree(other, ignore_errors=True)
                elif other.name.startswith(TEMP_PREFIX):
                    other.unlink(missing_ok=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        for sub in self.folder.iterdir():
            if sub.is_dir():
                remove_stale_temps(sub)
        if (self.folder / KEY_FILE).is_file():
            return
        key = {
            "backbone": BACKBONE,
            "input_size": self.backbone.input_size,
            "weights": self.backbone.weights,
            "fingerprint": self.backbone.fingerprint,
            "dtype": "float16",
            "shape": list(self.backbone.feature_shape),
        }
        atomic_write_text(self.folder / KEY_FILE, json.dumps(key, indent=2) + "\n")
