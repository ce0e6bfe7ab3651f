"""Posts recognised by their shape wherever they sit: the families the fixed-path parsers dropped,
stored through the real Ingester into a real SQLite file, and what is not understood, counted.

The media nodes are the samples' own (a GraphQL `GraphImage` of web_profile_info 2022, v1 media
of feed/timeline 2022), renumbered and placed where each family puts them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import FIXTURES

from instaflyd.capture.flows import CapturedResponse
from instaflyd.capture.ingest import Ingester
from instaflyd.capture.matching import PendingImages
from instaflyd.capture.parsers import parse_document
from instaflyd.store import Database, ImageFiles
from instaflyd.store.formats import format_path, unread_formats
from instaflyd.store.posts import get_account, get_post

SAMPLES = FIXTURES / "instagram"
SEEN_AT = 1_700_000_000.0


def _load(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


PROFILE = _load("pgrimaud/web_profile_info_2022-06_full.json")
TIMELINE = _load("pgrimaud/feed_timeline_v1_2022-08.json")


def graph_node(post_id: int, likes: int, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """A GraphImage of the 2022 sample with a new id, shortcode and like count."""
    edges = PROFILE["data"]["user"]["edge_owner_to_timeline_media"]["edges"]
    node = copy.deepcopy(edges[5]["node"])
    assert node["__typename"] == "GraphImage"
    node.update(id=str(post_id), shortcode=f"G{post_id}")
    node["edge_liked_by"] = {"count": likes}
    node["edge_media_preview_like"] = {"count": likes}
    node.pop("owner")
    if owner is not None:
        node["owner"] = owner
    return node


def v1_media(post_id: int, likes: int, user: dict[str, Any], clip: bool = False) -> dict[str, Any]:
    """A v1 photo (or clip) of the 2022 timeline with a new pk, code, like count and user."""
    media = copy.deepcopy(TIMELINE["feed_items"][6 if clip else 1]["media_or_ad"])
    assert (media["media_type"], media["product_type"]) == ((2, "clips") if clip else (1, "feed"))
    media.update(pk=post_id, id=f"{post_id}_{user['pk']}", code=f"V{post_id}", like_count=likes)
    media["user"] = user
    return media


def v1_user(pk: int, followers: int | None = None) -> dict[str, Any]:
    user = {"pk": pk, "username": f"user{pk}", "full_name": f"User {pk}", "is_private": False}
    if followers is not None:
        user["follower_count"] = followers
    return user


@pytest.fixture
def ingester(tmp_path: Path):
    with Database(tmp_path / "instafly.db") as db:
        yield Ingester(db, ImageFiles(tmp_path / "images"), PendingImages(10, 60))


def ingest(ingester: Ingester, document: Any, path: str) -> dict[str, int]:
    response = CapturedResponse(
        "document", "www.instagram.com", path, 200, "application/json", "identity",
        json.dumps(document).encode(), SEEN_AT,
    )  # fmt: skip
    return dict(ingester.ingest(response).nonzero())


def stored_likes(ingester: Ingester, *post_ids: int) -> list[int | None]:
    rows = [get_post(ingester.db.conn, str(post_id)) for post_id in post_ids]
    assert all(row is not None for row in rows)
    return [row.like_count for row in rows]


def stored_followers(ingester: Ingester, account_id: int) -> int | None:
    row = get_account(ingester.db.conn, str(account_id))
    assert row is not None
    return row.follower_count


# --- the families the fixed paths dropped -------------------------------------------------


def test_related_profiles_of_a_post_page_are_labelled_posts(ingester: Ingester) -> None:
    page = _load("pgrimaud/post__a1_graphql_2020-06_instagram-media.json")
    related = [
        {
            "id": str(700 + n), "username": f"related{n}", "full_name": f"Related {n}",
            "edge_followed_by": {"count": 10_000 * (n + 1)},
            "edge_owner_to_timeline_media": {"count": 2, "edges": [
                {"node": graph_node(7000 + 10 * n, 100 + n)},
                {"node": graph_node(7001 + 10 * n, 200 + n)},
            ]},
        }
        for n in range(3)
    ]  # fmt: skip
    page["graphql"]["shortcode_media"]["edge_related_profiles"] = {
        "edges": [{"node": user} for user in related]
    }
    parsed = parse_document(page, "/p/CAnqPB-Jzcj/")
    assert parsed is not None and parsed.fingerprint is None
    assert [p.id for p in parsed.posts] == [
        "2317006284167526179", "7000", "7001", "7010", "7011", "7020", "7021"]  # fmt: skip
    # The posts carry no owner: the user whose own media encloses them is the owner.
    assert {(p.id, p.owner.id, p.owner.follower_count) for p in parsed.posts[1:3]} == {
        ("7000", "700", 10_000),
        ("7001", "700", 10_000),
    }
    outcome = ingest(ingester, page, "/p/CAnqPB-Jzcj/")
    assert outcome["posts_new"] == 7
    assert stored_likes(ingester, 7000, 7001, 7020, 7021) == [100, 200, 102, 202]
    assert [stored_followers(ingester, account) for account in (700, 701, 702)] == [
        10_000, 20_000, 30_000]  # fmt: skip
    assert stored_followers(ingester, 305701719) == 122620202  # the post's own owner
    assert get_post(ingester.db.conn, "7011").owner_id == "701"


def sections(*medias: dict[str, Any], clip: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The v1 sectioned grid: medias[], fill_items[] and one_by_two_item.clips.items[]."""
    first, *rest = medias
    layout: dict[str, Any] = {
        "medias": [{"media": first}],
        "fill_items": [{"media": m} for m in rest],
    }
    if clip is not None:
        layout["one_by_two_item"] = {"clips": {"id": "clips", "items": [{"media": clip}]}}
    return [{"layout_type": "media_grid", "feed_type": "media", "layout_content": layout}]


