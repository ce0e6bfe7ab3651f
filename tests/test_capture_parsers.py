"""Parsers, family by family, on the real public samples in tests/fixtures/instagram/."""

from __future__ import annotations

import copy
import gzip
import json
from collections import Counter
from typing import Any

import brotli
import pytest
import zstandard
from helpers import FIXTURES

from instaflyd.capture.bodies import (
    BodyError,
    decode_body,
    html_documents,
    json_documents,
    looks_like_json,
)
from instaflyd.capture.parsers import Parsed, media_id, parse_document
from instaflyd.store.records import AccountRecord, image_file_name

SAMPLES = FIXTURES / "instagram"
WEB_PROFILE_INFO_PATH = "/api/v1/users/web_profile_info/?username=robertdowneyjr"


def load(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def parse(name: str, path: str = "/") -> Parsed:
    parsed = parse_document(load(name), path)
    assert parsed is not None
    return parsed


def post_by_code(parsed: Parsed, shortcode: str):
    [post] = [p for p in parsed.posts if p.shortcode == shortcode]
    return post


def names(post) -> set[str]:
    return {image_file_name(url) for url in post.image_urls}


def test_every_sample_file_is_recognised_by_the_family_it_came_from() -> None:
    families = {}
    for path in sorted(SAMPLES.glob("*/*.json")):
        document = load(str(path.relative_to(SAMPLES)))
        if "posts" in document:  # the RapidAPI relay: edges of an xdt_api connection
            document = {"data": {"xdt_api__v1__feed__user_timeline_graphql_connection": {
                "edges": document["posts"]}}}  # fmt: skip
        api = WEB_PROFILE_INFO_PATH if "web_profile_info" in path.name else "/"
        parsed = parse_document(document, api)
        assert parsed is not None, path.name
        assert parsed.posts or parsed.accounts, path.name
        families[path.name] = parsed.family
    assert len(families) == 21
    assert Counter(families.values()) == {
        "legacy_a1": 3,
        "graphql_page": 5,
        "web_profile_info": 2,
        "graphql_query": 5,
        "app_v1": 6,
    }


# --- 2017: ?__a=1 -------------------------------------------------------------------------


def test_legacy_profile_2017_03_gives_followers_likes_and_display_src() -> None:
    parsed = parse("legacy_2017/profile__a1_2017-03_instalike.json")
    assert parsed.family == "legacy_a1"
    assert parsed.accounts == [AccountRecord("2313248236", "mateusz5272", "Mateusz Pawlak", 286)]
    assert len(parsed.posts) == 10
    first = parsed.posts[0]
    assert (first.id, first.shortcode, first.media_type) == (
        "1429264180820985541",
        "BPVxDMsBkbF",
        "photo",
    )
    assert (first.like_count, first.comment_count, first.taken_at) == (94, 1, 1484601589)
    assert first.owner is not None and first.owner.follower_count == 286
    assert first.image_urls[0].startswith(
        "https://scontent-waw1-1.cdninstagram.com/t51.2885-15/e35/16110826_"
    )
    assert names(first) == {"16110826_1082889121840788_5462237637802721280_n.jpg"}


def test_legacy_profile_2017_12_orders_thumbnail_resources_by_size() -> None:
    parsed = parse("legacy_2017/profile__a1_2017-12_InstabotPatrik.json")
    assert parsed.accounts == [
        AccountRecord("5804069718", "traveltravel", "유니크한 체코 여행", 2198)
    ]
    post = post_by_code(parsed, "Bbu9R9CACoj")
    assert (post.id, post.like_count, post.comment_count) == ("1652527627891649059", 309, 10)
    # display_src (1080 wide) first, then the thumbnails 640, 480, 320, 240, 150.
    assert "/e35/23735249_" in post.image_urls[0]
    assert "s150x150" in post.image_urls[-1]
    assert len(post.image_urls) == 6
    assert names(post) == {"23735249_382409548846709_9116143522565586944_n.jpg"}


def test_legacy_hashtag_2017_has_top_posts_and_recent_posts_videos_typed() -> None:
    parsed = parse("legacy_2017/tag__a1_2017-12_InstabotPatrik.json")
    assert parsed.accounts == []
    assert len(parsed.posts) == 26  # 9 top posts + 17 recent
    top = parsed.posts[0]
    assert (top.id, top.like_count, top.owner) == (
        "1661470294702562660",
        15439,
        AccountRecord("2106680654"),
    )
    video = post_by_code(parsed, "BcO8UqllKDG")
    assert (video.media_type, video.like_count) == ("video", 3969)
    assert Counter(p.media_type for p in parsed.posts) == {"photo": 22, "video": 4}


# --- 2018-22: graphql pages and _sharedData -----------------------------------------------


def test_graphql_post_page_2017_12_single_media() -> None:
    parsed = parse("legacy_2017/post__a1_graphql_2017-12_InstabotPatrik.json")
    assert parsed.family == "graphql_page"
    [post] = parsed.posts
    assert (post.id, post.shortcode, post.like_count, post.comment_count) == (
        "1640908281679491991",
        "BbFrWNmgLOX",
        294,
        3,
    )
    assert post.owner == AccountRecord("5804069718", "ownername", "유니크한 체코 여행", None)
    assert names(post) == {"23164131_364733100640827_759571554777432064_n.jpg"}
    assert parsed.accounts == []  # no follower count in a 2017 post page


def test_graphql_profile_2018_04() -> None:
    parsed = parse("legacy_2017/profile__a1_graphql_2018-04_InstabotPatrik.json")
    assert parsed.accounts == [AccountRecord("6713407637", "joshjacksonnjr", "John Jacksonn", 88)]
    assert len(parsed.posts) == 7
    first = parsed.posts[0]
    assert (first.id, first.shortcode, first.like_count, first.taken_at) == (
        "1685178592475927742",
        "Bdi9QBbntS-",
        54,
        1515108964,
    )
    assert first.owner is not None and first.owner.username == "joshjacksonnjr"
    assert names(first) == {"25023963_189323365141382_2023399792255696896_n.jpg"}


def test_graphql_hashtag_2018_01_keeps_zero_likes_as_zero() -> None:
    parsed = parse("legacy_2017/tag__a1_graphql_2018-01_InstabotPatrik.json")
    assert len(parsed.posts) == 61  # 9 top posts + 52 recent
    assert (parsed.posts[0].id, parsed.posts[0].like_count) == ("1684176859082782471", 6462)
    # Brand-new posts really have 0 likes: that is a count, not "hidden".
    assert sum(1 for p in parsed.posts if p.like_count == 0) == 21
    assert all(p.like_count is not None for p in parsed.posts)


def test_graphql_post_page_2020_carousel_with_owner_followers() -> None:
    parsed = parse("pgrimaud/post__a1_graphql_2020-06_instagram-media.json")
    [post] = parsed.posts
    assert (post.id, post.shortcode, post.media_type) == (
        "2317006284167526179",
        "CAnqPB-Jzcj",
        "carousel",
    )
    assert (post.like_count, post.comment_count) == (808778, 4481)
    # The cover is the first child's image.
    assert names(post) == {"100999294_588574515099288_8259818582928412966_n.jpg"}
    assert parsed.accounts == [AccountRecord("305701719", "jlo", "Jennifer Lopez", 122620202)]


def test_shared_data_profile_2020() -> None:
    parsed = parse("pgrimaud/profilepage_sharedData_2020_from_profile.html.json")
    assert parsed.accounts == [
        AccountRecord("1518284433", "robertdowneyjr", "Robert Downey Jr. Official", 46383825)
    ]
    assert len(parsed.posts) == 22
    first = parsed.posts[0]
    assert (first.id, first.shortcode, first.media_type, first.like_count) == (
        "2304658475295629584",
        "B_7yqw0luEQ",
        "video",
        1157915,
    )
    assert Counter(p.media_type for p in parsed.posts) == {"video": 14, "photo": 6, "carousel": 2}


def test_shared_data_is_extracted_from_an_html_page() -> None:
    profile_page = load("pgrimaud/profilepage_sharedData_2020_from_profile.html.json")
    shared = {"config": {"viewer": None}, "entry_data": {"ProfilePage": [profile_page]}}
    html = (
        '<!DOCTYPE html><html><head><script type="text/javascript">window._sharedData = '
        + json.dumps(shared)
        + ";</script></head><body></body></html>"
    ).encode()
    [document] = html_documents(html)
    parsed = parse_document(document, "/robertdowneyjr/")
    assert parsed is not None and parsed.family == "graphql_page"
    assert parsed.accounts[0].follower_count == 46383825
    assert len(parsed.posts) == 22


def test_additional_data_loaded_is_extracted_too() -> None:
    post_page = load("pgrimaud/post__a1_graphql_2020-06_instagram-media.json")
    html = f"<script>window.__additionalDataLoaded('/p/CAnqPB-Jzcj/',{json.dumps(post_page)});</script>"
    [document] = html_documents(html.encode())
    assert parse_document(document).posts[0].id == "2317006284167526179"
    assert html_documents(b"<html><body>Login</body></html>") == []


# --- web_profile_info ---------------------------------------------------------------------


def test_web_profile_info_2022_full() -> None:
    parsed = parse("pgrimaud/web_profile_info_2022-06_full.json", WEB_PROFILE_INFO_PATH)
    assert parsed.family == "web_profile_info"
    assert parsed.accounts == [
        AccountRecord("1518284433", "robertdowneyjr", "Robert Downey Jr. Official", 52979346)
    ]
    # 12 timeline posts + 12 IGTV videos, 4 of them in both lists: 20 distinct posts.
    assert len(parsed.posts) == 20
    sidecar = post_by_code(parsed, "CdLy2aepGaA")
    assert (sidecar.id, sidecar.media_type, sidecar.like_count) == (
        "2831580432341165696",
        "carousel",
        3307385,
    )
    assert sidecar.owner == parsed.accounts[0]
    assert names(sidecar) == {"279923746_752618449450106_6016545400124263448_n.jpg"}
    igtv = post_by_code(parsed, "CdgUcJGFxkp")
    assert (igtv.media_type, igtv.like_count) == ("video", 2126144)
    assert igtv.image_urls[0].startswith(
        "https://scontent-cdt1-1.cdninstagram.com/v/t51.2885-15/280532224_1184980852238264_"
    )


def test_web_profile_info_2023_trimmed_still_gives_the_follower_count() -> None:
    parsed = parse("pgrimaud/web_profile_info_2023-12_trimmed.json", WEB_PROFILE_INFO_PATH)
    assert parsed.posts == []
    assert parsed.accounts == [
        AccountRecord("1518284433", "robertdowneyjr", "Robert Downey Jr. Official", 52979346)
    ]


# --- web GraphQL queries ------------------------------------------------------------------


def test_graphql_query_user_media_2020() -> None:
    parsed = parse("pgrimaud/graphql_query_hash_user_media_2020.json", "/graphql/query/")
    assert parsed.family == "graphql_query"
    assert len(parsed.posts) == 12
    assert [(p.id, p.media_type, p.like_count) for p in parsed.posts[:3]] == [
        ("2224305748263047050", "video", 695047),
        ("2223751702027662404", "video", 664703),
        ("2223714533029346507", "photo", 1265682),
    ]
    photo = parsed.posts[2]
    assert photo.owner == AccountRecord("1518284433", "robertdowneyjr")
    assert names(photo) == {"82010475_196867448137948_1284559653723659613_n.jpg"}
    assert parsed.accounts == []  # the owner's follower count is not in this response


def test_graphql_query_hashtag_2021() -> None:
    parsed = parse("pgrimaud/graphql_hashtag_2021-01.json", "/graphql/query/")
    assert len(parsed.posts) == 43
    top = parsed.posts[0]
    assert (top.id, top.shortcode, top.like_count, top.comment_count) == (
        "2498227529890105019",
        "CKrfLPHM4a7",
        178,
        9,
    )
    assert names(top) == {"144031504_772540257014394_5182759418352300564_n.jpg"}
    assert Counter(p.media_type for p in parsed.posts) == {"photo": 31, "carousel": 8, "video": 4}


def test_graphql_query_tagged_media_keeps_each_posts_own_owner() -> None:
    parsed = parse("pgrimaud/graphql_tagged_medias_2021-09.json", "/graphql/query/")
    assert len(parsed.posts) == 10
    first = parsed.posts[0]
    assert (first.id, first.like_count, first.owner) == (
        "2648326015839115937",
        1103884,
        AccountRecord("1518284433", "robertdowneyjr"),
    )
    assert {p.owner.id for p in parsed.posts if p.owner} == {
        "14486580694",
        "1518284433",
        "1726762237",
        "3668989876",
        "6301313473",
        "8974286787",
    }


def test_graphql_query_profile_by_id_gives_only_the_account() -> None:
    parsed = parse("pgrimaud/graphql_profile_by_id_2020-06.json", "/graphql/query/")
    assert parsed.posts == []
    assert parsed.accounts == [AccountRecord("3", "kevin")]


def test_graphql_query_xdt_connection_2025_carousel() -> None:
    edges = load("other/xdt_user_timeline_edges_2025-03_kumarakshay2023.json")["posts"]
    document = {"data": {"xdt_api__v1__feed__user_timeline_graphql_connection": {
        "edges": edges, "page_info": {"has_next_page": True}}}}  # fmt: skip
    parsed = parse_document(document, "/graphql/query")
    assert parsed is not None and parsed.family == "graphql_query"
    [post] = parsed.posts
    assert (post.id, post.shortcode, post.media_type) == (
        "3597631270905977008",
        "DHtWpRvMBiw",
        "carousel",
    )
    assert (post.like_count, post.comment_count, post.taken_at) == (4564, 47, 1743091089)
    assert post.owner == AccountRecord("16278726", "bbcnews", "BBC News")
    # The first child (a video) gives the cover: its 720x900 frame first.
    assert names(post) == {"486703953_18503562202022727_1714964118826352504_n.jpg"}
    assert "dst-jpg_e15_tt6" in post.image_urls[0]


# --- the app's v1 API ---------------------------------------------------------------------


def test_v1_feed_timeline_2022() -> None:
    parsed = parse("pgrimaud/feed_timeline_v1_2022-08.json", "/api/v1/feed/timeline/")
    assert parsed.family == "app_v1"
    assert [(p.id, p.media_type, p.like_count, p.owner.username) for p in parsed.posts[:3]] == [
        ("2822243923248759214", "carousel", 660599, "marvelstudios"),
        ("2822280238606496610", "photo", 38458, "mastercorbuzier"),
        ("2822122264212258339", "video", 1869123, "robertdowneyjr"),  # igtv
    ]
    assert Counter(p.media_type for p in parsed.posts) == {
        "carousel": 7, "video": 3, "photo": 1, "reel": 1}  # fmt: skip
    photo = parsed.posts[1]
    assert photo.image_urls[0].startswith(
        "https://instagram.fplm3-1.fna.fbcdn.net/v/t51.2885-15/278932016_1211086105961979_"
    )
    assert names(photo) == {"278932016_1211086105961979_1448817979597828757_n.jpg"}
    assert names(parsed.posts[0]) == {"278990144_971536517065826_1980548288049502681_n.jpg"}
    assert parsed.accounts == []


def test_v1_media_info_carousel_uses_the_first_childs_largest_image() -> None:
    parsed = parse("pgrimaud/media_info_v1_items_2022-03_carousel.json", "/p/CAnqPB-Jzcj/")
    [post] = parsed.posts
    assert (post.id, post.media_type, post.like_count, post.comment_count) == (
        "2317006284167526179",
        "carousel",
        820750,
        4647,
    )
    assert post.image_urls[0].startswith(
        "https://scontent-arn2-2.cdninstagram.com/v/t51.2885-15/100999294_588574515099288_"
    )
    # Same photo, same file name as in the GraphQL page of the same post two years earlier.
    assert names(post) == {"100999294_588574515099288_8259818582928412966_n.jpg"}


def test_v1_media_info_video_and_carousel_with_a_video_cover() -> None:
    [video] = parse("pgrimaud/media_info_v1_items_2022-03_video.json").posts
    assert (video.id, video.media_type, video.like_count) == (
        "2307774091974900767",
        "video",
        600190,
    )
    [carousel] = parse("pgrimaud/media_info_v1_items_2022-03_3.json").posts
    assert (carousel.id, carousel.media_type, carousel.like_count) == (
        "2273581388251073154",
        "carousel",
        1246110,
    )
    assert names(carousel) == {"91024906_241106930350910_1697927927396255515_n.jpg"}


def test_v1_clips_are_reels() -> None:
    parsed = parse("pgrimaud/clips_user_v1_2021-09.json", "/api/v1/clips/user/")
    assert len(parsed.posts) == 12
    assert {p.media_type for p in parsed.posts} == {"reel"}
    first = parsed.posts[0]
    assert (first.id, first.shortcode, first.like_count) == (
        "2589531623544609760",
        "CPv3UqsBFvg",
        16965,
    )
    assert first.owner == AccountRecord("3171067", "noholita", "NOHOLITA 🌹 Camille Callen")


def test_v1_users_info_gives_the_follower_count() -> None:
    parsed = parse("pgrimaud/users_info_v1_2021-09.json", "/api/v1/users/1518284433/info/")
    assert parsed.posts == []
    assert parsed.accounts == [
        AccountRecord("1518284433", "robertdowneyjr", "Robert Downey Jr. Official", 50857062)
    ]


# --- hidden likes, ads, odd values --------------------------------------------------------


def test_hidden_likes_are_none_never_zero() -> None:
    timeline = load("pgrimaud/feed_timeline_v1_2022-08.json")
    items = timeline["feed_items"]
    items[0]["media_or_ad"]["like_and_view_counts_disabled"] = True
    items[1]["media_or_ad"]["like_count"] = -1
    del items[2]["media_or_ad"]["like_count"]
    posts = parse_document(timeline).posts
    assert [p.like_count for p in posts[:4]] == [None, None, None, 855801]

    profile = load("pgrimaud/web_profile_info_2022-06_full.json")
    node = profile["data"]["user"]["edge_owner_to_timeline_media"]["edges"][1]["node"]
    node["like_and_view_counts_disabled"] = True
    other = profile["data"]["user"]["edge_owner_to_timeline_media"]["edges"][3]["node"]
    other["edge_liked_by"]["count"] = -1
    other["edge_media_preview_like"]["count"] = -1
    parsed = parse_document(profile, WEB_PROFILE_INFO_PATH)
    assert post_by_code(parsed, node["shortcode"]).like_count is None
    assert post_by_code(parsed, other["shortcode"]).like_count is None


def test_ads_in_the_timeline_are_skipped() -> None:
    timeline = load("pgrimaud/feed_timeline_v1_2022-08.json")
    ad = copy.deepcopy(timeline["feed_items"][1])
    ad["media_or_ad"].update(
        pk="9999", id="9999_1", ad_id="120200", injected={"label": "Sponsored"}
    )
    timeline["feed_items"].insert(0, ad)
    timeline["feed_items"].append({"end_of_feed_demarcator": {"id": "end"}})
    posts = parse_document(timeline).posts
    assert len(posts) == 12
    assert "9999" not in {p.id for p in posts}


def test_ids_as_integers_strings_and_pk_underscore_owner() -> None:
    assert media_id(2317006284167526179) == "2317006284167526179"
    assert media_id("3001_4004") == "3001"
    assert media_id("3001") == "3001"
    assert media_id(None) is None
    assert media_id("abc") is None
    assert media_id(True) is None
    media = load("pgrimaud/media_info_v1_items_2022-03_video.json")
    del media["items"][0]["pk"]  # only "id": "2307774091974900767_305701719"
    assert parse_document(media).posts[0].id == "2307774091974900767"


def test_missing_fields_become_none_and_junk_is_ignored() -> None:
    document = {"items": [
        {"pk": 1, "media_type": 1},
        {"pk": "2", "media_type": 1, "like_count": "12", "user": {"pk": 5}, "taken_at": None},
        {"media_type": 1},  # no id: skipped
        "not a media",
        {"pk": 3, "media_type": 11},  # not a post type
    ]}  # fmt: skip
    posts = parse_document(document, "/api/v1/feed/user/5/").posts
    assert [(p.id, p.like_count, p.owner, p.image_urls) for p in posts] == [
        ("1", None, None, []),
        ("2", 12, AccountRecord("5"), []),
    ]
    assert parse_document({"status": "ok"}) is None
    assert parse_document([1, 2]) is None
    assert parse_document({"data": {"viewer": None}}, "/graphql/query").posts == []


# --- bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        ("gzip", gzip.compress),
        ("br", brotli.compress),
        ("zstd", zstandard.ZstdCompressor().compress),
        ("identity", lambda data: data),
    ],
)
def test_bodies_are_decoded_from_gzip_br_and_zstd(coding: str, compress) -> None:
    raw = (SAMPLES / "pgrimaud/users_info_v1_2021-09.json").read_bytes()
    assert decode_body(compress(raw), coding) == raw


