"""`weights/fetch.json`: how far a download of the weights got, or why it stopped.

Written by the fetch (`FetchState`, at most once a second while bytes arrive) and read by the
status (`read_progress`), as one record, `DownloadProgress`. The file is removed once the
weights are in place.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from instaflyd.config import Config
from instaflyd.fsutil import atomic_write_text
from instaflyd.weights import file

FETCH_STATE_FILE = "fetch.json"


@dataclass(frozen=True)
class DownloadProgress:
    """How the download of the weights goes."""

    state: Literal["downloading", "failed"]
    bytes: int
    total: int
    error: str | None
    offline: bool  # failed because the box could not reach the server (or lost it midway)
    updated: float


def fetch_state_path(config: Config) -> Path:
    return config.weights_dir / FETCH_STATE_FILE


def read_progress(config: Config) -> DownloadProgress | None:
    """The last word of a download that is running or failed; None when none has started (or
    the file is not one this code wrote)."""
    try:
        record = json.loads(fetch_state_path(config).read_text(encoding="utf-8"))
        progress = DownloadProgress(**record)
    except (OSError, ValueError, TypeError):
        return None
    if progress.state not in ("downloading", "failed"):
        return None
    return progress


class FetchState:
    """Writes `fetch.json` for one download."""

    EVERY_SECONDS = 1.0

    def __init__(self, config: Config) -> None:
        self.path = fetch_state_path(config)
        self.partial = file.partial_path(config)
        self._written = 0.0

    def downloading(self, have: int) -> None:
        now = time.time()
        if now - self._written >= self.EVERY_SECONDS or have in (0, file.WEIGHTS_BYTES):
            self._write(DownloadProgress("downloading", have, file.WEIGHTS_BYTES, None, False, now))
            self._written = now

    def failed(self, error: str, offline: bool) -> None:
        have = self.partial.stat().st_size if self.partial.is_file() else 0
        self._write(
            DownloadProgress("failed", have, file.WEIGHTS_BYTES, error, offline, time.time())
        )

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def _write(self, progress: DownloadProgress) -> None:
        atomic_write_text(self.path, json.dumps(asdict(progress)))
