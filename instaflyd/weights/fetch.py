"""Fetching the ImageNet VGG16 notop weights file (`instaflyd weights fetch`).

Plain urllib, resumable: the bytes collect in `<file>.partial`, and a later try asks the server
only for the rest (HTTP Range; a server without ranges sends it all again). Size and md5 (the
constants in `weights.file`) are checked before the file takes its final name. While it runs,
and after it failed, `weights/fetch.json` (`weights.progress`) says how far it got or why it
stopped. The daemon runs this command by itself while the file is missing
(`instaflyd.daemon.weights_fetch`).
"""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from instaflyd import __version__
from instaflyd.config import Config
from instaflyd.weights import file as published
from instaflyd.weights.file import (
    WeightsError,
    file_md5,
    imagenet_file_is_genuine,
    imagenet_weights_path,
    partial_path,
)
from instaflyd.weights.progress import FetchState
from instaflyd.weights.status import WeightsStatus, imagenet_status

FETCH_TIMEOUT_SECONDS = 30.0

__all__ = ["WeightsError", "fetch_weights"]


def fetch_weights(
    config: Config, progress: Callable[[int, int], None] | None = None
) -> WeightsStatus:
    """Download the ImageNet notop file from `model.weights_url`, resuming a cut download.

    The bytes go to `<file>.partial` in the weights folder; a later call asks the server for
    the rest only (HTTP Range) and starts over where the server does not do ranges. The size
    and md5 are checked before the file takes its final name. While it runs, and after it
    failed, `fetch.json` beside it says how far it got or why it stopped, for the status page.
    """
    target = imagenet_weights_path(config)
    if target.is_file() and imagenet_file_is_genuine(target):
        return imagenet_status(config)
    config.weights_dir.mkdir(parents=True, exist_ok=True)
    state = FetchState(config)
    try:
        _download(config.model.weights_url, partial_path(config), state, progress)
        _verify_download(config.model.weights_url, partial_path(config))
    except WeightsError as exc:
        state.failed(str(exc), offline=exc.offline)
        raise
    os.replace(partial_path(config), target)
    state.clear()
    return imagenet_status(config)


def _download(
    url: str, partial: Path, state: FetchState, progress: Callable[[int, int], None] | None
) -> None:
    have = partial.stat().st_size if partial.is_file() else 0
    if have > published.WEIGHTS_BYTES:
        partial.unlink()
        have = 0
    if have == published.WEIGHTS_BYTES:
        return  # complete already; verified next
    request = urllib.request.Request(url, headers={"User-Agent": f"instafly/{__version__}"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: what we have is checked next
            return
        raise WeightsError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsError(
            f"cannot download {url}: no connection to the internet ({reason})", offline=True
        ) from exc
    with response:
        resumed = response.status == 206 and _range_start(response) == have
        if not resumed:
            have = 0  # the server sends the whole file: start over
        expected = _expected_total(response, have)
        if expected is not None and expected != published.WEIGHTS_BYTES:
            raise WeightsError(
                f"the file at {url} has {expected:,} bytes, "
                f"not the {published.WEIGHTS_BYTES:,} of the ImageNet VGG16 notop file"
            )
        with partial.open("ab" if resumed else "wb") as out:
            state.downloading(have)
            while True:
                try:
                    block = response.read(1 << 16)
                except (OSError, http.client.HTTPException) as exc:
                    raise WeightsError(
                        f"the download from {url} was cut after {have:,} of "
                        f"{published.WEIGHTS_BYTES:,} bytes ({type(exc).__name__}); "
                        "it resumes from there next time",
                        offline=True,
                    ) from exc
                if not block:
                    break
                have += len(block)
                if have > published.WEIGHTS_BYTES:
                    raise WeightsError(f"the file at {url} is larger than the ImageNet file")
                out.write(block)
                state.downloading(have)
                if progress is not None:
                    progress(have, published.WEIGHTS_BYTES)
            out.flush()
            os.fsync(out.fileno())
    if have < published.WEIGHTS_BYTES:
        raise WeightsError(
            f"the download from {url} was cut after {have:,} of {published.WEIGHTS_BYTES:,} bytes; "
            "it resumes from there next time",
            offline=True,
        )


def _range_start(response: Any) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _expected_total(response: Any, have: int) -> int | None:
    length = response.headers.get("Content-Length")
    return have + int(length) if length and length.isdigit() else None


def _verify_download(url: str, partial: Path) -> None:
    md5 = file_md5(partial)
    if md5 != published.WEIGHTS_MD5:
        partial.unlink(missing_ok=True)  # a wrong file is never resumed
        raise WeightsError(
            f"the file at {url} is not the ImageNet VGG16 notop file "
            f"(md5 mismatch: {md5}, expected {published.WEIGHTS_MD5})"
        )