def test_explore_sectional_items(ingester: Ingester) -> None:
    owner = v1_user(51, followers=4321)
    explore = {
        "sectional_items": sections(
            v1_media(8001, 11, owner), v1_media(8002, 12, v1_user(52)),
            clip=v1_media(8003, 13, v1_user(53), clip=True),
        ),
        "more_available": True, "status": "ok",
    }  # fmt: skip
    parsed = parse_document(explore, "/api/v1/discover/topical_explore/")
    assert parsed is not None and parsed.family == "app_v1" and parsed.fingerprint is None
    assert [(p.id, p.media_type, p.like_count) for p in parsed.posts] == [
        ("8001", "photo", 11), ("8002", "photo", 12), ("8003", "reel", 13)]  # fmt: skip
    ingest(ingester, explore, "/api/v1/discover/topical_explore/")
    assert stored_likes(ingester, 8001, 8002, 8003) == [11, 12, 13]
    assert stored_followers(ingester, 51) == 4321
    assert stored_followers(ingester, 52) is None


def test_tag_page_top_and_recent_sections(ingester: Ingester) -> None:
    tag = {"data": {
        "name": "sunset",
        "recent": {"sections": sections(v1_media(8102, 22, v1_user(61)))},
        "top": {"sections": sections(v1_media(8101, 21, v1_user(61, followers=900)))},
    }}  # fmt: skip
    parsed = parse_document(tag, "/api/v1/tags/web_info/")
    assert parsed is not None and parsed.fingerprint is None
    assert [p.id for p in parsed.posts] == ["8101", "8102"]  # "top" first, as ranked
    ingest(ingester, tag, "/api/v1/tags/web_info/")
    assert stored_likes(ingester, 8101, 8102) == [21, 22]
    assert stored_followers(ingester, 61) == 900


def test_location_page_ranked_and_recent_sections(ingester: Ingester) -> None:
    location = {"native_location_data": {
        "location_info": {"location_id": "212988663", "name": "New York, New York"},
        "ranked": {"sections": sections(v1_media(8201, 31, v1_user(71, followers=5)))},
        "recent": {"sections": sections(v1_media(8202, 32, v1_user(72)))},
    }}  # fmt: skip
    parsed = parse_document(location, "/api/v1/locations/212988663/sections/")
    assert parsed is not None and parsed.fingerprint is None
    assert [(p.id, p.like_count) for p in parsed.posts] == [("8201", 31), ("8202", 32)]
    ingest(ingester, location, "/api/v1/locations/212988663/sections/")
    assert stored_likes(ingester, 8201, 8202) == [31, 32]
    assert stored_followers(ingester, 71) == 5


def test_media_or_ad_items_skip_the_ads(ingester: Ingester) -> None:
    ad = v1_media(8399, 99, v1_user(89))
    ad.update(ad_id="120200", injected={"label": "Sponsored"})
    chaining = {"items": [
        {"media_or_ad": v1_media(8301, 41, v1_user(81, followers=123))},
        {"media_or_ad": ad},
        {"media_or_ad": v1_media(8302, 42, v1_user(82))},
    ], "status": "ok"}  # fmt: skip
    parsed = parse_document(chaining, "/api/v1/discover/chaining/")
    assert parsed is not None and parsed.fingerprint is None
    assert [(p.id, p.like_count) for p in parsed.posts] == [("8301", 41), ("8302", 42)]
    outcome = ingest(ingester, chaining, "/api/v1/discover/chaining/")
    assert outcome["posts_new"] == 2
    assert stored_likes(ingester, 8301, 8302) == [41, 42]
    assert get_post(ingester.db.conn, "8399") is None
    assert stored_followers(ingester, 81) == 123


def test_an_ad_wrapper_hides_the_media_in_it() -> None:
    wrapped = {"items": [
        {"ad": {"ad_id": "1", "media": v1_media(8401, 5, v1_user(91))}},
        {"media": v1_media(8402, 6, v1_user(92))},
    ]}  # fmt: skip
    assert [p.id for p in parse_document(wrapped).posts] == ["8402"]


