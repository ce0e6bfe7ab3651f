"""The feature cache: computed once, equal to a fresh computation, invalidated by a new key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support_model import add_generated_posts, tiny_config

from instaflyd.model import feature_codec
from instaflyd.model.backbone import Backbone, build_backbone
from instaflyd.model.features import KEY_FILE, CachedImage, FeatureCache
from instaflyd.model.labels import labelled_posts
from instaflyd.store import Database, ImageFiles


@pytest.fixture
def images(data_dir: Path) -> list[CachedImage]:
    config = tiny_config(data_dir)
    add_generated_posts(config, 10)
    with Database(config.db_path) as db:
        posts = labelled_posts(db.conn, ImageFiles(config.images_dir))
    return [CachedImage(post.image_sha256, post.image_path) for post in posts]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Backbone:
    """One frozen VGG16 (seeded random weights) for this file's tests: building it and tracing
    its forward pass cost most of a test's CPU second, and computing features does not change it."""
    return build_backbone(tiny_config(tmp_path_factory.mktemp("backbone")), "none", 64)


@pytest.mark.slow
def test_features_are_computed_once_and_equal_a_fresh_computation(
    data_dir: Path, images: list[CachedImage]
) -> None:
    config = tiny_config(data_dir)
    cache = FeatureCache(config.features_dir, build_backbone(config, "none", 64))
    lazy, report = cache.features(images[:6])
    assert (report.computed, report.reused) == (6, 0)
    first = np.asarray(lazy)
    assert lazy.shape == first.shape == (6, 4, 4, 512) and first.dtype == np.float16
    files = sorted(cache.folder.rglob("*.npz"))
    assert len(files) == 6
    assert cache.path_for(images[0].sha256) in files
    assert float(np.abs(first).max()) > 0

    # another process later: a freshly built backbone finds the same key and the cached values
    again = FeatureCache(config.features_dir, build_backbone(config, "none", 64))
    assert again.folder == cache.folder
    lazy, report = again.features(images)
    cached = np.asarray(lazy)
    assert (report.computed, report.reused) == (4, 6)
    recomputed = again.compute([image.path for image in images])
    # cached: 8 bits a value against each channel's maximum, off by at most 1/510 of it
    recomputed = recomputed.astype(np.float32)
    tolerance = recomputed.max(axis=(1, 2), keepdims=True) / 510 + 1e-3
    assert np.all(np.abs(cached.astype(np.float32) - recomputed) <= tolerance)
    assert not cached[recomputed == 0].any()  # zeros stay exactly zero
    np.testing.assert_array_equal(cached[:6], first)
    assert sorted(cache.folder.rglob("*.npz")) != files  # the 4 new ones were added
    assert not list(cache.folder.rglob(".tmp-*"))


@pytest.mark.slow
def test_a_changed_input_size_invalidates_the_cache(
    data_dir: Path, images: list[CachedImage]
) -> None:
    config = tiny_config(data_dir)
    small = FeatureCache(config.features_dir, build_backbone(config, "none", 64))
    small.features(images)
    assert (small.folder / KEY_FILE).is_file()

    larger = FeatureCache(config.features_dir, build_backbone(config, "none", 96))
    assert larger.key != small.key
    features, report = larger.features(images)
    assert (report.computed, report.reused) == (10, 0)
    assert np.asarray(features).shape == (10, 6, 6, 512)
    assert not small.folder.exists()  # stale features are deleted, not left to pile up
    assert [p.name for p in config.features_dir.iterdir()] == [larger.key]


def test_a_different_seed_for_random_weights_is_another_key(
    data_dir: Path, backbone: Backbone
) -> None:
    first = FeatureCache(data_dir, backbone)
    other_seed = tiny_config(data_dir, train={"seed": 1})
    second = FeatureCache(data_dir, build_backbone(other_seed, "none", 64))
    assert first.key != second.key


def test_a_damaged_cache_file_is_computed_again(
    data_dir: Path, images: list[CachedImage], backbone: Backbone
) -> None:
    config = tiny_config(data_dir)
    cache = FeatureCache(config.features_dir, backbone)
    good = np.asarray(cache.features(images[:2])[0])
    cache.path_for(images[0].sha256).write_bytes(b"truncated")
    again, report = cache.features(images[:2])
    assert (report.computed, report.reused) == (1, 1)
    np.testing.assert_array_equal(np.asarray(again), good)


def test_an_unreadable_image_is_reported_and_not_cached(
    data_dir: Path, images: list[CachedImage], backbone: Backbone
) -> None:
    config = tiny_config(data_dir)
    broken = data_dir / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a whole JPEG")
    cache = FeatureCache(config.features_dir, backbone)
    mixed = [images[0], CachedImage("ab" * 32, broken), images[1]]
    features, report = cache.features(mixed)
    assert (report.computed, report.reused, report.unreadable) == (2, 0, [1])
    assert not features[1].any() and features[0].any() and features[2].any()
    assert np.asarray(features.without(report.unreadable)).shape == (2, 4, 4, 512)
    assert not cache.path_for("ab" * 32).exists()


def test_features_are_read_from_the_cache_a_batch_at_a_time(
    data_dir: Path, images: list[CachedImage], backbone: Backbone
) -> None:
    """Training holds one batch, not every post's features: rows come from the files when
    indexed (so a file removed after the call is noticed only when its row is asked for)."""
    config = tiny_config(data_dir)
    cache = FeatureCache(config.features_dir, backbone)
    features, _ = cache.features(images)
    batch = features[np.array([3, 0])]
    np.testing.assert_array_equal(batch[1], feature_codec.decode(cache.path_for(images[0].sha256)))
    cache.path_for(images[5].sha256).unlink()
    assert features[np.array([4])].shape == (1, 4, 4, 512)
    with pytest.raises(FileNotFoundError, match="cached features vanished"):
        features[np.array([4, 5])]
