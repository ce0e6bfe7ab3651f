"""The ImageNet VGG16 notop weights file: where it lives and whether it is the right one.

Only the standard library here: the supervisor, the status page and `stats` ask for the status
without loading TensorFlow. Fetching (urllib, resumable with HTTP Range) and importing the file
are `instaflyd weights fetch|import`, the daemon's background fetch and the page's upload; each
verifies size and md5 before the file takes its final name.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from instaflyd import __version__
from instaflyd.config import Config
from instaflyd.fsutil import atomic_write_text, atomic_writer

WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_BYTES = 58_889_256
WEIGHTS_MD5 = "6d6bbae143d832006294945121d1f1fc"
PARTIAL_SUFFIX = ".partial"
FETCH_STATE_FILE = "fetch.json"
FETCH_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class DownloadProgress:
    """How the download of the weights goes: `weights/fetch.json`, read by the status page."""

    state: Literal["downloading", "failed"]
    bytes: int
    total: int
    error: str | None
    offline: bool  # failed because the box could not reach the server
    updated: float


@dataclass(frozen=True)
class WeightsStatus:
    setting: str  # model.weights: imagenet | none | a path
    path: str | None  # the file that setting reads, if any
    present: bool
    ok: bool  # usable for training: present and verified, or random init asked for
    message: str  # one sentence for people, including how to fix it
    download: DownloadProgress | None = None  # a download running or failed (imagenet only)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def imagenet_weights_path(config: Config) -> Path:
    return config.weights_dir / WEIGHTS_FILE


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_verified: dict[tuple[str, int, int], bool] = {}


def imagenet_file_is_genuine(path: Path) -> bool:
    """Size and md5 match the published file (the md5 is remembered per path, size and mtime)."""
    stat = path.stat()
    if stat.st_size != WEIGHTS_BYTES:
        return False
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        _verified[key] = file_md5(path) == WEIGHTS_MD5
    return _verified[key]


def imagenet_status(config: Config) -> WeightsStatus:
    """Whether the ImageNet notop file is in data_dir/weights/ and genuine, whatever the setting."""
    path = imagenet_weights_path(config)
    if not path.is_file():
        download = download_progress(config)
        return WeightsStatus(
            "imagenet", str(path), False, False, _missing_message(path, download), download
        )
    if not imagenet_file_is_genuine(path):
        return WeightsStatus(
            "imagenet", str(path), True, False,
            f"{path} is not the published ImageNet VGG16 notop file (size or md5 differ); "
            "fetch or import it again",
        )  # fmt: skip
    return WeightsStatus("imagenet", str(path), True, True, "ImageNet VGG16 weights present")


def _missing_message(path: Path, download: DownloadProgress | None) -> str:
    how = (
        f"upload {WEIGHTS_FILE} on the status page, or run 'instaflyd weights import FILE' "
        "with a copy of it"
    )
    if download is None:
        return (
            f"the ImageNet VGG16 weights are missing ({path}); run 'instaflyd weights fetch' "
            f"where the box has internet, or {how}"
        )
    done = f"{download.bytes / 1e6:.1f} of {download.total / 1e6:.1f} MB"
    if download.state == "downloading":
        return f"downloading the ImageNet VGG16 weights: {done}"
    if download.offline:
        return (
            f"this box cannot reach the internet to download the ImageNet VGG16 weights "
            f"({done} so far; it tries again by itself): {how}"
        )
    return f"the download of the ImageNet VGG16 weights failed: {download.error}; {how}"


def weights_status(config: Config) -> WeightsStatus:
    setting = config.model.weights
    if setting == "none":
        return WeightsStatus(
            setting, None, False, True,
            "random initial weights (model.weights: none): for tests and demos only; "
            "predictions mean little",
        )  # fmt: skip
    if setting == "imagenet":
        return imagenet_status(config)
    path = Path(setting)
    if not path.is_file():
        return WeightsStatus(
            setting, str(path), False, False,
            f"the weights file {path} set in model.weights does not exist",
        )  # fmt: skip
    return WeightsStatus(setting, str(path), True, True, f"weights from {path}")


class WeightsError(Exception):
    """The weights file could not be fetched or imported; the message says why."""

    def __init__(self, message: str, offline: bool = False) -> None:
        super().__init__(message)
        self.offline = offline  # the box could not reach the server (or lost it midway)


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


def partial_path(config: Config) -> Path:
    return config.weights_dir / f"{WEIGHTS_FILE}{PARTIAL_SUFFIX}"


def _download(
    url: str, partial: Path, state: FetchState, progress: Callable[[int, int], None] | None
) -> None:
    have = partial.stat().st_size if partial.is_file() else 0
    if have > WEIGHTS_BYTES:
        partial.unlink()
        have = 0
    if have == WEIGHTS_BYTES:
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
        if expected is not None and expected != WEIGHTS_BYTES:
            raise WeightsError(
                f"the file at {url} has {expected:,} bytes, "
                f"not the {WEIGHTS_BYTES:,} of the ImageNet VGG16 notop file"
            )
        with partial.open("ab" if resumed else "wb") as out:
            state.downloading(have, resumed)
            while True:
                try:
                    block = response.read(1 << 16)
                except (OSError, http.client.HTTPException) as exc:
                    raise WeightsError(
                        f"the download from {url} was cut after {have:,} of "
                        f"{WEIGHTS_BYTES:,} bytes ({type(exc).__name__}); it resumes from there"
                        " next time",
                        offline=True,
                    ) from exc
                if not block:
                    break
                have += len(block)
                if have > WEIGHTS_BYTES:
                    raise WeightsError(f"the file at {url} is larger than the ImageNet file")
                out.write(block)
                state.downloading(have, resumed)
                if progress is not None:
                    progress(have, WEIGHTS_BYTES)
            out.flush()
            os.fsync(out.fileno())
    if have < WEIGHTS_BYTES:
        raise WeightsError(
            f"the download from {url} was cut after {have:,} of {WEIGHTS_BYTES:,} bytes; "
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
    if md5 != WEIGHTS_MD5:
        partial.unlink(missing_ok=True)  # a wrong file is never resumed
        raise WeightsError(
            f"the file at {url} is not the ImageNet VGG16 notop file "
            f"(md5 mismatch: {md5}, expected {WEIGHTS_MD5})"
        )


class FetchState:
    """`weights/fetch.json`: how far a download got, or why it stopped (None once done)."""

    EVERY_SECONDS = 1.0

    def __init__(self, config: Config) -> None:
        self.path = config.weights_dir / FETCH_STATE_FILE
        self.url = config.model.weights_url
        self._written = 0.0

    def downloading(self, have: int, resumed: bool) -> None:
        now = time.time()
        if now - self._written >= self.EVERY_SECONDS or have in (0, WEIGHTS_BYTES):
            self._write(DownloadProgress("downloading", have, WEIGHTS_BYTES, None, False, now))
            self._written = now

    def failed(self, error: str, offline: bool) -> None:
        have = partial_path_size(self.path.parent)
        self._write(DownloadProgress("failed", have, WEIGHTS_BYTES, error, offline, time.time()))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def _write(self, progress: DownloadProgress) -> None:
        atomic_write_text(self.path, json.dumps(asdict(progress)))


def partial_path_size(weights_dir: Path) -> int:
    try:
        return (weights_dir / f"{WEIGHTS_FILE}{PARTIAL_SUFFIX}").stat().st_size
    except OSError:
        return 0


def download_progress(config: Config) -> DownloadProgress | None:
    """The last word of a download that is running or failed; None when none has started."""
    try:
        record = json.loads((config.weights_dir / FETCH_STATE_FILE).read_text(encoding="utf-8"))
        return DownloadProgress(**record)
    except (OSError, ValueError, TypeError):
        return None


def import_weights(config: Config, source: Path) -> WeightsStatus:
    """Copy a local copy of the ImageNet notop file into place, checking size and md5 on the way."""
    try:
        size = source.stat().st_size
        reader = source.open("rb")
    except OSError as exc:
        raise WeightsError(f"cannot read {source}: {exc.strerror}") from exc
    with reader:
        return receive_weights(config, reader, str(source), size)


def receive_weights(
    config: Config, reader: BinaryIO, name: str, size: int | None = None
) -> WeightsStatus:
    """Write the weights read from `reader` into place once their size and md5 check out.

    `size`, when known beforehand, is checked first; the bytes are counted either way, so a
    stream that says one size and sends another (an upload) is refused as well.
    """
    if size is not None and size != WEIGHTS_BYTES:
        raise WeightsError(
            f"{name} has {size:,} bytes; the ImageNet VGG16 notop file ({WEIGHTS_FILE}) "
            f"has {WEIGHTS_BYTES:,}"
        )
    digest = hashlib.md5(usedforsecurity=False)
    have = 0
    with atomic_writer(imagenet_weights_path(config)) as writer:
        for block in iter(lambda: reader.read(1 << 20), b""):
            have += len(block)
            if have > WEIGHTS_BYTES:
                break
            digest.update(block)
            writer.write(block)
        if have != WEIGHTS_BYTES:
            more = "more than " if have > WEIGHTS_BYTES else ""
            raise WeightsError(
                f"{name} is not the ImageNet VGG16 notop file ({WEIGHTS_FILE}): it has "
                f"{more}{have:,} bytes, not {WEIGHTS_BYTES:,}"
            )
        if digest.hexdigest() != WEIGHTS_MD5:
            raise WeightsError(
                f"{name} is not the ImageNet VGG16 notop file: md5 {digest.hexdigest()}, "
                f"expected {WEIGHTS_MD5}"
            )
    (config.weights_dir / FETCH_STATE_FILE).unlink(missing_ok=True)
    partial_path(config).unlink(missing_ok=True)
    return imagenet_status(config)
