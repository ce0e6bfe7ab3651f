"""Logging to stderr with the component's name on every line (journald keeps the rest)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator

FORMAT = "%(asctime)s {component}[%(process)d] %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str, component: str) -> None:
    """Send the `instafly` loggers to stderr, tagged with `component` (proxy, worker, ...)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT.format(component=component), "%H:%M:%S"))
    root = logging.getLogger("instafly")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # TensorFlow's C++ start-up chatter is noise to a household; errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# What TensorFlow's C++ side prints while it starts, on a box without a GPU: it goes to the
# process's stderr before any Python logging, so it is dropped line by line where a parent relays
# a child's output (the daemon for its children, the worker for its enhancer). Everything else,
# TensorFlow's real warnings and errors included, is relayed.
_NATIVE_NOISE = re.compile(
    r"^(?:"
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:. ]+\d+ [\w.]+:\d+\] "  # every INFO line of TensorFlow's C++ logging
    r"|[EW]\d{4} [\d:. ]+\d+ [\w.]+:\d+\] (?:failed call to cuInit|Unable to register cu"
    r"|Could not find cuda drivers|TF-TRT Warning|Could not find TensorRT)"
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    r")"
)


def is_native_noise(line: str) -> bool:
    """Whether `line` is TensorFlow's start-up chatter (cuInit, oneDNN, CPU features, ...)."""
    return _NATIVE_NOISE.match(line) is not None


@contextlib.contextmanager
def native_noise_filtered() -> Iterator[None]:
    """Inside the block, what the process writes to stderr (fd 2, where TensorFlow's C++ side
    prints) passes through a filter that drops `is_native_noise` lines, as the daemon does for
    its children: for `instaflyd train` run by hand. Everything else is passed on, in order."""
    sys.stderr.flush()
    saved = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)

    sink_fd = os.dup(saved)  # the pump's own copy: `saved` may be closed before it runs

    def pump() -> None:
        with (
            os.fdopen(read, "r", encoding="utf-8", errors="replace") as source,
            os.fdopen(sink_fd, "w", encoding="utf-8") as sink,
        ):
            for line in source:
                if not is_native_noise(line.rstrip("\n")):
                    sink.write(line)
                    sink.flush()

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer goes: the filter ends after what was written
        os.close(saved)
        thread.join(30)  # what was written before the block ended comes out first


class FaultLog:
    """One log line per fault, not one per failure: the first failure is logged (with its
    traceback at DEBUG), repeats only counted (a reminder every `remind_seconds`), and the
    recovery is logged once with the count. For loops that retry every few seconds."""

    def __init__(self, logger: logging.Logger, what: str, remind_seconds: float = 600.0) -> None:
        self.logger = logger
        self.what = what
        self.remind_seconds = remind_seconds
        self.failures = 0  # in a row, since it last worked
        self._last_said = 0.0

    def failed(self, exc: BaseException) -> bool:
        """Note a failure; True if this one was logged."""
        self.failures += 1
        now = time.monotonic()
        if self.failures == 1:
            self.logger.error("%s: %s", self.what, _one_line(exc))
            self.logger.debug("%s", self.what, exc_info=exc)
        elif now - self._last_said >= self.remind_seconds:
            self.logger.error("%s: still failing (%d times): %s", self.what, self.failures,
                              _one_line(exc))  # fmt: skip
        else:
            return False
        self._last_said = now
        return True

    def ok(self) -> None:
        if self.failures:
            self.logger.warning("%s: works again after %d failures", self.what, self.failures)
            self.failures = 0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]
