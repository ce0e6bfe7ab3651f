"""Properties of the walk over any JSON (hypothesis): a media node is found wherever it sits,
arbitrary JSON never raises, nothing is found twice, and a fingerprint holds no value."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
from helpers import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instaflyd.capture.parsers import MEDIA_HINTS, USER_HINTS, parse_document

SAMPLES = FIXTURES / "instagram"
PROFILE = json.loads((SAMPLES / "pgrimaud/web_profile_info_2022-06_full.json").read_text("utf-8"))
TIMELINE = json.loads((SAMPLES / "pgrimaud/feed_timeline_v1_2022-08.json").read_text("utf-8"))
# Sample nodes of both dialects: a GraphImage, a GraphSidecar, v1 photo, carousel, clip.
GRAPH_EDGES = PROFILE["data"]["user"]["edge_owner_to_timeline_media"]["edges"]
NODES = [GRAPH_EDGES[5]["node"], GRAPH_EDGES[1]["node"]] + [
    TIMELINE["feed_items"][i]["media_or_ad"] for i in (1, 0, 6)
]
NODE_IDS = [parse_document(node).posts[0].id for node in NODES]
CHECK = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Wrapper keys: plain words (no Instagram field by accident) and the containers Instagram uses.
wrapper_keys = st.one_of(
    st.from_regex(r"w_[a-z]{1,8}", fullmatch=True),
    st.sampled_from(["data", "items", "media", "node", "edges", "layout_content", "top", "x"]),
)
junk = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))


@st.composite
def wrapped(draw: st.DrawFn, node: dict[str, Any]) -> Any:
    """`node` inside 0-12 levels of dicts (with junk siblings) and lists (with junk items)."""
    value: Any = node
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.booleans()):
            siblings = draw(st.dictionaries(st.from_regex(r"j_[a-z]{1,6}", fullmatch=True), junk))
            value = {**siblings, draw(wrapper_keys): value}
        else:
            items = draw(st.lists(junk, max_size=3))
            value = [*items[: len(items) // 2], value, *items[len(items) // 2 :]]
    return value


def without_source(post):
    return dataclasses.replace(post, source=None)


@pytest.mark.slow
@CHECK
@given(data=st.data(), index=st.integers(0, len(NODES) - 1))
def test_the_same_media_node_is_found_at_any_depth_in_any_wrapper(data, index: int) -> None:
    node = NODES[index]
    [alone] = parse_document(node).posts
    parsed = parse_document(data.draw(wrapped(node)), "/any/")
    assert parsed is not None and parsed.fingerprint is None
    assert [without_source(p) for p in parsed.posts] == [without_source(alone)]


# Arbitrary JSON whose keys are often Instagram's own, so the recognisers really run.
INSTAGRAM_KEYS = sorted({
    *MEDIA_HINTS, *USER_HINTS, "id", "pk", "code", "media_type", "like_count", "edges", "node",
    "owner", "user", "edge_liked_by", "count", "items", "media", "carousel_media",
    "edge_sidecar_to_children", "edge_owner_to_timeline_media", "is_ad", "ad_id", "product_type",
    "like_and_view_counts_disabled", "image_versions2", "candidates", "url", "width", "height",
    "__typename", "taken_at", "dimensions", "display_resources", "src", "expiring_at",
})  # fmt: skip
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12),
    st.sampled_from(["1", "2", "8", "12_34", "-1", "GraphSidecar", "clips", ""]),
)  # fmt: skip
keys = st.one_of(st.sampled_from(INSTAGRAM_KEYS), st.text(max_size=10))
any_json = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=60,
)


@CHECK
@given(document=any_json, path=st.text(max_size=20))
def test_arbitrary_json_never_raises_and_nothing_is_found_twice(document: Any, path: str) -> None:
    parsed = parse_document(document, path)
    if parsed is None:
        return
    post_ids = [p.id for p in parsed.posts]
    account_ids = [a.id for a in parsed.accounts]
    assert len(post_ids) == len(set(post_ids))
    assert len(account_ids) == len(set(account_ids))
    assert all(p.like_count is None or p.like_count >= 0 for p in parsed.posts)


@pytest.mark.slow
@settings(CHECK, max_examples=30)
@given(data=st.data(), picks=st.lists(st.integers(0, len(NODES) - 1), min_size=1, max_size=6))
def test_a_node_repeated_anywhere_is_found_once(data, picks: list[int]) -> None:
    document = {f"w_{n}": data.draw(wrapped(NODES[i])) for n, i in enumerate(picks)}
    parsed = parse_document(document)
    assert parsed is not None
    assert sorted(p.id for p in parsed.posts) == sorted({NODE_IDS[i] for i in picks})


FIXED_TOKENS = {*MEDIA_HINTS, *USER_HINTS, "#", "*", "$", "..."}


def scalar_values(document: Any) -> set[str]:
    if isinstance(document, dict):
        return set().union(*(scalar_values(v) for v in document.values()))
    if isinstance(document, list):
        return set().union(*(scalar_values(v) for v in document))
    return {str(document)} if document is not None and not isinstance(document, bool) else set()


@CHECK
@given(data=st.data(), document=any_json, value=st.text(min_size=1, max_size=12))
def test_the_fingerprint_of_an_unknown_document_holds_no_value(data, document, value) -> None:
    unknown = [document, data.draw(wrapped({"display_url": value}))]
    parsed = parse_document(unknown, "/x/")
    assert parsed is not None and parsed.fingerprint is not None
    tokens = set(re.split(r"[.:,\n ]+|\[\]", parsed.fingerprint)) - FIXED_TOKENS - {""}
    leaked = tokens & scalar_values(unknown)
    assert not leaked, (leaked, parsed.fingerprint)