@pytest.mark.parametrize("wrapper", ["graphql", "data"])
def test_location_pages_graphql(ingester: Ingester, wrapper: str) -> None:
    page = {wrapper: {"location": {
        "id": "212988663", "name": "New York, New York", "slug": "new-york-new-york",
        "edge_location_to_media": {"count": 2, "edges": [
            {"node": graph_node(8501, 51, owner={"id": "95"})},
            {"node": graph_node(8502, 52, owner={"id": "96"})},
        ]},
        "edge_location_to_top_posts": {"count": 1, "edges": [
            {"node": graph_node(8503, 53, owner={"id": "95"})},
        ]},
    }}}  # fmt: skip
    parsed = parse_document(page, "/explore/locations/212988663/")
    assert parsed is not None and parsed.fingerprint is None
    assert [(p.id, p.like_count, p.owner.id) for p in parsed.posts] == [
        ("8503", 53, "95"), ("8501", 51, "95"), ("8502", 52, "96")]  # fmt: skip
    ingest(ingester, page, "/explore/locations/212988663/")
    assert stored_likes(ingester, 8501, 8502, 8503) == [51, 52, 53]
    assert get_post(ingester.db.conn, "8502").owner_id == "96"


# --- stories are not posts -------------------------------------------------------------------


def test_stories_are_not_posts() -> None:
    story = v1_media(8601, 0, v1_user(97))
    story["expiring_at"] = 1_700_086_400
    graph_story = graph_node(8602, 0)
    graph_story["__typename"] = "GraphStoryImage"
    document = {"reels": {"97": {"items": [story]}}, "data": {"items": [graph_story]}}
    parsed = parse_document(document, "/api/v1/feed/reels_media/")
    assert parsed is not None and parsed.posts == [] and parsed.fingerprint is None


# --- what is not understood ------------------------------------------------------------------


def test_an_unknown_document_is_counted_by_path_and_shape_without_values(
    ingester: Ingester,
) -> None:
    unknown = {"payload": {"grid": [
        {"thing": {"display_url": "https://scontent.cdninstagram.com/v/secret_123.jpg",
                   "likes_total": 77, "author": "secret_username"}},
    ]}, "status": "ok"}  # fmt: skip
    parsed = parse_document(unknown, "/api/v1/new_feed/")
    assert parsed is not None and parsed.posts == []
    assert parsed.fingerprint == "payload.grid[].thing: display_url"
    path = "/api/v1/feed/user/1518284433/?max_id=QVFE&token=secret"
    for _ in range(2):
        outcome = ingest(ingester, unknown, path)
        assert outcome["formats_not_understood"] == 1
    [row] = unread_formats(ingester.db.conn)
    assert (row.path, row.fingerprint, row.count) == (
        "/api/v1/feed/user/{id}/", "payload.grid[].thing: display_url", 2)  # fmt: skip
    assert "secret" not in row.path + row.fingerprint


def test_fewer_posts_than_media_like_objects_is_not_understood() -> None:
    document = {"items": [
        {"media": v1_media(8701, 1, v1_user(98))},
        {"media": {"shortcode": "ABC", "display_url": "https://x/1.jpg"}},  # no id
    ]}  # fmt: skip
    parsed = parse_document(document, "/api/v1/feed/")
    assert parsed is not None and [p.id for p in parsed.posts] == ["8701"]
    assert parsed.fingerprint == "items[].media: display_url,shortcode"


def test_users_that_yield_nothing_are_not_understood() -> None:
    parsed = parse_document({"people": [{"username": "someone", "follower_count": 12}]})
    assert parsed is not None and parsed.posts == [] and parsed.accounts == []
    assert parsed.fingerprint == "people[]: username,follower_count"


def test_keys_that_are_data_are_not_in_the_fingerprint() -> None:
    document = {"by_user": {
        "kevin": {"display_url": "https://x/1.jpg", "name": "kevin"},
        "item_12345": {"display_url": "https://x/2.jpg"},
        "a.b": {"display_url": "https://x/3.jpg"},
    }}  # fmt: skip
    parsed = parse_document(document)
    assert parsed is not None
    assert parsed.fingerprint == "by_user.*: display_url\nby_user.item_#: display_url"


def test_known_documents_are_understood_and_others_are_none() -> None:
    for path in sorted(SAMPLES.glob("*/*.json")):
        parsed = parse_document(_load(str(path.relative_to(SAMPLES))), "/")
        assert parsed is not None and parsed.fingerprint is None, path.name
    assert parse_document({"status": "ok"}) is None
    assert parse_document([1, "two", None]) is None


def test_the_unread_formats_table_is_bounded(ingester: Ingester, monkeypatch) -> None:
    from instaflyd.store import formats

    monkeypatch.setattr(formats, "MAX_ROWS", 3)
    with ingester.db.transaction() as conn:
        for n in range(5):
            formats.count_unread_format(conn, f"/api/v1/x{'y' * n}/", "a: shortcode", now=n)
    assert [row.path for row in unread_formats(ingester.db.conn)] == [
        "/api/v1/xyyyy/", "/api/v1/xyyy/", "/api/v1/xyy/"]  # fmt: skip
    assert format_path("/p/12_34/?a=1#x") == "/p/{id}/"
