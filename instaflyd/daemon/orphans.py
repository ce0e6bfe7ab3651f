"""Ending what an earlier daemon left running: its own orphans, never another program's.

Every child of the daemon dies with it (`processes.die_with_parent`), but a child busy shutting
down, or one that ignores the signal, can outlive a daemon that was killed, and hold the proxy's
port or the drop folder. So `instaflyd run` looks, before it starts anything, for processes that

- belong to this user,
- were started by an instaflyd daemon (their environment names it: $INSTAFLY_DAEMON_PID, which
  every child inherits, down to the capture writer and the enhancer),
- whose daemon is gone (that pid is not an `instaflyd ... run` any more),
- run instaflyd on this data folder (`--data-dir`, from their command line; a grandchild such as
  the capture writer is ended with the tree of the child it belongs to),

and ends each such tree: SIGTERM, then SIGKILL after a few seconds. A process started by hand
(no $INSTAFLY_DAEMON_PID), a child of a daemon that is still running, or an instaflyd working on
another data folder is never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from instaflyd.daemon.children import DAEMON_PID_ENV
from instaflyd.processes import process_start_time, process_tree, runs_instaflyd

log = logging.getLogger("instafly.daemon")

STOP_SECONDS = 5.0  # an orphan's tree gets this long after SIGTERM before SIGKILL


@dataclass(frozen=True)
class Orphan:
    pid: int
    command: str  # "proxy", "worker", "worker --enhancer", "train --scheduled", ...
    daemon_pid: int  # the daemon that started it, gone


def find_orphans(data_dir: Path) -> list[Orphan]:
    """The tops of the process trees an earlier daemon on `data_dir` left behind."""
    mine = set(process_tree(os.getpid()))
    wanted = _resolved(data_dir)
    found: dict[int, Orphan] = {}
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        pid = int(entry.name)
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
            parents[pid] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        daemon_pid = _daemon_pid(environ)
        if daemon_pid is None or daemon_pid in mine or _is_daemon(daemon_pid):
            continue
        command = _instaflyd_command(argv, wanted)
        if command is not None:
            found[pid] = Orphan(pid, command, daemon_pid)
    # Only the top of each tree: a child of an orphan goes with it.
    return [o for o in found.values() if parents.get(o.pid) not in found]


def end_orphans(data_dir: Path, stop_seconds: float = STOP_SECONDS) -> list[Orphan]:
    """End the orphans of `data_dir` (and everything under them); returns what was ended."""
    orphans = find_orphans(data_dir)
    if not orphans:
        return []
    trees = {o.pid: process_tree(o.pid) for o in orphans}
    everyone = [pid for tree in trees.values() for pid in tree]
    started = {pid: process_start_time(pid) for pid in everyone}
    for pid in everyone:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + stop_seconds
    while time.monotonic() < deadline and any(_same(pid, started[pid]) for pid in everyone):
        time.sleep(0.1)
    killed = [pid for pid in everyone if _same(pid, started[pid])]
    for pid in killed:
        _signal(pid, signal.SIGKILL)
    log.warning(
        "ended %d process%s an earlier daemon left running: %s%s",
        len(orphans),
        "" if len(orphans) == 1 else "es",
        ", ".join(f"{o.command} (pid {o.pid})" for o in orphans),
        f"; {len(killed)} needed SIGKILL" if killed else "",
    )
    return orphans


def _daemon_pid(environ: list[bytes]) -> int | None:
    prefix = DAEMON_PID_ENV.encode() + b"="
    for item in environ:
        if item.startswith(prefix):
            with contextlib.suppress(ValueError):
                return int(item[len(prefix) :])
    return None


def _is_daemon(pid: int) -> bool:
    """Whether `pid` is a running `instaflyd ... run` (the daemon its children name)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if process_start_time(pid) is None:
        return False
    words = [a.decode(errors="replace") for a in argv if a]
    return runs_instaflyd(words) and "run" in words


def _instaflyd_command(argv: list[bytes], data_dir: Path) -> str | None:
    """The instaflyd command `argv` runs on `data_dir`, or None if it is something else."""
    words = [a.decode(errors="replace") for a in argv if a]
    if not runs_instaflyd(words) or "--data-dir" not in words:
        return None
    at = words.index("--data-dir")
    if at + 1 >= len(words) or _resolved(Path(words[at + 1])) != data_dir:
        return None
    rest = words[at + 2 :]
    return " ".join(rest) or "instaflyd"


def _resolved(path: Path) -> Path:
    try:
        return path.expanduser().resolve()
    except OSError:
        return path


def _same(pid: int, started: float | None) -> bool:
    """Whether `pid` is still the process that had start time `started` (not a reused pid)."""
    now = process_start_time(pid)
    return now is not None and started is not None and abs(now - started) < 1


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)
