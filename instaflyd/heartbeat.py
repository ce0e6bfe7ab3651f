"""Heartbeats: each child of the daemon says "still alive" on its stderr every few seconds.

The daemon relays every child's output line by line already (`daemon.children`); a heartbeat is
one more line there, a marker the relay takes out instead of logging, so it costs no file, no
socket and no disk (a full or read-only disk cannot stop it). The daemon notes when it heard
each process (by the monotonic clock, so a step of the wall clock means nothing) and takes a
process that has been silent for `faults.hang_seconds` for hung: it kills it, and the part that
started it starts another (`daemon.lifelines`).

Where the beat comes from decides what a hang means: the proxy beats from mitmproxy's event loop
and the worker and the capture writer from their loops, so a loop that is stuck (or a process
that was stopped) goes silent; the enhancer and the trainer, whose one step can be minutes of
TensorFlow, beat from a thread of their own (`start_thread`), which catches a stopped or
frozen process.

The daemon turns beats on for its children with $INSTAFLY_HEARTBEAT_SECONDS (the interval);
without it (a command run by hand) `beat` does nothing. A shared module: it imports no package
of instaflyd.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass

ENV = "INSTAFLY_HEARTBEAT_SECONDS"
MARKER = "\x1einstafly-alive "


@dataclass(frozen=True)
class Beat:
    name: str  # who beat: "proxy", "proxy-writer", "worker", "enhancer", "trainer"
    pid: int


def interval() -> float | None:
    """Seconds between beats in this process, or None when nobody listens."""
    try:
        seconds = float(os.environ.get(ENV, ""))
    except ValueError:
        return None
    return seconds if seconds > 0 else None


_last: dict[str, float] = {}


def beat(name: str) -> None:
    """Say "alive" (at most once per interval; cheap to call from every turn of a loop)."""
    every = interval()
    if every is None:
        return
    now = time.monotonic()
    if now - _last.get(name, -every) < every:
        return
    _last[name] = now
    line = f"{MARKER}{name} {os.getpid()}\n".encode()
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.write(sys.stderr.fileno(), line)  # one short write: never inside another line


def start_thread(name: str) -> threading.Thread | None:
    """Beat from a daemon thread for as long as the process runs (the enhancer, the trainer)."""
    every = interval()
    if every is None:
        return None

    def run() -> None:
        while True:
            beat(name)
            time.sleep(every)

    thread = threading.Thread(target=run, name=f"heartbeat-{name}", daemon=True)
    thread.start()
    return thread


def parse(line: str) -> Beat | None:
    """The beat on a line of a child's output, or None if the line is not one."""
    if not line.startswith(MARKER):
        return None
    name, _, pid = line[len(MARKER) :].strip().partition(" ")
    try:
        return Beat(name[:40], int(pid))
    except ValueError:
        return None
