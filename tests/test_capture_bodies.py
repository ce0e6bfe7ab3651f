"""Content decoding with a limit after decoding: real gzip, deflate, br and zstd bombs."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import brotli
import pytest
import zstandard
from support_capture import MiB, bomb

from instaflyd.capture.bodies import (
    BROTLI_STEP,
    BROTLI_STEP_MAX_OUTPUT,
    BodyError,
    BodyTooLarge,
    decode_body,
)

TEXT = b'{"data": {"user": {"username": "someone"}}}' * 500
ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstandard.ZstdCompressor().compress,
}


@pytest.mark.parametrize("coding", [*ENCODERS, "identity"])
def test_each_coding_decodes_up_to_the_limit(coding: str) -> None:
    body = ENCODERS.get(coding, bytes)(TEXT)
    assert decode_body(body, coding, len(TEXT)) == TEXT
    with pytest.raises(
        BodyTooLarge, match=f"over the limit of|more than the limit of {len(TEXT) - 1:,}"
    ):
        decode_body(body, coding, len(TEXT) - 1)


def test_raw_deflate_several_gzip_members_and_stacked_codings() -> None:
    raw_deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    assert decode_body(raw_deflate.compress(TEXT) + raw_deflate.flush(), "deflate") == TEXT
    assert decode_body(gzip.compress(TEXT) + gzip.compress(TEXT), "gzip") == TEXT * 2
    stacked = brotli.compress(gzip.compress(TEXT))  # Content-Encoding: gzip, br
    assert decode_body(stacked, "gzip, br", len(TEXT)) == TEXT


@pytest.mark.parametrize(
    ("body", "coding", "message"),
    [
        (gzip.compress(TEXT)[:-20], "gzip", "the gzip body is truncated"),
        (brotli.compress(TEXT)[:-5], "br", "the br body is truncated"),
        (b"definitely not gzip", "gzip", "cannot decode a 'gzip' body"),
        (b"x", "compress", "cannot decode a body with Content-Encoding 'compress'"),
    ],
)
def test_damaged_bodies_are_body_errors_not_too_large(
    body: bytes, coding: str, message: str
) -> None:
    with pytest.raises(BodyError, match=message) as error:
        decode_body(body, coding)
    assert not isinstance(error.value, BodyTooLarge)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_a_256_mib_bomb_stops_at_the_limit_and_never_holds_the_whole(coding: str) -> None:
    body = bomb(coding, 256)
    limit = 8 * MiB
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLarge):
            decode_body(body, coding, limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The output up to the limit, plus at most one step past it (brotli's 16 MiB).
    step = BROTLI_STEP_MAX_OUTPUT if coding == "br" else 1 * MiB
    assert peak < 2 * (limit + step), f"{peak / MiB:.0f} MiB"


@pytest.mark.slow
def test_brotli_steps_never_yield_more_than_the_measured_bound() -> None:
    """The worst expansion per BROTLI_STEP input bytes, measured on a 1 GiB bomb (809 bytes)."""
    body = bomb("br", 1024)
    decompressor = brotli.Decompressor()
    outputs = [
        len(decompressor.process(body[start : start + BROTLI_STEP]))
        for start in range(0, len(body), BROTLI_STEP)
    ]
    assert sum(outputs) == 1024 * MiB
    assert max(outputs) <= BROTLI_STEP_MAX_OUTPUT


def test_a_zstd_frame_asking_for_a_large_window_is_refused() -> None:
    params = zstandard.ZstdCompressionParameters.from_level(19, window_log=27)
    body = zstandard.ZstdCompressor(compression_params=params).compress(bytes(64 * MiB))
    with pytest.raises(BodyError, match="zstd"):
        decode_body(body, "zstd", 100 * MiB)


def test_a_body_over_the_limit_before_decoding_is_too_large() -> None:
    with pytest.raises(BodyTooLarge, match="the body is 2,000 bytes, over the limit of 1,999"):
        decode_body(b"x" * 2000, "", 1999)


def test_an_unterminated_string_is_said_without_a_doubled_at() -> None:
    from instaflyd.capture.bodies import BodyError, json_documents

    with pytest.raises(BodyError) as error:
        json_documents(b'{"caption": "never closed')
    assert str(error.value) == "not JSON: Unterminated string starting at character 12"
