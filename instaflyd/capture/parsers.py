"""Instagram JSON documents -> `PostRecord`s and `AccountRecord`s, recognised by their own shape.

One walk visits every object of a document once (iteratively, so depth costs no stack) and
recognises what each object *is* by its own fields, wherever it sits:

- a *media node* in the GraphQL dialect (2017-22: `id` with `shortcode`/`code`/`display_url`/
  `display_src`; `edge_liked_by`, `edge_media_preview_like` or 2017's `likes`) or in the v1 dialect
  (app API, 2022 `?__a=1&__d=dis`, web `xdt_api__v1__` nodes: `pk`/`id` with `media_type`;
  `like_count`, `image_versions2`);
- a *user* (`id`/`pk` with `username` or a follower count: `follower_count`, `edge_followed_by`,
  2017's `followed_by`).

A media node's owner is its own `owner`/`user`, or else the user whose own-media connection
(`edge_owner_to_timeline_media`, `edge_felix_video_timeline`, 2017's `media`) encloses it: the only
places where a path carries meaning, with "top" sections read first so ranked posts come first.
Every value may be missing; a field that is absent becomes None (never 0), so a later, fuller
response fills it in. Hidden likes (`like_and_view_counts_disabled`, a count of -1) are None. A
carousel is one post with its first child as the cover. Ads and stories are skipped in whatever
wrapper they come.

What is not understood is said, not dropped: a *media-like* object (one with `display_url`,
`display_src`, `image_versions2` or `shortcode`) that is neither a media node nor part of one makes
the document "not understood", and so does a document with user-like objects that yields nothing;
`Parsed.fingerprint` then holds the key paths that led to them, without any value
(see `instaflyd.capture.fingerprint`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from instaflyd.capture.fingerprint import shape_fingerprint
from instaflyd.store.records import AccountRecord, MediaType, PostRecord

Json = Any


@dataclass
class Parsed:
    """What one response said: a label for its family, the posts and accounts it described, and
    the shape fingerprint of what it held but was not understood (None when all was)."""

    family: str
    posts: list[PostRecord] = field(default_factory=list)
    accounts: list[AccountRecord] = field(default_factory=list)
    fingerprint: str | None = None


def parse_document(document: Json, path: str = "") -> Parsed | None:
    """Every post and account in the document; None when it holds nothing post- or user-like
    and is of no family we know."""
    walk = _Walk(document_family(document, path) or SHAPE_FAMILY)
    walk.run(document)
    if not walk.understood():
        walk.parsed.fingerprint = shape_fingerprint(document, _unread_paths(document, walk))
    parsed = walk.parsed
    nothing = not (parsed.posts or parsed.accounts or parsed.fingerprint)
    if nothing and parsed.family == SHAPE_FAMILY:
        return None
    return parsed


# Documents of no known family that held posts anyway are labelled by the shape that found them.
SHAPE_FAMILY = "shape"


def document_family(document: Json, path: str = "") -> str | None:
    """A label for the endpoint family, oldest first (stored as a post's `source`); the walk
    does not depend on it.

    - `legacy_a1`: the 2017 `?__a=1` pages (`user.media.nodes`, `tag.media.nodes`);
    - `graphql_page`: `?__a=1` and `window._sharedData` pages of 2018-22 (`graphql`, `entry_data`);
    - `web_profile_info`: `/api/v1/users/web_profile_info/` (`data.user`);
    - `graphql_query`: `/graphql/query` and `/api/graphql` (`data`);
    - `app_v1`: the app's v1 API (`items[]`, `feed_items[]`, `user`, sectioned grids).
    """
    if not isinstance(document, dict):
        return None
    if "graphql" in document or "entry_data" in document:
        return "graphql_page"
    if isinstance(document.get("data"), dict):
        return "web_profile_info" if "web_profile_info" in path else "graphql_query"
    user = document.get("user")
    if "tag" in document or (isinstance(user, dict) and "media" in user):
        return "legacy_a1"
    if any(key in document for key in V1_DOCUMENT_KEYS) or isinstance(user, dict):
        return "app_v1"
    return None


V1_DOCUMENT_KEYS = ("items", "feed_items", "sectional_items", "sections", "native_location_data")


# --- the walk -------------------------------------------------------------------------------

# Connections of a user object whose nodes are the user's own posts (owner may be left out).
OWN_MEDIA_KEYS = frozenset(("edge_owner_to_timeline_media", "edge_felix_video_timeline", "media"))
# A media node's parts that are read with it (carousel children, image candidates): not walked.
MEDIA_PARTS = frozenset((
    "edge_sidecar_to_children", "carousel_media", "image_versions2", "video_versions",
    "display_resources", "thumbnail_resources", "dimensions",
))  # fmt: skip
# Fields by which an object looks like a post even when it is not recognised as one.
MEDIA_HINTS = ("display_url", "display_src", "image_versions2", "shortcode")
USER_HINTS = ("username", "follower_count", "edge_followed_by", "followed_by")
_MEDIA_HINTS = frozenset(MEDIA_HINTS)
_USER_HINTS = frozenset(USER_HINTS)
_ID_KEYS = frozenset(("pk", "pk_id", "id"))


class _Walk:
    """One pass over a document: a stack of (value, enclosing owner, inside a media node)."""

    def __init__(self, family: str) -> None:
        self.parsed = Parsed(family)
        self.posts: dict[str, PostRecord] = {}
        self.accounts: dict[str, AccountRecord] = {}
        self.media_nodes = 0  # read as media nodes, posts or not (ads, stories, other types)
        self.unread_media = 0  # media-like objects that were not read as a media node
        self.user_like = 0  # user-like objects outside media nodes

    def run(self, document: Json) -> None:
        stack: list[tuple[Json, AccountRecord | None, bool]] = [(document, None, False)]
        while stack:
            value, owner, in_media = stack.pop()
            if isinstance(value, list):
                stack.extend((item, owner, in_media) for item in reversed(value))
            elif isinstance(value, dict):
                stack.extend(reversed(self._visit(value, owner, in_media)))
        self.parsed.posts = list(self.posts.values())
        self.parsed.accounts = list(self.accounts.values())

    def understood(self) -> bool:
        found = bool(self.media_nodes or self.accounts)
        return self.unread_media == 0 and (found or self.user_like == 0)

    def _visit(
        self, node: dict[str, Json], owner: AccountRecord | None, in_media: bool
    ) -> list[tuple[Json, AccountRecord | None, bool]]:
        """Read the object; return its children to visit, in reading order."""
        if is_ad(node):
            return []  # an ad, or the wrapper of one: nothing in it is a post
        kind = node_kind(node)
        if kind == "media":
            self.media_nodes += 1
            self._add_post(read_media(node, self.parsed.family, page_owner=owner))
            return [(v, None, True) for k, v in _ordered(node) if k not in MEDIA_PARTS]
        if kind == "user":
            self.user_like += not in_media
            account = account_from(node)
            if account is not None and (account.follower_count is not None or not in_media):
                account = self._add_account(account)
            return [
                (v, account if k in OWN_MEDIA_KEYS else None, in_media) for k, v in _ordered(node)
            ]
        if kind == "media_like":
            self.unread_media += 1
        elif kind == "user_like":
            self.user_like += not in_media
        return [(v, owner, in_media) for _, v in _ordered(node)]

    def _add_post(self, post: PostRecord | None) -> None:
        if post is None or post.id in self.posts:
            return
        self.posts[post.id] = post
        if post.owner is not None and post.owner.follower_count is not None:
            self._add_account(post.owner)

    def _add_account(self, account: AccountRecord) -> AccountRecord:
        """Merge into what the document said earlier about the same account."""
        known = self.accounts.setdefault(account.id, account)
        if known is not account:
            for name in (f.name for f in fields(AccountRecord)):
                if getattr(known, name) is None:
                    setattr(known, name, getattr(account, name))
        return known


def node_kind(node: dict[str, Json]) -> str:
    """What an object is by its own fields: media, user, media_like, user_like or other."""
    if is_v1_media(node) or is_graph_media(node):
        return "media"
    keys = node.keys()
    if not keys.isdisjoint(_USER_HINTS):
        if not keys.isdisjoint(_ID_KEYS) and account_from(node) is not None:
            return "user"
        return "user_like"
    if not keys.isdisjoint(_MEDIA_HINTS):
        return "media_like"
    return "other"


def _ordered(node: dict[str, Json]) -> Iterator[tuple[str, Json]]:
    """Containers only, "top" sections (ranked posts) first, then in document order."""
    containers = []
    ranked = False
    for key, value in node.items():
        if isinstance(value, (dict, list)):
            containers.append((key, value))
            ranked = ranked or "top" in key
    if ranked:
        containers.sort(key=lambda pair: "top" not in pair[0])
    return iter(containers)


def _unread_paths(document: Json, walk: _Walk) -> list[tuple[list[str], list[str]]]:
    """Second pass, only over a document not understood: the key path of each unread media-like
    object (or of each user-like object when nothing was found) and the hint fields it held."""
    wanted = {"media_like"} if walk.unread_media else {"user_like", "user"}
    found: list[tuple[list[str], list[str]]] = []
    stack: list[tuple[Json, list[str]]] = [(document, [])]
    while stack:
        value, path = stack.pop()
        if isinstance(value, list):
            stack.extend((item, [*path, "[]"]) for item in reversed(value))
            continue
        if not isinstance(value, dict) or is_ad(value):
            continue
        kind = node_kind(value)
        if kind in wanted:
            hints = [key for key in (*MEDIA_HINTS, *USER_HINTS) if key in value]
            found.append((path, hints))
        stack.extend(
            (child, [*path, key])
            for key, child in reversed(list(_ordered(value)))
            if not (kind == "media" and key in MEDIA_PARTS)
        )
    return found


# --- media nodes ----------------------------------------------------------------------------


def is_graph_media(node: dict[str, Json]) -> bool:
    """`id` with a shortcode or a display image: `GraphImage`, `GraphSidecar`, `GraphVideo`."""
    return not node.keys().isdisjoint(GRAPH_MEDIA_KEYS) and media_id(node.get("id")) is not None


GRAPH_MEDIA_KEYS = frozenset(("shortcode", "code", "display_url", "display_src"))


def is_v1_media(node: dict[str, Json]) -> bool:
    """`pk` (or `id`) with a `media_type`."""
    if "media_type" not in node:
        return False
    return media_id(node.get("pk") if node.get("pk") is not None else node.get("id")) is not None


def read_media(
    node: dict[str, Json], source: str, page_owner: AccountRecord | None = None
) -> PostRecord | None:
    """The post a media node describes; None for ads, stories and what is not a post."""
    if is_v1_media(node):
        return v1_post(node, source, page_owner)
    return graph_post(node, source, page_owner)


def graph_post(
    node: Json, source: str, page_owner: AccountRecord | None = None
) -> PostRecord | None:
    """A GraphQL media node (`GraphImage`, `GraphSidecar`, `GraphVideo`; 2017-2022)."""
    if not isinstance(node, dict) or is_ad(node) or _is_story(node):
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
    owner = _owner(node, page_owner, ("owner", "user"))
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


# --- v1 media -------------------------------------------------------------------------------

V1_PHOTO, V1_VIDEO, V1_CAROUSEL = 1, 2, 8


def v1_post(media: Json, source: str, page_owner: AccountRecord | None = None) -> PostRecord | None:
    """A v1 media object (app API, 2022 `?__a=1&__d=dis`, web `xdt_api__v1__` nodes)."""
    if not isinstance(media, dict) or is_ad(media) or _is_story(media):
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
        owner=_owner(media, page_owner, ("user", "owner")),
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


def _owner(
    node: dict[str, Json], page_owner: AccountRecord | None, own: tuple[str, str]
) -> AccountRecord | None:
    """The node's own owner (`own`: the dialect's key, then the other's), or the user whose own
    media encloses it (the fuller record of the two when they are the same account)."""
    owner = account_from(_dict(node.get(own[0])) or _dict(node.get(own[1])))
    if page_owner is not None and (owner is None or owner.id == page_owner.id):
        return page_owner
    return owner


def _is_story(node: dict[str, Json]) -> bool:
    """Stories expire and are not posts: `GraphStory*`, v1 items with `expiring_at`."""
    return (
        str(node.get("__typename") or "").startswith("GraphStory")
        or "expiring_at" in node
        or "expiring_at_timestamp" in node
        or node.get("product_type") == "story"
    )


AD_KEYS = frozenset(("is_ad", "ad_id", "injected", "ad_action", "dr_ad_type", "product_type"))


def is_ad(media: dict[str, Json]) -> bool:
    if media.keys().isdisjoint(AD_KEYS):
        return False
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


def _largest_first(sized: Sequence[tuple[float, str]]) -> list[str]:
    ordered = sorted(sized, key=lambda pair: -pair[0])  # stable: ties keep document order
    return list(dict.fromkeys(url for _, url in ordered))
