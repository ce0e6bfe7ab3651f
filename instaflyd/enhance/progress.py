"""A progress bar for `enhance` and `generate` on a terminal; nothing when output is piped.

Keras's Progbar draws the bar. It writes to stdout, which belongs to `--json`, so the bar is
redirected to stderr, and shown only when stderr is a terminal.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import keras

from instaflyd.enhance.edits import Progress


@contextlib.contextmanager
def terminal_progress(label: str) -> Iterator[Progress | None]:
    """A Progress callback that draws `label` and a bar on stderr; None when not a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    bar: keras.utils.Progbar | None = None
    last = 0

    def update(done: int, total: int, score: float) -> None:
        nonlocal bar, last
        with contextlib.redirect_stdout(sys.stderr):
            if bar is None:
                print(label)
                bar = keras.utils.Progbar(total, stateful_metrics=["score"], unit_name="step")
            bar.update(done, values=[("score", score)])
        last = done

    try:
        yield update
    finally:
        if bar is not None and last < (bar.target or 0):  # stopped early: close the line
            with contextlib.redirect_stdout(sys.stderr):
                bar.update(last, finalize=True)
