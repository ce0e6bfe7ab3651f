"""Logging to stderr with the component's name on every line (journald keeps the rest)."""

from __future__ import annotations

import logging
import os
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
