"""When a file in the drop folder is complete: unchanged for a while, and closed by its writer.

A copy over Samba, NFS or Wi-Fi arrives in pieces, with pauses. A file is taken only once its size
and modification time have stayed the same for `settle_seconds`. Where the platform reports
close-after-write (inotify on Linux), a file that was written to is also not taken before its
writer closed it, so a copy that stalls longer than the settle time is still not read
half-written. A writer can only keep a file open and silent for `STALLED_WRITER_SECONDS`; after
that the file is taken anyway (a lost close event must not keep a photo waiting forever).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

STALLED_WRITER_SECONDS = 300.0


@dataclass
class _Pending:
    size: int | None = None  # None until the first look
    mtime_ns: int | None = None
    still_since: float = 0.0
    writing: bool = False  # written to, and no close-after-write seen since


class Settler:
    """The files seen changing, and which of them have been still long enough to be read.

    Thread-safe: the observer thread reports events, another thread asks what is `due`.
    """

    def __init__(self, settle_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.settle_seconds = settle_seconds
        self._clock = clock
        self._pending: dict[Path, _Pending] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def __contains__(self, path: Path) -> bool:
        with self._lock:
            return path in self._pending

    def seen(self, path: Path) -> None:
        """A file exists (a scan found it, or it was created or renamed into place)."""
        with self._lock:
            self._pending.setdefault(path, _Pending())

    def written(self, path: Path) -> None:
        """Something wrote to the file; it is open until a close-after-write is reported."""
        with self._lock:
            entry = self._pending.setdefault(path, _Pending())
            entry.still_since = self._clock()
            entry.writing = True

    def closed(self, path: Path) -> None:
        """The writer closed the file (close-after-write)."""
        with self._lock:
            entry = self._pending.setdefault(path, _Pending())
            entry.still_since = self._clock()
            entry.writing = False

    def forget(self, path: Path) -> None:
        """The file was deleted or renamed away."""
        with self._lock:
            self._pending.pop(path, None)

    def due(self) -> list[Path]:
        """The files that are complete now; they are no longer pending once returned.

        Files that vanished or are not regular files (symbolic links, sockets, ...) are dropped.
        """
        with self._lock:
            candidates = list(self._pending.items())
        ready = []
        for path, entry in candidates:
            try:
                info = os.lstat(path)
            except OSError:
                self.forget(path)
                continue
            if not stat.S_ISREG(info.st_mode):
                self.forget(path)
                continue
            with self._lock:
                if self._pending.get(path) is not entry:
                    continue  # forgotten or replaced meanwhile
                now = self._clock()
                if (info.st_size, info.st_mtime_ns) != (entry.size, entry.mtime_ns):
                    entry.size, entry.mtime_ns, entry.still_since = (
                        info.st_size,
                        info.st_mtime_ns,
                        now,
                    )
                    continue
                still = now - entry.still_since
                if still < self.settle_seconds:
                    continue
                if entry.writing and still < max(self.settle_seconds, STALLED_WRITER_SECONDS):
                    continue
                del self._pending[path]
            ready.append(path)
        return ready
