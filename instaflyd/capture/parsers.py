"""Instagram JSON documents -> `PostRecord`s and `AccountRecord`s, one function per endpoint family.

The families of DESIGN.md, oldest first:

- `parse_legacy_a1`: the 2017 `?__a=1` pages (`user.media.nodes`, `tag.media.nodes`);
- `parse_graphql_page`: `?__a=1` and `window._sharedData` pages of 2018-22 (`graphql.user`,
  `graphql.hashtag`, `graphql.shortcode_media`, `entry_data.ProfilePage[0]`, ...);
- `parse_web_profile_info`: `/api/v1/users/web_profile_info/` (`data.user`);
- `parse_graphql_query`: `/graphql/query` and `/api/graphql` (`data.user`, `data.hashtag`, and
  the v1-shaped `data.xdt_api__v1__...` connections);
- `parse_app_v1`: the app's v1 API (`items[]`, `feed_items[].media_or_ad`, `user`).

Two node shapes carry the posts: GraphQL nodes (`shortcode`, `display_url`, `edge_liked_by`) and
v1 media (`pk`, `code`, `like_count`, `image_versions2`). Every value may be missing; a field
that is absent becomes None (never 0), so a later, fuller response fills it in. Hidden likes
(`like_and_view_counts_disabled`, a count of -1) are None. Ads are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from instaflyd.store.records import AccountRecord, MediaType, PostRecord

Json = Any


@dataclass
class Parsed:
    """What one response said: its family, the posts and the accounts it described."""

    family: str
    posts: list[PostRecord] = field(default_factory=list)
    accounts: list[AccountRecord] = field(default_factory=list)

    def add_post(self, post: PostRecord | None) -> None:
        if post is not None and all(post.id != known.id for known in self.posts):
            self.posts.append(post)

    def add_account(self, account: AccountRecord | None) -> None:
        if account is None:
            return
        for known in self.accounts:
            if known.id == account.id:
                for name in (f.name for f in fields(AccountRecord)):
                    if getattr(known, name) is None:
                        setattr(known, name, getattr(account, name))
                return
        self.accounts.append(account)


def parse_document(document: Json, path: str = "") -> Parsed | None:
    """Pick the family by the document's shape (the same path answered differently over the
    years); None when it describes no posts or accounts we know of."""
    if not isinstance(document, dict):
        return None
    if "graphql" in document or "entry_data" in document:
        return parse_graphql_page(document)
    if isinstance(document.get("data"), dict):
        if "web_profile_info" in path:
            return parse_web_profile_info(document)
        return parse_graphql_query(document)
    user = document.get("user")
    if "tag" in document or (isinstance(user, dict) and "media" in user):
        return parse_legacy_a1(document)
    if "items" in document or "feed_items" in document or isinstance(user, dict):
        return parse_app_v1(document)
    return None


# --- the families ---------------------------------------------------------------------------


def parse_legacy_a1(document: Json) -> Parsed:
    """2017 `?__a=1`: `user` with `followed_by.count` and `media.nodes`, or `tag.media.nodes`."""
    parsed = Parsed("legacy_a1")
    user = _dict(document.get("user"))
    owner = account_from(user)
    parsed.add_account(owner)
    for node in _list(_dict(user.get("media")).get("nodes")):
        parsed.add_post(graph_post(node, parsed.family, page_owner=owner))
    tag = _dict(document.get("tag"))
    for key in ("top_posts", "media"):
        for node in _list(_dict(tag.get(key)).get("nodes")):
            parsed.add_post(graph_post(node, parsed.family))
    return parsed


def parse_graphql_page(document: Json) -> Parsed:
    """`?__a=1` and `_sharedData` pages: `graphql.user|hashtag|shortcode_media`; in a
    `_sharedData` object the same page objects sit under `entry_data.<Page>[]`."""
    parsed = Parsed("graphql_page")
    pages = [document]
    for page_list in _dict(document.get("entry_data")).values():
        pages.extend(page for page in _list(page_list) if isinstance(page, dict))
    for page in pages:
        graphql = _dict(page.get("graphql"))
        _graph_user(parsed, _dict(graphql.get("user")))
        _graph_hashtag(parsed, _dict(graphql.get("hashtag")))
        _graph_single_media(parsed, _dict(graphql.get("shortcode_media")))
        if page is not document and "user" in page:  # a 2017 page inside _sharedData
            legacy = parse_legacy_a1(page)
            for post in legacy.posts:
                parsed.add_post(post)
            for account in legacy.accounts:
                parsed.add_account(account)
    return parsed


def parse_web_profile_info(document: Json) -> Parsed:
    """`/api/v1/users/web_profile_info/?username=`: `data.user`, a GraphQL user object."""
    parsed = Parsed("web_profile_info")
    _graph_user(parsed, _dict(_dict(document.get("data")).get("user")))
    return parsed


def parse_graphql_query(document: Json) -> Parsed:
    """`/graphql/query`, `/api/graphql`: GraphQL objects and v1-shaped `xdt_api__v1__` parts."""
    parsed = Parsed("graphql_query")
    for key, value in _dict(document.get("data")).items():
        if key == "user":
            _graph_user(parsed, _dict(value))
        elif key == "hashtag":
            _graph_hashtag(parsed, _dict(value))
        elif key in ("shortcode_media", "xdt_shortcode_media"):
            _graph_single_media(parsed, _dict(value))
        elif key.startswith("xdt_"):
            for media in _v1_media_in(value):
                parsed.add_post(v1_post(media, parsed.family))
    return parsed


def parse_app_v1(document: Json) -> Parsed:
    """The v1 API: `feed/timeline`, `feed/user/<pk>`, `media/<pk>/info`, `clips/user`
    (`items[]`, `feed_items[].media_or_ad`) and `users/<pk>/info` (`user.follower_count`)."""
    parsed = Parsed("app_v1")
    parsed.add_account(account_from(_dict(document.get("user"))))
    for media in _v1_media_in(document):
        parsed.add_post(v1_post(media, parsed.family))
    return parsed


# --- GraphQL objects ------------------------------------------------------------------------

# Connections of a user object whose nodes are the user's own posts (owner may be left out).
OWN_MEDIA_EDGES = ("edge_owner_to_timeline_media", "edge_felix_video_timeline")


def _graph_user(parsed: Parsed, user: dict[str, Json]) -> None:
    owner = account_from(user)
    parsed.add_account(owner)
    reel = _dict(user.get("reel"))  # the "profile by id" query: user -> reel -> user
    parsed.add_account(account_from(_dict(reel.get("user")) or _dict(reel.get("owner"))))
    for key, value in user.items():
        if key.startswith("edge_") and isinstance(value, dict):
            page_owner = owner if key in OWN_MEDIA_EDGES else None
            for node in _edge_nodes(value):
                if _is_graph_media(node):
                    parsed.add_post(graph_post(node, parsed.family, page_owner=page_owner))


def _graph_hashtag(parsed: Parsed, hashtag: dict[str, Json]) -> None:
    for key in ("edge_hashtag_to_top_posts", "edge_hashtag_to_media"):
        for node in _edge_nodes(_dict(hashtag.get(key))):
            parsed.add_post(graph_post(node, parsed.family))


def _graph_single_media(parsed: Parsed, media: dict[str, Json]) -> None:
    if not media:
        return
    post = graph_post(media, parsed.family)
    parsed.add_post(post)
    if post is not None and post.owner is not None and post.owner.follower_count is not None:
        parsed.add_account(post.owner)


def graph_post(
    node: Json, source: str, page_owner: AccountRecord | None = None
) -> PostRecord | None:
    """A GraphQL media node (`GraphImage`, `GraphSidecar`, `GraphVideo`; 2017-2022)."""
    if not isinstance(node, dict) or node.get("is_ad"):
        return None
    post_id = media_id(node.get("id"))
    if post_id is None:
        return None
    children = list(_edge_nodes(_dict(node.get("edge_sidecar_to_children"))))
    typename = str(node.get("__typename") or "")
    media_type: MediaType
    if typename == "GraphSidecar" or children:
        media_type = "carousel"
    elif typename == "GraphVideo" or node.get("is_video"):
        media_type = "reel" if node.get("product_type") == "clips" else "video"
    else:
        media_type = "photo"
    owner_node = _dict(node.get("owner"))
    owner = account_from(owner_node)
    if page_owner is not None and (owner is None or owner.id == page_owner.id):
        owner = page_owner
    likes = None
    if not node.get("like_and_view_counts_disabled"):
        likes = _first_count(node, "edge_liked_by", "edge_media_preview_like", "likes")
    cover = children[0] if children else node
    return PostRecord(
        id=post_id,
        media_type=media_type,
        shortcode=_text(node.get("shortcode") or node.get("code")),
        owner=owner,
        like_count=likes,
        comment_count=_first_count(
            node, "edge_media_to_comment", "edge_media_to_parent_comment", "comments"
        ),
        taken_at=_int(node.get("taken_at_timestamp") or node.get("date")),
        image_urls=graph_image_urls(cover) or graph_image_urls(node),
        source=source,
    )


def graph_image_urls(node: dict[str, Json]) -> list[str]:
    """`display_url` (or 2017's `display_src`), then the resized variants, largest first."""
    dimensions = _dict(node.get("dimensions"))
    full_area = (_int(dimensions.get("width")) or 0) * (_int(dimensions.get("height")) or 0)
    sized: list[tuple[float, str]] = []
    for key in ("display_url", "display_src"):
        if isinstance(node.get(key), str):
            sized.append((full_area or float("inf"), node[key]))
    for key in ("display_resources", "thumbnail_resources"):
        for resource in _list(node.get(key)):
            resource = _dict(resource)
            if isinstance(resource.get("src"), str):
                area = (_int(resource.get("config_width")) or 0) * (
                    _int(resource.get("config_height")) or 0
                )
                sized.append((area, resource["src"]))
    if isinstance(node.get("thumbnail_src"), str):
        sized.append((0, node["thumbnail_src"]))
    return _largest_first(sized)


def _is_graph_media(node: dict[str, Json]) -> bool:
    return any(key in node for key in ("shortcode", "code", "display_url", "display_src"))


# --- v1 media -------------------------------------------------------------------------------

V1_PHOTO, V1_VIDEO, V1_CAROUSEL = 1, 2, 8


def v1_post(media: Json, source: str) -> PostRecord | None:
    """A v1 media object (app API, 2022 `?__a=1&__d=dis`, web `xdt_api__v1__` nodes)."""
    if not isinstance(media, dict) or _is_ad(media):
        return None
    post_id = media_id(media.get("pk") if media.get("pk") is not None else media.get("id"))
    if post_id is None:
        return None
    carousel = [child for child in _list(media.get("carousel_media")) if isinstance(child, dict)]
    kind = _int(media.get("media_type"))
    media_type: MediaType
    if kind == V1_CAROUSEL or carousel:
        media_type = "carousel"
    elif kind == V1_VIDEO:
        media_type = "reel" if media.get("product_type") == "clips" else "video"
    elif kind == V1_PHOTO:
        media_type = "photo"
    else:
        return None  # stories' stickers, live, guides...: not posts
    likes = None
    if not media.get("like_and_view_counts_disabled"):
        likes = _count(media.get("like_count"))
    cover = carousel[0] if carousel else media
    return PostRecord(
        id=post_id,
        media_type=media_type,
        shortcode=_text(media.get("code")),
        owner=account_from(_dict(media.get("user")) or _dict(media.get("owner"))),
        like_count=likes,
        comment_count=_count(media.get("comment_count")),
        taken_at=_int(media.get("taken_at")),
        image_urls=v1_image_urls(cover) or v1_image_urls(media),
        source=source,
    )


def v1_image_urls(media: dict[str, Json]) -> list[str]:
    candidates = _list(_dict(media.get("image_versions2")).get("candidates"))
    sized = [
        ((_int(c.get("width")) or 0) * (_int(c.get("height")) or 0), c["url"])
        for c in candidates
        if isinstance(c, dict) and isinstance(c.get("url"), str)
    ]
    return _largest_first(sized)


def _v1_media_in(container: Json) -> Iterator[Json]:
    """The media objects of a v1 response or an `xdt_api__v1__` part: `items[]` (or their
    `media`), `feed_items[].media_or_ad`, `edges[].node` (or its `media`)."""
    container = _dict(container)
    for item in _list(container.get("items")):
        yield _dict(item).get("media", item)
    for item in _list(container.get("feed_items")):
        yield _dict(item).get("media_or_ad")
    for node in _edge_nodes(container):
        yield node.get("media", node) if isinstance(node.get("media"), dict) else node


def _is_ad(media: dict[str, Json]) -> bool:
    return bool(
        media.get("is_ad")
        or media.get("ad_id")
        or media.get("injected")
        or media.get("ad_action")
        or media.get("dr_ad_type")
        or media.get("product_type") == "ad"
    )


# --- accounts and values --------------------------------------------------------------------


def account_from(user: dict[str, Json]) -> AccountRecord | None:
    """An account from any user shape: v1 (`pk`, `follower_count`), GraphQL (`id`,
    `edge_followed_by.count`) or 2017 (`id`, `followed_by.count`)."""
    account_id = None
    for key in ("pk", "pk_id", "id"):
        account_id = media_id(user.get(key))
        if account_id is not None:
            break
    if account_id is None:
        return None
    followers = _count(user.get("follower_count"))
    if followers is None:
        followers = _first_count(user, "edge_followed_by", "followed_by")
    return AccountRecord(
        id=account_id,
        username=_text(user.get("username")),
        full_name=_text(user.get("full_name")),
        follower_count=followers,
    )


def media_id(value: Json) -> str | None:
    """Media pk (or account id) as text: 3001 -> "3001", "3001_4004" -> "3001"."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).split("_", 1)[0].strip()
    return text if text.isdigit() else None


def _first_count(node: dict[str, Json], *keys: str) -> int | None:
    """The first `node[key].count` present; -1 (hidden) and junk are None."""
    for key in keys:
        holder = node.get(key)
        if isinstance(holder, dict) and "count" in holder:
            return _count(holder["count"])
    return None


def _count(value: Json) -> int | None:
    number = _int(value)
    return number if number is not None and number >= 0 else None


def _int(value: Json) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _text(value: Json) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Json) -> dict[str, Json]:
    return value if isinstance(value, dict) else {}


def _list(value: Json) -> list[Json]:
    return value if isinstance(value, list) else []


def _edge_nodes(connection: dict[str, Json]) -> Iterator[dict[str, Json]]:
    for edge in _list(connection.get("edges")):
        node = _dict(edge).get("node")
        if isinstance(node, dict):
            yield node


def _largest_first(sized: list[tuple[float, str]]) -> list[str]:
    ordered = sorted(sized, key=lambda pair: -pair[0])  # stable: ties keep document order
    return list(dict.fromkeys(url for _, url in ordered))
