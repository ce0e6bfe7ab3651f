"""mitmproxy flows -> `CapturedResponse`: the few facts of a response that capture reads.

Only the host, path, status, content type/encoding and the response body are taken. Request
headers, cookies and request bodies are never copied out of the flow, so they cannot reach the
writer, the database or the disk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from mitmproxy import http

from instaflyd.capture.hosts import is_api_host, is_cdn_host

# flow.metadata key: the host the client asked for, recorded before any addon (map_remote in
# tests and benchmarks) rewrites the request.
ORIGINAL_HOST = "instafly.host"

Kind = Literal["document", "image"]

DOCUMENT_TYPES = ("json", "javascript", "html", "text/plain")
IMAGE_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")


@dataclass(frozen=True)
class CapturedResponse:
    kind: Kind
    host: str
    path: str
    status: int
    content_type: str
    content_encoding: str
    body: bytes  # as it came over the wire (still content-encoded)
    seen_at: float


def response_kind(host: str, content_type: str) -> Kind | None:
    """document: Instagram JSON or HTML; image: a CDN body that may be a post image."""
    content_type = content_type.lower()
    if is_api_host(host) and (not content_type or any(t in content_type for t in DOCUMENT_TYPES)):
        return "document"
    if is_cdn_host(host) and (not content_type or content_type.startswith(IMAGE_TYPES)):
        return "image"
    return None


def path_without_query(path: str) -> str:
    """For log lines and events: query strings may carry tokens."""
    return path.split("?", 1)[0]


def original_host(flow: http.HTTPFlow) -> str:
    return str(flow.metadata.get(ORIGINAL_HOST) or flow.request.pretty_host)


def captured_response(flow: http.HTTPFlow, max_body_bytes: int) -> CapturedResponse | None:
    """The response if capture wants it (an Instagram host, a body within the size limit)."""
    response = flow.response
    if response is None or response.raw_content is None:
        return None
    host = original_host(flow)
    content_type = response.headers.get("content-type", "")
    kind = response_kind(host, content_type)
    if kind is None or len(response.raw_content) > max_body_bytes:
        return None
    return CapturedResponse(
        kind=kind,
        host=host,
        path=flow.request.path,
        status=response.status_code,
        content_type=content_type,
        content_encoding=response.headers.get("content-encoding", ""),
        body=response.raw_content,
        seen_at=response.timestamp_end or time.time(),
    )
