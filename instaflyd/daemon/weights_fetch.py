"""The daemon fetches the ImageNet weights by itself: `instaflyd weights fetch` in the background.

With `model.weights: imagenet` and no verified file in data_dir/weights/, the daemon starts
`instaflyd weights fetch` as a child process (plain urllib, no TensorFlow), one at a time. A
fetch that fails (no internet, a cut connection) is tried again later, the wait doubling up to
an hour; the partial file is kept, so the next try asks only for the rest. The child writes
its progress to weights/fetch.json, where the status page reads it; once the file is there the
training scheduler finds the weights at its next check.
"""

from __future__ import annotations

import io
import logging
import re
import time
from typing import ClassVar

from instaflyd.config import Config
from instaflyd.daemon.backoff import Backoff
from instaflyd.daemon.children import ChildProcess, instaflyd_argv
from instaflyd.daemon.handover import WEIGHTS_IGNORES, release_if_unchanged
from instaflyd.weights.status import imagenet_status

log = logging.getLogger("instafly.daemon")

FIRST_RETRY_SECONDS = 60.0
MAX_RETRY_SECONDS = 3600.0


class WeightsFetcher:
    """Starts one background fetch of missing ImageNet weights; retries with a growing wait."""

    COMMAND: ClassVar[tuple[str, ...]] = ("weights", "fetch")
    IGNORES: ClassVar[frozenset[str]] = WEIGHTS_IGNORES

    def __init__(self, config: Config, first_retry: float = FIRST_RETRY_SECONDS) -> None:
        self.config = config
        self.retries = Backoff(first_retry, MAX_RETRY_SECONDS)
        self.child: ChildProcess | None = None
        self.next_try = 0.0  # monotonic
        self.stopped = False
        self.last_reason: str | None = None  # of the last failure, logged once

    def argv(self) -> list[str]:
        return instaflyd_argv(self.config, *self.COMMAND)

    def wanted(self) -> bool:
        if self.config.model.weights != "imagenet":
            return False
        return not imagenet_status(self.config).ok

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self.stopped:
            return
        if self.child is not None:
            code = self.child.poll()
            if code is None:
                return
            self._finished(code, now)
        if now < self.next_try or not self.wanted():
            return
        # Its own output is kept (for the reason), not relayed: this fetcher logs one line.
        self.child = ChildProcess("weights", self.argv(), relay_to=io.StringIO())
        log.info("fetching the ImageNet VGG16 weights in the background (pid %d)", self.child.pid)

    def _finished(self, code: int, now: float) -> None:
        assert self.child is not None
        last = self.child.last_line()
        self.child = None
        if code == 0:
            self.retries.succeeded()
            self.last_reason = None
            log.info("the ImageNet VGG16 weights are in place")
            return
        wait = self.retries.failed()
        self.next_try = now + wait
        reason = _without_url(last or f"exit code {code}")
        if reason != self.last_reason:  # one line per reason; the page says it all along
            log.warning("fetching the weights failed: %s; trying again by itself", reason)
        else:
            log.debug("fetching the weights failed again: %s; next try in %.0f s", reason, wait)
        self.last_reason = reason

    @property
    def failures(self) -> int:
        return self.retries.failures

    def release(self, new: Config) -> ChildProcess | None:
        """A reload to `new`: the running fetch, let go for the next daemon if `new` changes
        nothing it reads, so that the download goes on; None if it is to be stopped."""
        return release_if_unchanged(self, new)

    def adopt(self, child: ChildProcess) -> None:
        """Take over the fetch an earlier daemon let go of (a reload)."""
        self.child = child
        log.info("the weights fetch kept running (pid %d): its settings did not change", child.pid)

    def stop(self) -> ChildProcess | None:
        """Start no more fetches; returns a running one for the caller to stop with the rest."""
        self.stopped = True
        child, self.child = self.child, None
        return child


def _without_url(line: str) -> str:
    """The child's last line without its log prefix and the long download URL."""
    line = re.sub(r"https?://\S+?(:?)(\s|$)", r"the download server\1\2", line)
    return re.sub(r"^\S+ \S+ (WARNING|ERROR|INFO) [\w.]+: ", "", line).strip()
