"""The proxy's memory for bodies, bounded in total, not only per flow.

mitmproxy buffers a whole body (up to `stream_large_bodies`) before passing it on, for every
flow at once: 128 phones' fetches of a 20 MB video took it from 93 MB to 3.5 GB. Here every
response is streamed to the client as it arrives, and only a copy of what capture will read (an
Instagram document or image, per `response_kind`) is kept, within `max_body_bytes` for one
body and `max_buffered_bytes` for all of them together. A body that would pass either is
let through uncaptured, and counted (`responses_too_large`, `responses_over_memory_budget`).
Request bodies are never stored; one over REQUEST_BUFFER_BYTES is streamed to the server too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mitmproxy import http

from instaflyd.capture.flows import original_host, response_kind
from instaflyd.capture.wireguard import CHECK_HOST

log = logging.getLogger("instafly.proxy")

REQUEST_BUFFER_BYTES = 64 * 1024  # larger request bodies go straight to the server
COPY = "instafly_copy"  # flow.metadata key of a response's kept copy


class _Copy:
    """The stream callable of one response: passes each chunk on, keeps a bounded copy."""

    def __init__(self, budget: BodyBudget, limit: int) -> None:
        self.budget = budget
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.dropped: str | None = None

    def __call__(self, data: bytes) -> bytes:
        if data and self.dropped is None:
            if self.size + len(data) > self.limit:
                self.drop("responses_too_large")
            elif not self.budget.take(len(data)):
                self.drop("responses_over_memory_budget")
            else:
                self.parts.append(data)
                self.size += len(data)
        return data

    def drop(self, reason: str) -> None:
        self.dropped = reason
        self.budget.count(reason)
        self.release()

    def release(self) -> None:
        self.budget.give(self.size)
        self.parts, self.size = [], 0


class BodyBudget:
    def __init__(
        self, max_buffered_bytes: int, max_body_bytes: int, count: Callable[[str], None]
    ) -> None:
        self.max_buffered_bytes = max_buffered_bytes
        self.max_body_bytes = max_body_bytes
        self.count = count
        self.buffered = 0  # bytes kept for capture right now
        self.peak = 0

    def take(self, size: int) -> bool:
        if self.buffered + size > self.max_buffered_bytes:
            return False
        self.buffered += size
        self.peak = max(self.peak, self.buffered)
        return True

    def give(self, size: int) -> None:
        self.buffered -= size

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        try:
            headers = flow.request.headers
            chunked = "chunked" in headers.get("transfer-encoding", "").lower()
            length = headers.get("content-length", "0")
            if chunked or not length.isdigit() or int(length) > REQUEST_BUFFER_BYTES:
                flow.request.stream = True
        except Exception:
            log.exception("body budget: cannot read a request's headers")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        try:
            response = flow.response
            if response is None or original_host(flow).lower().rstrip(".") == CHECK_HOST:
                return  # the live check is answered here, whole: nothing comes from a server
            wanted = response_kind(original_host(flow), response.headers.get("content-type", ""))
            length = response.headers.get("content-length", "")
            if wanted is None or (length.isdigit() and int(length) > self.max_body_bytes):
                response.stream = True  # nothing to keep: straight through
                return
            copy = _Copy(self, self.max_body_bytes)
            flow.metadata[COPY] = copy
            response.stream = copy
        except Exception:
            log.exception("body budget: cannot read a response's headers")

    def response(self, flow: http.HTTPFlow) -> None:
        """Hand capture (the next addon) the copy as the body, and give its bytes back."""
        copy = flow.metadata.pop(COPY, None)
        if copy is None or flow.response is None:
            return
        if copy.dropped is None:
            flow.response.raw_content = b"".join(copy.parts)
        copy.release()

    def error(self, flow: http.HTTPFlow) -> None:
        copy = flow.metadata.pop(COPY, None)
        if copy is not None:
            copy.release()
