"""Model versions on disk (`models/vNNNN/`) and loading one as a Scorer.

A version folder holds the trained tail's weights (`tail.weights.h5`), `model.json` (backbone,
input size, weights setting and the frozen part's fingerprint: what rebuilds the rest),
`metrics.json` and `config.yaml` (the config it was trained with). It is built under a hidden
temp name and renamed into place, so no half-written version is ever visible. Which version is
current is the database's word (the newest promoted row), never the folder listing.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf
import yaml

from instaflyd.config import Config
from instaflyd.fsutil import TEMP_PREFIX, atomic_directory
from instaflyd.model.backbone import (
    Backbone,
    FrozenIdentity,
    build_backbone,
    build_scorer_model,
    load_tail,
)
from instaflyd.model.errors import ModelLoadError
from instaflyd.model.manifest import VersionManifest
from instaflyd.store.versions import current_model_version, model_version_numbers
from instaflyd.weights.file import weights_file

log = logging.getLogger("instafly.model.registry")

TAIL_FILE = "tail.weights.h5"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
KEEP_VERSIONS = 5  # version folders kept besides the current one; older ones are deleted


class KerasScorer:
    """A trained version as the Scorer of `instaflyd.model.scoring`."""

    def __init__(self, version: int | None, input_size: int, model: keras.Model) -> None:
        self.version = version
        self.input_size = input_size
        self.model = model

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        return self.model(images, training=False)


def version_dir(config: Config, version: int) -> Path:
    return config.models_dir / f"v{version:04d}"


def write_version(
    config: Config,
    version: int,
    tail: keras.Model,
    manifest: VersionManifest,
    metrics: dict[str, Any],
) -> Path:
    """Write `models/vNNNN/` atomically and return it."""
    target = version_dir(config, version)
    with atomic_directory(target) as folder:
        tail.save_weights(folder / TAIL_FILE)
        manifest.write(folder)
        (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        (folder / CONFIG_FILE).write_text(
            yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
        )
    return target


def backbone_for(config: Config, manifest: VersionManifest) -> Backbone:
    """The frozen part a version was trained on, checked against its fingerprint."""
    needed = weights_file(config, manifest.weights)
    if needed is not None and not needed.is_file():
        raise ModelLoadError(
            f"model v{manifest.version} needs the weights it was trained on, {needed}, "
            "which is missing; fetch or import it again (instaflyd weights --help)"
        )
    backbone = build_backbone(
        config, manifest.weights, manifest.input_size, manifest.seed, source=""
    )  # the fingerprint identifies it here; its source is the trainer's business
    if backbone.fingerprint != manifest.fingerprint:
        raise ModelLoadError(
            f"model v{manifest.version} was trained on other frozen weights than the "
            f"'{manifest.weights}' weights here (fingerprint {backbone.fingerprint[:12]}, "
            f"expected {manifest.fingerprint[:12]}); train a new version"
        )
    return backbone


def load_version(config: Config, version: int) -> KerasScorer:
    """Version `version` as a Scorer: its frozen part rebuilt and checked, its tail loaded."""
    manifest = VersionManifest.read(version_dir(config, version))
    backbone = backbone_for(config, manifest)
    return KerasScorer(
        version, manifest.input_size, build_scorer_model(backbone, _tail(config, version))
    )


def tail_on(config: Config, version: int, backbone: FrozenIdentity) -> keras.Model | None:
    """The version's trained tail if it was trained on this frozen part and size, else None."""
    manifest = VersionManifest.read(version_dir(config, version))
    if (manifest.fingerprint, manifest.input_size) != (backbone.fingerprint, backbone.input_size):
        return None
    return _tail(config, version)


def _tail(config: Config, version: int) -> keras.Model:
    path = version_dir(config, version) / TAIL_FILE
    try:
        return load_tail(path)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot load the trained tail: {exc}") from exc


def clean_models_dir(config: Config, conn: sqlite3.Connection) -> None:
    """Remove what a killed trainer left: temp folders, and version folders never recorded.

    Only the trainer holding the training claim may call this (no other writer is running).
    """
    if not config.models_dir.is_dir():
        return
    known = set(model_version_numbers(conn))
    for entry in config.models_dir.iterdir():
        orphan = entry.name.startswith("v") and entry.name[1:].isdigit()
        if entry.name.startswith(TEMP_PREFIX) or (orphan and int(entry.name[1:]) not in known):
            log.info("removing %s, left by an interrupted training run", entry)
            shutil.rmtree(entry, ignore_errors=True)


def prune_versions(config: Config, conn: sqlite3.Connection) -> None:
    """Delete the folders of old versions: keep the current one and the newest KEEP_VERSIONS."""
    current = current_model_version(conn)
    for version in model_version_numbers(conn)[KEEP_VERSIONS:]:
        if current is None or version != current.version:
            shutil.rmtree(version_dir(config, version), ignore_errors=True)