def test_an_undecodable_body_is_a_clear_error() -> None:
    with pytest.raises(BodyError, match="cannot decode a 'gzip' body"):
        decode_body(b"definitely not gzip", "gzip")
    with pytest.raises(BodyError, match="Content-Encoding 'compress'"):
        decode_body(b"x", "compress")


def test_the_for_loop_guard_and_several_documents_in_one_body() -> None:
    assert json_documents(b'for (;;);{"a": 1}') == [{"a": 1}]
    assert json_documents(b'  for(;;); {"a": 1}\r\n{"b": 2}\n') == [{"a": 1}, {"b": 2}]
    assert looks_like_json(b'for (;;);{"a":1}') and looks_like_json(b' {"a":1}')
    assert not looks_like_json(b"(function(){})();")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the body is empty"),
        (b"Please wait a few minutes before you try again.", "not JSON: Expecting value"),
        (b'{"data": {"user": ', "not JSON"),
    ],
)
def test_non_json_bodies_are_a_clear_error(body: bytes, message: str) -> None:
    with pytest.raises(BodyError, match=message):
        json_documents(body)


def test_fixture_readme_names_every_sample() -> None:
    readme = (SAMPLES / "README.md").read_text(encoding="utf-8")
    for path in SAMPLES.glob("*/*.json"):
        assert f"`{path.name}`" in readme, path.name
