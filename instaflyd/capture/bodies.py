"""Response bodies -> JSON documents: content encodings, the `for (;;);` guard, embedded page data.

Instagram answers JSON (sometimes behind a `for (;;);` anti-hijacking prefix, sometimes several
documents in a row when a GraphQL query streams deferred parts), or HTML pages that carry the
same JSON in `window._sharedData = {...};` or `window.__additionalDataLoaded('...', {...});`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mitmproxy.net import encoding

JSON_GUARDS = (b"for (;;);", b"for(;;);")
_DECODER = json.JSONDecoder()
_EMBEDDED = re.compile(
    r"window\._sharedData\s*=\s*|window\.__additionalDataLoaded\(\s*(?:'[^']*'|\"[^\"]*\")\s*,\s*"
)


class BodyError(ValueError):
    """A body that cannot be decoded or read as the JSON it claims to be."""


def decode_body(raw: bytes, content_encoding: str | None) -> bytes:
    """Undo Content-Encoding (gzip, deflate, br, zstd; several, comma-separated, in order)."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    body = raw
    for coding in reversed(codings):
        # mitmproxy's own decoders, called directly: `encoding.decode` also keeps a module-wide
        # cache of the last body it decoded, which would hold a large body in memory.
        decoder = encoding.custom_decode.get(coding)
        if decoder is None:
            raise BodyError(f"cannot decode a body with Content-Encoding {coding!r}")
        try:
            body = decoder(body)
        except Exception as exc:  # each library raises its own error type
            raise BodyError(f"cannot decode a {coding!r} body: {exc}") from None
    return body


def looks_like_json(body: bytes) -> bool:
    """For bodies served as JavaScript: JSON (perhaps guarded) rather than a script?"""
    start = body.lstrip()[:10]
    return start.startswith((b"{", b"[")) or start.startswith(JSON_GUARDS)


def is_html(body: bytes, content_type: str) -> bool:
    if "html" in content_type.lower():
        return True
    return body.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html"))


def json_documents(body: bytes) -> list[Any]:
    """Every JSON document in a JSON body; raises BodyError when it is not JSON."""
    text = _text(body).lstrip()
    for guard in JSON_GUARDS:
        if text.startswith(guard.decode()):
            text = text[len(guard) :].lstrip()
            break
    documents: list[Any] = []
    position = 0
    while position < len(text):
        try:
            document, position = _DECODER.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise BodyError(f"not JSON: {exc.msg} at character {exc.pos}") from None
        documents.append(document)
        while position < len(text) and text[position].isspace():
            position += 1
    if not documents:
        raise BodyError("not JSON: the body is empty")
    return documents


def html_documents(body: bytes) -> list[Any]:
    """The JSON objects a page embeds in window._sharedData / window.__additionalDataLoaded."""
    text = _text(body)
    documents: list[Any] = []
    for match in _EMBEDDED.finditer(text):
        try:
            document, _ = _DECODER.raw_decode(text, match.end())
        except json.JSONDecodeError:
            continue
        documents.append(document)
    return documents


def _text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")
