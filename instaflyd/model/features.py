"""The feature cache: the frozen part's output for each image, computed once, reused by every run.

Features live in `features/<key>/<sha[:2]>/<sha256>.npy` as float16, where the key names the
backbone, the input size and the frozen weights' fingerprint. Change any of them and the key
changes: the old folder is deleted and the features are computed again. Each file is written
atomically, so a killed trainer leaves only complete files (and hidden temps, cleaned later).
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instaflyd.fsutil import TEMP_PREFIX, atomic_write_bytes, atomic_write_text, remove_stale_temps
from instaflyd.model.backbone import BACKBONE, Backbone
from instaflyd.model.inputs import load_images

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


class FeatureCache:
    """Cached frozen-part features of one backbone at one input size."""

    def __init__(self, root: Path, backbone: Backbone) -> None:
        self.backbone = backbone
        self.key = f"{BACKBONE}-{backbone.input_size}-{backbone.fingerprint[:16]}"
        self.folder = root / self.key

    def path_for(self, sha256: str) -> Path:
        return self.folder / sha256[:2] / f"{sha256}.npy"

    def features(self, images: Sequence[CachedImage]) -> tuple[np.ndarray, CacheReport]:
        """(N, S/16, S/16, 512) float16 for `images`, computing only those not cached yet."""
        self._claim_folder()
        out = np.empty((len(images), *self.backbone.feature_shape), dtype=np.float16)
        missing = []
        for i, image in enumerate(images):
            cached = self._read(image.sha256)
            if cached is None:
                missing.append(i)
            else:
                out[i] = cached
        for start in range(0, len(missing), BATCH):
            chosen = missing[start : start + BATCH]
            computed = self.compute([images[i].path for i in chosen])
            for i, value in zip(chosen, computed, strict=True):
                self._write(images[i].sha256, value)
                out[i] = value
        return out, CacheReport(computed=len(missing), reused=len(images) - len(missing))

    def compute(self, paths: Sequence[Path]) -> np.ndarray:
        """The frozen part's output for image files, without the cache, as float16."""
        pixels = load_images(paths, self.backbone.input_size)
        return np.asarray(self.backbone.forward(pixels), dtype=np.float16)

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
