"""mitmproxy flows -> `CapturedResponse`: the few facts of a response that capture reads.

Only the host, path, status, content type/encoding and the response body are taken. Request
headers, cookies and request bodies are never copied out of the flow, so they cannot reach the
writer, the database or the disk.

The live proxy believes a flow's host only when `verified_host` says so: the client spoke TLS
with an Instagram SNI, and the server the request went to answered over TLS with a certificate
that mitmproxy verified and that names the host. A plain-HTTP request, or a header a LAN client
wrote, never makes a response Instagram's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from cryptography import x509

if TYPE_CHECKING:  # the writer process reads CapturedResponse and never loads mitmproxy
    from mitmproxy import http

from instaflyd.capture.hosts import certificate_covers, is_api_host, is_cdn_host, is_instagram_host

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
    device: str | None = None  # the device it was captured from (wg:<id>, ip:<address>)


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


def verified_host(flow: http.HTTPFlow) -> str | None:
    """The Instagram host the response verifiably came from, or None.

    Both sides spoke TLS (plain HTTP never counts: Instagram serves none), the client's SNI is
    an Instagram host, and the upstream certificate, which mitmproxy verified unless
    `ssl_insecure` is set (the caller checks that), names the host the client asked for.
    """
    host = original_host(flow)
    client, server = flow.client_conn, flow.server_conn
    if not (client.tls_established and server.tls_established and server.certificate_list):
        return None
    if not client.sni or not is_instagram_host(client.sni) or not is_instagram_host(host):
        return None
    try:
        names = server.certificate_list[0].altnames.get_values_for_type(x509.DNSName)
    except Exception:  # a certificate cryptography cannot read names nothing
        return None
    return host.lower().rstrip(".") if certificate_covers(names, host) else None


def captured_response(
    flow: http.HTTPFlow, max_body_bytes: int, host: str | None = None, device: str | None = None
) -> CapturedResponse | None:
    """The response if capture wants it (an Instagram host, a body within the size limit).

    `host` is the host to believe (the proxy passes `verified_host`); by default the one the
    request named, for dump files the box's admin chose to import.
    """
    response = flow.response
    if response is None or response.raw_content is None:
        return None
    host = host or original_host(flow)
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
        device=device,
    )
