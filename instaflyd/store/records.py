"""What capture hands to the store: plain records of a post and of an account."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MediaType = Literal["photo", "carousel", "video", "reel"]


@dataclass
class AccountRecord:
    """An Instagram account as one response describes it; None means "not in this response"."""

    id: str
    username: str | None = None
    full_name: str | None = None
    follower_count: int | None = None


@dataclass
class PostRecord:
    """A post as one response describes it; None means "not in this response".

    `like_count` is None when likes are hidden. `image_urls` are the cover image's candidate
    URLs, largest first; they are matched to CDN responses by file name.
    """

    id: str
    media_type: MediaType
    shortcode: str | None = None
    owner: AccountRecord | None = None
    like_count: int | None = None
    comment_count: int | None = None
    taken_at: int | None = None
    image_urls: list[str] = field(default_factory=list)
    source: str | None = None


def image_file_name(url: str) -> str:
    """The file name that identifies a CDN image across hosts, sizes, crops and signatures.

    >>> image_file_name("https://scontent.cdninstagram.com/v/t51.2885-15/s640x640/123_456_n.jpg?oh=1")
    '123_456_n.jpg'
    """
    path = url.split("?", 1)[0].split("#", 1)[0]
    return path.rstrip("/").rsplit("/", 1)[-1]
