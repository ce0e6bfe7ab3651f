"""Training without VGG16 when every feature is cached: the feature cache's record of the frozen
part (fingerprint, block5_conv3's initial weights) stands in for building it, and the result is
the same as building it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from support_model import add_generated_posts, tiny_config

from instaflyd.model import backbone as backbone_module
from instaflyd.model.backbone import FrozenPart, build_backbone, load_tail
from instaflyd.model.errors import ModelLoadError
from instaflyd.model.features import (
    KEY_FILE,
    TAIL_INIT_FILE,
    CachedImage,
    FeatureCache,
    find_record,
    frozen_part,
)
from instaflyd.model.labels import labelled_posts
from instaflyd.model.registry import TAIL_FILE, load_version, version_dir
from instaflyd.model.training import TrainResult, run_training
from instaflyd.store import Database, ImageFiles


@pytest.fixture
def vgg16_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every construction of keras' VGG16 in this process, counted."""
    built: list[int] = []
    real = backbone_module.vgg16.VGG16

    def counting(*args: object, **kwargs: object) -> keras.Model:
        built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(backbone_module.vgg16, "VGG16", counting)
    return built


def metrics_of(data_dir: Path, result: TrainResult) -> dict[str, object]:
    config = tiny_config(data_dir)
    return json.loads((version_dir(config, result.version) / "metrics.json").read_text())


@pytest.mark.slow
def test_a_run_with_every_feature_cached_never_builds_vgg16(
    copy_of_trained: Path, vgg16_builds: list[int]
) -> None:
    config = tiny_config(copy_of_trained)
    result = run_training(config, full_pass=True)
    metrics = metrics_of(copy_of_trained, result)
    assert metrics["features_computed"] == 0 and metrics["features_reused"] == result.samples > 60
    assert vgg16_builds == []  # nothing of the frozen part was built
    assert result.val_srcc is not None and result.val_srcc > 0.5

    # new posts: their features need the frozen part, built once for all of them
    add_generated_posts(config, 5, start=500)
    result = run_training(config)
    assert metrics_of(copy_of_trained, result)["features_computed"] == 5
    assert vgg16_builds == [1]


@pytest.mark.slow
def test_training_on_the_record_equals_training_with_the_frozen_part_built(
    copy_of_trained: Path, tmp_path: Path, vgg16_builds: list[int]
) -> None:
    """The same run from the same state, once knowing the frozen part from the cache's record
    and once (the record removed) building it as every run did before: the same model."""
    built_dir = shutil.copytree(copy_of_trained, tmp_path / "built")
    for folder in tiny_config(built_dir).features_dir.iterdir():
        (folder / TAIL_INIT_FILE).unlink()
    recalled = run_training(tiny_config(copy_of_trained), full_pass=True)
    assert vgg16_builds == []
    built = run_training(tiny_config(built_dir), full_pass=True)
    assert vgg16_builds == [1]
    assert recalled.version == built.version and recalled.samples == built.samples
    assert recalled.val_srcc == pytest.approx(built.val_srcc, abs=1e-6)
    assert recalled.promoted == built.promoted
    ours, theirs = (
        load_tail(version_dir(tiny_config(folder), recalled.version) / TAIL_FILE).get_weights()
        for folder in (copy_of_trained, built_dir)
    )
    assert len(ours) == len(theirs) > 0
    for mine, other in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine, other, rtol=1e-5, atol=1e-6)
    # the run that built it wrote the record again: the next run there needs no network either
    part = frozen_part(tiny_config(built_dir), "none", 64)
    assert part.record is not None and not part.built


def images_of(data_dir: Path, count: int) -> list[CachedImage]:
    config = tiny_config(data_dir)
    add_generated_posts(config, count)
    with Database(config.db_path) as db:
        posts = labelled_posts(db.conn, ImageFiles(config.images_dir))
    return [CachedImage(post.image_sha256, post.image_path) for post in posts]


def test_the_record_holds_what_building_vgg16_gives(data_dir: Path) -> None:
    config = tiny_config(data_dir)
    images = images_of(data_dir, 3)
    cache = FeatureCache(config.features_dir, frozen_part(config, "none", 64))
    cache.features(images)
    key = json.loads((cache.folder / KEY_FILE).read_text())
    assert key["source"].startswith("random seed 0, keras ")

    part = frozen_part(config, "none", 64)
    assert part.record is not None and not part.built
    built = build_backbone(config, "none", 64)
    assert part.fingerprint == built.fingerprint and part.source == built.source
    for recorded, own in zip(part.tail_conv_weights, built.tail_conv_weights, strict=True):
        np.testing.assert_array_equal(recorded, own)
    assert FeatureCache(config.features_dir, part).folder == cache.folder
    assert not part.built and part.builds == 0

    # another seed is another source: no record, so the frozen part is built for it
    other = frozen_part(tiny_config(data_dir, train={"seed": 3}), "none", 64)
    assert other.record is None
    assert find_record(config.features_dir, other.source, 64) is None
    assert find_record(config.features_dir, part.source, 96) is None


@pytest.mark.slow
def test_a_record_that_does_not_match_the_built_network_is_dropped(data_dir: Path) -> None:
    config = tiny_config(data_dir)
    images = images_of(data_dir, 3)
    cache = FeatureCache(config.features_dir, frozen_part(config, "none", 64))
    cache.features(images[:2])
    # a record whose fingerprint the network does not have, in the folder named for it
    key = json.loads((cache.folder / KEY_FILE).read_text())
    lied = cache.folder.rename(
        cache.folder.with_name(cache.key.replace(key["fingerprint"][:16], "0" * 16))
    )
    (lied / KEY_FILE).write_text(json.dumps(key | {"fingerprint": "0" * 40}))

    lying = frozen_part(config, "none", 64)
    assert lying.record is not None and lying.fingerprint == "0" * 40
    forged = FeatureCache(config.features_dir, lying)
    forged.claim_folder()
    with pytest.raises(ModelLoadError, match="not the 000000000000 its feature cache recorded"):
        forged.features(images)  # the third image needs the network: built, and found out
    assert not forged.folder.exists()
    honest = frozen_part(config, "none", 64)
    assert honest.record is None
    assert honest.fingerprint == key["fingerprint"]


@pytest.mark.slow
def test_releasing_the_frozen_part_frees_it_and_keeps_what_training_needs(
    data_dir: Path,
) -> None:
    config = tiny_config(data_dir)
    part = FrozenPart(config, "none", 64)
    pixels = np.full((1, 64, 64, 3), 128.0, np.float32)
    before = np.asarray(part.forward(pixels))
    tail_conv, fingerprint = part.tail_conv_weights, part.fingerprint
    part.release()
    assert not part.built
    # what the version's manifest and a fresh tail need is kept, not built again for
    assert part.tail_conv_weights is tail_conv and part.fingerprint == fingerprint
    assert part.builds == 1
    np.testing.assert_array_equal(np.asarray(part.forward(pixels)), before)
    assert part.builds == 2


def test_loading_a_version_does_not_hash_the_weights(
    copy_of_trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The enhancer's start loads a version by its fingerprint; the source (the weights file's
    SHA-256 on a real box) is the trainer's business and is not worked out there."""

    def no(*args: object) -> str:
        raise AssertionError("frozen_source called while loading a version")

    monkeypatch.setattr(backbone_module, "frozen_source", no)
    scorer = load_version(tiny_config(copy_of_trained), 1)
    assert scorer.version == 1 and scorer.input_size == 64
