"""The feature cache: the frozen part's output for each image, computed once, reused by every run.

Features live in `features/<key>/<sha[:2]>/<sha256>.npy` as float16, where the key names the
backbone, the input size and the frozen weights' fingerprint. Change any of them and the key
changes: the old folder is deleted and the features are computed again. Each file is written
atomically, so a killed trainer leaves only complete files (and hidden temps, cleaned later).

Training reads them back a batch at a time (`CachedFeatures`): at 320 px each post's features
take 400 kB, so a box that has captured for a year could not hold them all in memory at once.
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


class CachedFeatures:
    """The features of a list of images, read from their cache files when indexed.

    Indexing with row numbers (as `training.fit` does, one batch at a time) gives a float16
    array; an unreadable image's row is zeros. `np.asarray()` reads them all.
    """

    def __init__(self, cache: FeatureCache, shas: Sequence[str | None]) -> None:
        self.cache = cache
        self.shas = list(shas)  # None: the image could not be decoded
        self.dtype = np.dtype(np.float16)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.shas), *self.cache.backbone.feature_shape)

    def __len__(self) -> int:
        return len(self.shas)

    def __getitem__(self, rows: int | slice | np.ndarray) -> np.ndarray:
        picked = np.arange(len(self.shas))[rows]
        if np.ndim(picked) == 0:
            return self._row(int(picked))
        out = np.empty((len(picked), *self.cache.backbone.feature_shape), dtype=self.dtype)
        for n, i in enumerate(picked):
            out[n] = self._row(int(i))
        return out

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        everything = self[:]
        return everything if dtype is None else everything.astype(dtype)

    def without(self, rows: Sequence[int]) -> CachedFeatures:
        dropped = set(rows)
        return CachedFeatures(self.cache, [s for i, s in enumerate(self.shas) if i not in dropped])

    def _row(self, i: int) -> np.ndarray:
        sha256 = self.shas[i]
        if sha256 is None:
            return np.zeros(self.cache.backbone.feature_shape, dtype=self.dtype)
        value = self.cache._read(sha256)
        if value is None:
            raise FileNotFoundError(f"{self.cache.path_for(sha256)}: cached features vanished")
        return value


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

    def features(self, images: Sequence[CachedImage]) -> tuple[CachedFeatures, CacheReport]:
        """(N, S/16, S/16, 512) float16 for `images`, computing only those not cached yet.

        An image that cannot be decoded gets zeros; the report lists its row as unreadable.
        """
        self._claim_folder()
        missing = [i for i, image in enumerate(images) if not self._is_cached(image.sha256)]
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
        computed = len(missing) - len(unreadable)
        shas = [None if i in unreadable else image.sha256 for i, image in enumerate(images)]
        report = CacheReport(computed, len(images) - len(missing), unreadable)
        return CachedFeatures(self, shas), report

    def compute(self, paths: Sequence[Path]) -> np.ndarray:
        """The frozen part's output for image files, without the cache, as float16."""
        return self._frozen(load_images(paths, self.backbone.input_size))

    def _frozen(self, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(self.backbone.forward(pixels.astype(np.float32)), dtype=np.float16)

    def _is_cached(self, sha256: str) -> bool:
        """A complete file of the right shape (a damaged one is computed again); mapping the
        file checks its header and length without reading the values."""
        try:
            value = np.load(self.path_for(sha256), mmap_mode="r", allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError):
            return False
        return value.shape == self.backbone.feature_shape and value.dtype == np.float16

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
