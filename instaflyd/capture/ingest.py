"""One captured response -> the store: parse documents into posts and accounts, match images.

The proxy's writer process and `instaflyd import` both feed responses through an `Ingester`, so a
dump file is read exactly as the live proxy would have read it. Each response is one write
transaction. A document that held post- or user-like objects the parsers could not read is
counted in the store by path and shape (`formats not understood`). What happened is returned
as a `CaptureCounts` record (posts_new, images_stored, ...); the caller decides where those
numbers go.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Callable

from instaflyd.capture.bodies import (
    DEFAULT_MAX_BYTES,
    BodyError,
    BodyTooLarge,
    decode_body,
    html_documents,
    is_html,
    json_documents,
    looks_like_json,
)
from instaflyd.capture.counts import CaptureCounts
from instaflyd.capture.flows import CapturedResponse, path_without_query
from instaflyd.capture.images import ImageRejected, VerifiedImage, verify_image
from instaflyd.capture.matching import PendingImages
from instaflyd.capture.parsers import Parsed, parse_document
from instaflyd.store import Database, ImageFiles
from instaflyd.store.devices import record_device_posts
from instaflyd.store.formats import count_unread_format
from instaflyd.store.images import forget_unused_images, record_image
from instaflyd.store.posts import (
    attach_image,
    cover_area,
    get_post,
    larger_image_wins,
    post_for_image_name,
    upsert_account,
    upsert_post,
)
from instaflyd.store.records import image_file_name

log = logging.getLogger("instafly.capture")


class CaptureError(Exception):
    """A response from an Instagram host that should have been readable but was not."""


class ResponseTooLarge(CaptureError):
    """A body over the size limit before or after decoding (a decompression bomb): skipped."""


class Ingester:
    def __init__(
        self,
        db: Database,
        images: ImageFiles,
        pending: PendingImages,
        max_body_bytes: int = DEFAULT_MAX_BYTES,
        imported: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.db = db
        # How long an image has waited for its post: on the flows' own clock (None: a dump
        # replays the same way) or, in the live writer, the monotonic clock, which a step of
        # the wall clock cannot make expire every waiting image at once.
        self.clock = clock
        self.imported = imported  # an imported dump, not the proxy: posts are marked so
        self.images = images
        self.pending = pending
        self.max_body_bytes = max_body_bytes  # before and after decoding
        self._replaced: list[tuple[str, str]] = []  # files to remove once the transaction commits

    def ingest(self, response: CapturedResponse) -> CaptureCounts:
        """Store what the response says; raises CaptureError for an unreadable document and
        ResponseTooLarge for a body that decodes to more than `max_body_bytes`."""
        outcome: Counter[str] = Counter()
        try:
            if response.kind == "image":
                self._ingest_image(response, outcome)
            else:
                self._ingest_document(response, outcome)
        except BodyTooLarge as exc:
            raise ResponseTooLarge(str(exc)) from None
        finally:
            replaced, self._replaced = self._replaced, []
        self.images.remove(replaced)  # committed: the replaced variants' files can go
        return CaptureCounts.of(outcome)

    def _decode(self, response: CapturedResponse) -> bytes:
        return decode_body(response.body, response.content_encoding, self.max_body_bytes)

    # --- documents ------------------------------------------------------------------------

    def _ingest_document(self, response: CapturedResponse, outcome: Counter[str]) -> None:
        if not 200 <= response.status < 300:
            return
        try:
            body = self._decode(response)
            if is_html(body, response.content_type):
                documents = html_documents(body)
            elif "javascript" in response.content_type.lower() and not looks_like_json(body):
                return  # a script, not data
            else:
                documents = json_documents(body)
            parsed = [parse_document(document, response.path) for document in documents]
        except BodyTooLarge:
            raise
        except BodyError as exc:
            raise CaptureError(str(exc)) from None
        except Exception as exc:  # an Instagram shape the parsers did not expect
            raise CaptureError(f"parser failed: {type(exc).__name__}: {exc}") from exc
        matched: list[tuple[str, VerifiedImage]] = []
        try:
            with self.db.transaction() as conn:
                self._store_documents(conn, response, parsed, matched, outcome)
        except BaseException:
            # Nothing was stored: the images matched in the transaction wait again, so that a
            # retry of this response (after a full disk, say) still finds them.
            for name, image in matched:
                self.pending.add(name, image, self._pending_now(response))
            raise

    def _store_documents(
        self,
        conn: sqlite3.Connection,
        response: CapturedResponse,
        parsed: list[Parsed | None],
        matched: list[tuple[str, VerifiedImage]],
        outcome: Counter[str],
    ) -> None:
        for result in parsed:
            if result is None:
                continue
            outcome["instagram_json"] += 1
            if result.fingerprint is not None:
                count_unread_format(conn, response.path, result.fingerprint, response.seen_at)
                outcome["formats_not_understood"] += 1
            for account in result.accounts:
                upsert_account(conn, account, response.seen_at)
            if response.device is not None and result.posts:
                ids = [post.id for post in result.posts]
                record_device_posts(conn, response.device, ids, response.seen_at)
            for post in result.posts:
                change = upsert_post(conn, post, response.seen_at, self.imported)
                outcome[f"posts_{change}"] += 1
                for name in {image_file_name(url) for url in post.image_urls}:
                    image = self.pending.pop(name)
                    if image is not None:
                        matched.append((name, image))
                        self._attach(conn, post.id, image, outcome)

    # --- images ---------------------------------------------------------------------------

    def _ingest_image(self, response: CapturedResponse, outcome: Counter[str]) -> None:
        if not 200 <= response.status < 300 or response.status == 206:
            outcome["images_rejected"] += 1  # error pages, partial content
            return
        try:
            image = verify_image(self._decode(response))
        except BodyTooLarge:
            raise  # ingest() makes it a ResponseTooLarge
        except (BodyError, ImageRejected) as exc:
            where = response.host + path_without_query(response.path)
            log.debug("not an image: %s: %s", where, exc)
            outcome["images_rejected"] += 1
            return
        name = image_file_name(response.path)
        with self.db.transaction() as conn:
            post_id = post_for_image_name(conn, name)
            if post_id is not None:
                self._attach(conn, post_id, image, outcome)
                return
        outcome["images_unmatched"] += self.pending.add(name, image, self._pending_now(response))

    def _pending_now(self, response: CapturedResponse) -> float:
        return response.seen_at if self.clock is None else self.clock()

    def _attach(
        self, conn: sqlite3.Connection, post_id: str, image: VerifiedImage, outcome: Counter[str]
    ) -> None:
        """Store the image as the post's cover unless the post has one at least as large."""
        if not larger_image_wins(image.area, cover_area(conn, post_id)):
            return  # checked before writing the file; attach_image applies the same rule
        stored = self.images.put(image.data, image.ext)
        record_image(conn, stored, image.width, image.height, len(image.data))
        post = get_post(conn, post_id)
        assert post is not None  # written earlier in this transaction
        previous = post.image_sha256
        if attach_image(conn, post_id, stored.sha256):
            outcome["images_stored"] += 1
            if previous is not None:  # a smaller variant: its row and file go
                self._replaced += forget_unused_images(conn, [previous])
