"""The feature cache: the frozen part's output for each image, computed once, reused by every run.

Features live in `features/<key>/<sha[:2]>/<sha256>.npz` in the compact form of
`feature_codec`, where the key names the backbone, the input size, the frozen weights'
fingerprint and the file format. Change any of them and the key changes: the old folder is
deleted and the features are computed again. Each file is written atomically, so a killed
trainer leaves only complete files (and hidden temps, cleaned later).

The folder has a size budget (`train.feature_cache_max_gb`): a write that would take it over the
budget is refused (the post is left out of that run, and the report counts it), so the cache
never exceeds it; `feature_budget` decides which posts' features are kept when it is full.

Training reads them back a batch at a time (`CachedFeatures`): at 320 px each post's features
take about 400 kB decoded, so a box that has captured for a year could not hold them all in
memory at once. Missing features are computed a few images at a time (`FROZEN_BATCH_PIXELS`):
VGG16's first layers hold 52 MB of activations per 320 px image.

The folder's `key.json` also records the frozen part's `source` (what its values are made
from) and `tail_init.weights` holds block5_conv3's initial weights: `find_record` gives them back
to a later run (`FrozenRecord`), which then knows the folder without building VGG16, and builds
it only if some post's features are missing.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instaflyd.config import Config
from instaflyd.fsutil import TEMP_PREFIX, atomic_write_bytes, atomic_write_text, remove_stale_temps
from instaflyd.model import feature_codec
from instaflyd.model.backbone import BACKBONE, Backbone, FrozenPart, FrozenRecord
from instaflyd.model.errors import ModelLoadError
from instaflyd.model.inputs import ImageReadError, load_image, load_images

log = logging.getLogger("instafly.model.features")

KEY_FILE = "key.json"
TAIL_INIT_FILE = "tail_init.weights"  # an .npz archive; not *.npz, which names features
FROZEN_BATCH_PIXELS = 320 * 320  # images through the frozen part at once: 1 at 320 px, 25 at 64


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
    over_budget: list[int]  # rows not cached: the cache was full (their features are zeros)

    @property
    def left_out(self) -> list[int]:
        """Rows training must leave out."""
        return sorted(self.unreadable + self.over_budget)


@dataclass(frozen=True)
class CachedFile:
    bytes: int
    mtime: float  # when its features were computed


class FeatureCache:
    """Cached frozen-part features of one backbone at one input size."""

    def __init__(
        self, root: Path, backbone: Backbone | FrozenPart, max_bytes: int | None = None
    ) -> None:
        self.backbone = backbone
        self.key = f"{BACKBONE}-{backbone.input_size}-{backbone.fingerprint[:16]}-q8"
        self.folder = root / self.key
        self.max_bytes = max_bytes  # None: no budget
        self._used: int | None = None  # bytes in the folder, counted on first need

    def path_for(self, sha256: str) -> Path:
        return self.folder / sha256[:2] / f"{sha256}{feature_codec.SUFFIX}"

    def inventory(self) -> dict[str, CachedFile]:
        """Every cached file by image sha256, with its size and time (one directory scan)."""
        files: dict[str, CachedFile] = {}
        if not self.folder.is_dir():
            return files
        for sub in os.scandir(self.folder):
            if not sub.is_dir():
                continue
            for entry in os.scandir(sub.path):
                name = entry.name
                if name.endswith(feature_codec.SUFFIX) and not name.startswith(TEMP_PREFIX):
                    try:
                        stat = entry.stat()
                    except FileNotFoundError:
                        continue
                    files[name[: -len(feature_codec.SUFFIX)]] = CachedFile(
                        stat.st_size, stat.st_mtime
                    )
        self._used = sum(file.bytes for file in files.values())
        return files

    def used_bytes(self) -> int:
        """Bytes the cached files take (counted once, then kept up to date by this object)."""
        if self._used is None:
            self.inventory()
        return self._used or 0

    def remove(self, shas: Collection[str]) -> int:
        """Delete these images' cached features; returns the bytes freed."""
        freed = 0
        for sha256 in shas:
            path = self.path_for(sha256)
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            freed += size
        if self._used is not None:
            self._used -= freed
        return freed

    def features(self, images: Sequence[CachedImage]) -> tuple[CachedFeatures, CacheReport]:
        """(N, S/16, S/16, 512) float16 for `images`, computing only those not cached yet.

        An image that cannot be decoded gets zeros; the report lists its row as unreadable. So
        does an image whose features would take the cache over its budget (`over_budget`).
        """
        self.claim_folder()
        missing = [i for i, image in enumerate(images) if not self._is_cached(image.sha256)]
        unreadable: list[int] = []
        over_budget: list[int] = []
        batch = max(1, FROZEN_BATCH_PIXELS // self.backbone.input_size**2)
        for start in range(0, len(missing), batch):
            rows, pixels = [], []
            for i in missing[start : start + batch]:
                try:
                    pixels.append(load_image(images[i].path, self.backbone.input_size))
                    rows.append(i)
                except ImageReadError as exc:
                    log.warning("%s; its post is left out of training", exc)
                    unreadable.append(i)
            if rows:
                for i, value in zip(rows, self._frozen(np.stack(pixels)), strict=True):
                    if not self._write(images[i].sha256, value):
                        over_budget.append(i)
        if over_budget:
            log.warning(
                "the feature cache is full (%.2f GB): %d posts left out of this run",
                (self.max_bytes or 0) / 1e9, len(over_budget),
            )  # fmt: skip
        left_out = set(unreadable) | set(over_budget)
        computed = len(missing) - len(left_out)
        shas = [None if i in left_out else image.sha256 for i, image in enumerate(images)]
        report = CacheReport(computed, len(images) - len(missing), unreadable, over_budget)
        return CachedFeatures(self, shas), report

    def compute(self, paths: Sequence[Path]) -> np.ndarray:
        """The frozen part's output for image files, without the cache, as float16."""
        return self._frozen(load_images(paths, self.backbone.input_size))

    def _frozen(self, pixels: np.ndarray) -> np.ndarray:
        try:
            out = self.backbone.forward(pixels.astype(np.float32))
        except ModelLoadError:  # the record lied: these features are not this network's
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        return np.asarray(out, dtype=np.float16)

    def _is_cached(self, sha256: str) -> bool:
        """A complete file (a damaged one is computed again); its zip directory says so without
        decoding the values."""
        return feature_codec.is_complete(self.path_for(sha256))

    def _read(self, sha256: str) -> np.ndarray | None:
        path = self.path_for(sha256)
        try:
            value = feature_codec.decode(path)
        except feature_codec.DECODE_ERRORS:
            return None  # absent, or unreadable: computed again and rewritten
        return value if value.shape == self.backbone.feature_shape else None

    def _write(self, sha256: str, value: np.ndarray) -> bool:
        """Cache one image's features unless that would take the folder over its budget."""
        data = feature_codec.encode(value)
        path = self.path_for(sha256)
        try:
            replaced = path.stat().st_size
        except FileNotFoundError:
            replaced = 0
        used = self.used_bytes() - replaced
        if self.max_bytes is not None and used + len(data) > self.max_bytes:
            return False
        atomic_write_bytes(path, data)
        self._used = used + len(data)
        return True

    def claim_folder(self) -> None:
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
        if _read_record(self.folder) is not None:
            return
        if self.backbone.source:  # what a later run finds it by, and its tail's start
            tail_conv = self.backbone.tail_conv_weights  # (builds a FrozenPart without a record)
            buffer = io.BytesIO()
            np.savez(buffer, kernel=tail_conv[0], bias=tail_conv[1])
            atomic_write_bytes(self.folder / TAIL_INIT_FILE, buffer.getvalue())
        elif (self.folder / KEY_FILE).is_file():
            return  # a backbone built without its source: the key as it is will do
        key = {
            "backbone": BACKBONE,
            "input_size": self.backbone.input_size,
            "weights": self.backbone.weights,
            "fingerprint": self.backbone.fingerprint,
            "source": self.backbone.source,
            "format": feature_codec.FORMAT,
            "shape": list(self.backbone.feature_shape),
        }
        atomic_write_text(self.folder / KEY_FILE, json.dumps(key, indent=2) + "\n")


def frozen_part(config: Config, weights: str, input_size: int) -> FrozenPart:
    """The trainer's frozen part, knowing what an earlier run's feature cache recorded about it
    (so nothing is built while every feature is cached)."""
    part = FrozenPart(config, weights, input_size)
    part.recall(find_record(config.features_dir, part.source, input_size))
    return part


def find_record(root: Path, source: str, input_size: int) -> FrozenRecord | None:
    """The record of a cache folder under `root` made by the frozen part from `source` at
    `input_size`, in the current file format; None if there is none."""
    if not root.is_dir():
        return None
    for folder in root.iterdir():
        record = _read_record(folder)
        if record is not None and record[0] == (source, input_size):
            return record[1]
    return None


def _read_record(folder: Path) -> tuple[tuple[str, int], FrozenRecord] | None:
    """((source, input size), record) from a folder's key and tail_init.weights, if complete."""
    try:
        key = json.loads((folder / KEY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    tail_init = folder / TAIL_INIT_FILE
    if (
        not isinstance(key, dict)
        or key.get("backbone") != BACKBONE
        or key.get("format") != feature_codec.FORMAT
        or not isinstance(key.get("source"), str)
        or not key["source"]
        or not isinstance(key.get("fingerprint"), str)
        or not isinstance(key.get("input_size"), int)
        or not tail_init.is_file()
    ):
        return None
    return (key["source"], key["input_size"]), FrozenRecord(
        key["source"], key["fingerprint"], tail_init
    )
