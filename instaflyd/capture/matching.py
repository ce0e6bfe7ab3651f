"""CDN images that arrived before the JSON naming them: held in memory by file name, bounded.

An image is matched to a post by its URL's file name (`image_file_name`), never the full URL.
When no post names the file yet, the image waits here: at most `max_count` images of at most
`max_bytes` together, each for at most `max_age_seconds` (of the clock the caller passes: the
flows' own when a dump is imported, so it replays the same way; the monotonic clock in the live
writer, so that a step of the wall clock neither expires them all nor keeps them forever), the
oldest leaving first. Of several variants with the same name,
the largest is kept.
"""

from __future__ import annotations

from collections import OrderedDict

from instaflyd.capture.images import VerifiedImage
from instaflyd.store.posts import larger_image_wins

DEFAULT_MAX_BYTES = 64_000_000  # proxy.pending_images_max_bytes's default


class PendingImages:
    def __init__(
        self, max_count: int, max_age_seconds: float, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.max_count = max_count
        self.max_age_seconds = max_age_seconds
        self.max_bytes = max_bytes
        self._waiting: OrderedDict[str, tuple[float, VerifiedImage]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def bytes(self) -> int:
        """The image bytes waiting."""
        return self._bytes

    def add(self, name: str, image: VerifiedImage, now: float) -> int:
        """Hold an image until a post names it; returns how many images gave up waiting."""
        gave_up = self.expire(now)
        known = self._waiting.get(name)
        if larger_image_wins(image.area, known[1].area if known else None):
            self._remove(name)
            self._waiting[name] = (now, image)
            self._bytes += len(image.data)
        while self._waiting and (
            len(self._waiting) > self.max_count or self._bytes > self.max_bytes
        ):
            self._remove(next(iter(self._waiting)))
            gave_up += 1
        return gave_up

    def _remove(self, name: str) -> VerifiedImage | None:
        entry = self._waiting.pop(name, None)
        if entry is None:
            return None
        self._bytes -= len(entry[1].data)
        return entry[1]

    def pop(self, name: str) -> VerifiedImage | None:
        """The waiting image with this file name, if any (it stops waiting)."""
        return self._remove(name)

    def expire(self, now: float) -> int:
        """Drop images older than the age limit; returns how many."""
        expired = [
            name for name, (since, _) in self._waiting.items() if now - since > self.max_age_seconds
        ]
        for name in expired:
            self._remove(name)
        return len(expired)
