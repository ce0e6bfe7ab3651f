"""Logging to stderr with the component's name on every line (journald keeps the rest)."""

from __future__ import annotations

import logging
import os
import re
import sys

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
