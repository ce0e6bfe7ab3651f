"""Response bodies -> JSON documents: content encodings, the `for (;;);` guard, embedded page data.

Instagram answers JSON (sometimes behind a `for (;;);` anti-hijacking prefix, sometimes several
documents in a row when a GraphQL query streams deferred parts), or HTML pages that carry the
same JSON in `window._sharedData = {...};` or `window.__additionalDataLoaded('...', {...});`.

Content encodings are undone here, not by mitmproxy: its decoders return the whole output at
once, and a 1 MB gzip body can decode to 1 GiB. These stop at a limit instead.
"""

from __future__ import annotations

import io
import json
import re
import zlib
from typing import Any

import brotli
import zstandard

JSON_GUARDS = (b"for (;;);", b"for(;;);")
_DECODER = json.JSONDecoder()
_EMBEDDED = re.compile(
    r"window\._sharedData\s*=\s*|window\.__additionalDataLoaded\(\s*(?:'[^']*'|\"[^\"]*\")\s*,\s*"
)


class BodyError(ValueError):
    """A body that cannot be decoded or read as the JSON it claims to be."""


class BodyTooLarge(BodyError):
    """A body that decodes to more than the limit (a decompression bomb, or just too big)."""


# proxy.max_body_bytes's default: the limit before and after decoding.
DEFAULT_MAX_BYTES = 25_000_000


def decode_body(
    raw: bytes, content_encoding: str | None, max_bytes: int = DEFAULT_MAX_BYTES
) -> bytes:
    """Undo Content-Encoding (gzip, deflate, br, zstd; several, comma-separated, in order).

    Every decoder streams and stops as soon as its output passes `max_bytes`, raising
    BodyTooLarge: a 1 MB gzip body that would decode to 1 GiB costs about `max_bytes`, never
    the gigabyte.
    """
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    if len(raw) > max_bytes:
        raise BodyTooLarge(f"the body is {len(raw):,} bytes, over the limit of {max_bytes:,}")
    body = raw
    for coding in reversed(codings):
        decoder = _DECODERS.get(coding)
        if decoder is None:
            raise BodyError(f"cannot decode a body with Content-Encoding {coding!r}")
        try:
            body = decoder(body, max_bytes)
        except BodyError:
            raise
        except Exception as exc:  # each library raises its own error type
            raise BodyError(f"cannot decode a {coding!r} body: {exc}") from None
    return body


class _Output:
    """Decoded bytes, refused once they pass the limit."""

    def __init__(self, coding: str, max_bytes: int) -> None:
        self.coding, self.max_bytes = coding, max_bytes
        self.data = bytearray()

    @property
    def room(self) -> int:
        """How much more may come; at least 1, so a decoder asked for it shows there is more."""
        return self.max_bytes - len(self.data) + 1

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.max_bytes:
            raise BodyTooLarge(
                f"the {self.coding} body decodes to more than the limit of {self.max_bytes:,} bytes"
            )


def _inflate(data: bytes, wbits: int, out: _Output) -> bytes:
    """One zlib/gzip/raw-deflate stream (max_length bounds every step); returns what follows it."""
    stream = zlib.decompressobj(wbits)
    pending = data
    while pending and not stream.eof:
        out.add(stream.decompress(pending, out.room))
        pending = stream.unconsumed_tail
    if not stream.eof:
        raise BodyError(f"the {out.coding} body is truncated")
    return stream.unused_data


def _gzip(data: bytes, max_bytes: int) -> bytes:
    out = _Output("gzip", max_bytes)
    rest = _inflate(data, 16 + zlib.MAX_WBITS, out)
    while rest.strip(b"\0"):  # a body may hold several gzip members, one after the other
        rest = _inflate(rest, 16 + zlib.MAX_WBITS, out)
    return bytes(out.data)


def _deflate(data: bytes, max_bytes: int) -> bytes:
    """zlib-wrapped deflate, or raw deflate as some servers send it (as mitmproxy accepts)."""
    out = _Output("deflate", max_bytes)
    try:
        _inflate(data, zlib.MAX_WBITS, out)
    except zlib.error:
        out = _Output("deflate", max_bytes)
        _inflate(data, -zlib.MAX_WBITS, out)
    return bytes(out.data)


# Brotli 1.1 (the newest mitmproxy 11 allows) cannot cap one call's output: process() returns
# all that its input decodes to. The input is therefore fed BROTLI_STEP bytes at a time. A
# meta-block decodes to at most 16 MiB (its length field has 24 bits), and one that long takes
# at least 13 bytes of headers and commands, so 8 input bytes can finish at most one: each step
# yields at most 16 MiB (tests/test_capture_bodies.py measures it on a 1 GiB bomb). Brotli 1.2's
# process(data, output_buffer_limit=...) would make the steps exact.
BROTLI_STEP = 8
BROTLI_STEP_MAX_OUTPUT = 16 * 1024 * 1024


def _brotli(data: bytes, max_bytes: int) -> bytes:
    out = _Output("br", max_bytes)
    decompressor = brotli.Decompressor()
    for start in range(0, len(data), BROTLI_STEP):
        out.add(decompressor.process(data[start : start + BROTLI_STEP]))
    if not decompressor.is_finished():
        raise BodyError("the br body is truncated")
    return bytes(out.data)


# RFC 9659: HTTP's zstd decoders need no window over 8 MiB, and should refuse larger ones.
ZSTD_MAX_WINDOW = 8 * 1024 * 1024
_ZSTD_READ = 256 * 1024


def _zstd(data: bytes, max_bytes: int) -> bytes:
    out = _Output("zstd", max_bytes)
    decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    with decompressor.stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
        while chunk := reader.read(min(_ZSTD_READ, out.room)):
            out.add(chunk)
    return bytes(out.data)


def _identity(data: bytes, max_bytes: int) -> bytes:
    return data


_DECODERS = {
    "gzip": _gzip,
    "x-gzip": _gzip,
    "deflate": _deflate,
    "br": _brotli,
    "zstd": _zstd,
    "identity": _identity,
    "none": _identity,
}


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
            # json says "Unterminated string starting at": no second "at" after it.
            where = "" if exc.msg.endswith(" at") else " at"
            raise BodyError(f"not JSON: {exc.msg}{where} character {exc.pos}") from None
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
