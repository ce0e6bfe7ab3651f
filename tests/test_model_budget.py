"""The feature cache's disk budget: never exceeded, and when full, owners' newest posts kept."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from support_model import add_generated_posts, tiny_config

from instaflyd.config import Config, ConfigError
from instaflyd.model import feature_codec
from instaflyd.model.backbone import Backbone, build_backbone
from instaflyd.model.feature_budget import admit, keep_order
from instaflyd.model.features import CachedImage, FeatureCache
from instaflyd.model.labels import LabelledPost, labelled_posts
from instaflyd.store import Database, ImageFiles


def post(post_id: str, owner_id: str, seen: float, sha: str | None = None) -> LabelledPost:
    sha = sha or f"{int(post_id):064x}"
    return LabelledPost(post_id, owner_id, 10, 100, sha, Path(f"/nowhere/{sha}.jpg"), seen)


def disk_bytes(cache: FeatureCache) -> int:
    return sum(path.stat().st_size for path in cache.folder.rglob(f"*{feature_codec.SUFFIX}"))


@pytest.fixture
def stored(data_dir: Path) -> tuple[Config, list[LabelledPost]]:
    config = tiny_config(data_dir)
    add_generated_posts(config, 12)
    with Database(config.db_path) as db:
        return config, labelled_posts(db.conn, ImageFiles(config.images_dir))


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Backbone:
    """One frozen VGG16 (seeded random weights) for this file's tests: building it and tracing
    its forward pass cost most of a test's CPU second, and computing features does not change it."""
    return build_backbone(tiny_config(tmp_path_factory.mktemp("backbone")), "none", 64)


def test_owners_take_turns_newest_first() -> None:
    posts = [
        post("1", "a", 100), post("2", "a", 300), post("3", "a", 200), post("4", "a", 400),
        post("5", "b", 50), post("6", "b", 250),
        post("7", "c", 10),
    ]  # fmt: skip
    order = [p.post_id for p in keep_order(posts)]
    # round 1: each owner's newest (a:400, b:250, c:10), newest first; round 2: a:300, b:50; ...
    assert order == ["4", "6", "7", "2", "5", "3", "1"]


def test_a_write_that_would_exceed_the_budget_is_refused(
    stored: tuple[Config, list[LabelledPost]], backbone: Backbone
) -> None:
    config, posts = stored
    images = [CachedImage(p.image_sha256, p.image_path) for p in posts]
    unlimited = FeatureCache(config.features_dir / "measure", backbone)
    unlimited.features(images[:1])
    one_file = disk_bytes(unlimited)

    budget = int(one_file * 3.5)
    cache = FeatureCache(config.features_dir, backbone, max_bytes=budget)
    features, report = cache.features(images)
    written = len(list(cache.folder.rglob(f"*{feature_codec.SUFFIX}")))
    assert 2 <= written <= 4 and report.computed == written
    assert report.over_budget == list(range(written, 12))
    assert report.left_out == report.over_budget
    assert disk_bytes(cache) <= budget
    assert cache.used_bytes() == disk_bytes(cache)
    assert not features[written].any()  # left out: zeros, and training drops its row
    assert features[0].any()

    # the next call finds the cache full as well: nothing more is written
    _, again = cache.features(images)
    assert (again.reused, again.computed, len(again.over_budget)) == (written, 0, 12 - written)
    assert disk_bytes(cache) <= budget


def test_admit_keeps_owners_newest_and_deletes_the_rest(
    stored: tuple[Config, list[LabelledPost]], backbone: Backbone
) -> None:
    config, posts = stored
    cache = FeatureCache(config.features_dir, backbone)
    cache.features([CachedImage(p.image_sha256, p.image_path) for p in posts])
    sizes = {sha: file.bytes for sha, file in cache.inventory().items()}
    assert len(sizes) == 12

    # make the posts' dates distinct: later ids are newer
    dated = [
        LabelledPost(p.post_id, p.owner_id, p.like_count, p.follower_count, p.image_sha256,
                     p.image_path, seen=float(i))
        for i, p in enumerate(posts)
    ]  # fmt: skip
    expected = keep_order(dated)[:7]
    budget = sum(sizes[p.image_sha256] for p in expected)
    limited = FeatureCache(config.features_dir, backbone, max_bytes=budget)
    admission = admit(dated, limited)

    assert {p.post_id for p in admission.kept} == {p.post_id for p in expected}
    assert (admission.left_out, admission.evicted) == (5, 5)
    assert disk_bytes(limited) <= budget
    assert set(limited.inventory()) == {p.image_sha256 for p in expected}
    # 6 owners, 2 posts each: every owner keeps its newest post
    assert {p.owner_id for p in admission.kept} == {p.owner_id for p in dated}
    newest = {}
    for p in dated:
        newest[p.owner_id] = p.post_id
    assert set(newest.values()) <= {p.post_id for p in admission.kept}


def test_without_a_budget_nothing_is_deleted(
    stored: tuple[Config, list[LabelledPost]], backbone: Backbone
) -> None:
    config, posts = stored
    cache = FeatureCache(config.features_dir, backbone)
    cache.features([CachedImage(p.image_sha256, p.image_path) for p in posts[:3]])
    admission = admit(posts, cache)
    assert (len(admission.kept), admission.left_out, admission.evicted) == (12, 0, 0)
    assert len(cache.inventory()) == 3


def test_the_budget_setting_is_validated(data_dir: Path) -> None:
    config = tiny_config(data_dir, train={"feature_cache_max_gb": 0.5})
    assert config.train.feature_cache_max_bytes == 500_000_000
    assert tiny_config(data_dir).train.feature_cache_max_gb == 4
    with pytest.raises(ConfigError, match="feature_cache_max_gb"):
        tiny_config(data_dir, train={"feature_cache_max_gb": 0})


def test_the_compact_form_is_close_and_keeps_zeros() -> None:
    rng = np.random.default_rng(0)
    value = np.maximum(rng.normal(0, 3, size=(4, 4, 512)), 0).astype(np.float16)
    value[:, :, 7] = 0  # a channel with no activation at all
    data = feature_codec.encode(value)
    back = feature_codec.decode(io.BytesIO(data))
    assert back.shape == value.shape and back.dtype == np.float16
    peak = value.astype(np.float32).max(axis=(0, 1))
    assert np.all(np.abs(back - value.astype(np.float32)) <= peak / 510 + 1e-2)
    assert not back[value == 0].any() and not back[:, :, 7].any()
    assert len(data) < value.nbytes / 2
