"""Is the process that claimed some work still running? (Linux's /proc, no signals sent.)

A row in the store that says "pid 1234 is on it" (a training run, a drop-folder job) outlives
its process when the process is killed. Checking only that pid 1234 exists is not enough: pids
are reused, and a killed child stays a zombie until it is reaped. So a claim counts as alive
only while its pid runs, is not a zombie, and started no later than the claim was made.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

# Start times from /proc come in clock ticks since boot: a little slack for rounding.
START_TIME_TOLERANCE = 2.0


def process_start_time(pid: int) -> float | None:
    """When process `pid` started (Unix time); None when it is not running (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):  # a zombie has finished running
        return None
    return _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def claim_alive(pid: int | None, claimed_at: float | None = None) -> bool:
    """Whether the process `pid` that claimed something at `claimed_at` still runs (and is not
    a newer process that was given the same pid).

    The claim's time is the wall clock's, the process's start is counted from boot: a step of
    the wall clock between the claim and now (NTP setting the clock of a box without a
    battery-backed one, hours after boot) makes the claimer look younger than its claim. So a
    process that looks younger is taken for a stranger with a reused pid only if it is not one
    of ours (an instaflyd command line): a running enhancement or training never looks crashed
    because the clock moved.
    """
    if not pid:
        return False
    started = process_start_time(pid)
    if started is None:
        return False
    if claimed_at is None or started <= claimed_at + START_TIME_TOLERANCE:
        return True
    return is_instaflyd_process(pid)


def is_instaflyd_process(pid: int) -> bool:
    """Whether `pid` runs instaflyd (`python -m instaflyd ...` or the `instaflyd` script)."""
    words = command_line(pid)
    return words is not None and runs_instaflyd(words)


def command_line(pid: int) -> list[str] | None:
    """The argv of process `pid`; None when it is gone (or not ours to read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [word.decode(errors="replace") for word in raw.split(b"\0") if word]


def runs_instaflyd(words: list[str]) -> bool:
    """Whether a command line runs instaflyd."""
    if "-m" in words:
        at = words.index("-m")
        return at + 1 < len(words) and words[at + 1] == "instaflyd"
    # The installed script: `instaflyd ...`, or `python .../bin/instaflyd ...`.
    return any(Path(word).name == "instaflyd" for word in words[:2])


def wall_clock() -> float:
    """The wall clock, for what is compared with stored Unix times (a test steps it)."""
    return time.time()


def _boot_time() -> float:
    """The Unix time of boot (systemd's ProcSubset=pid hides /proc/stat, so not from there)."""
    return wall_clock() - time.clock_gettime(time.CLOCK_BOOTTIME)


def process_tree(pid: int) -> list[int]:
    """`pid` and every process descended from it that is running now (parents first)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        tree.append(current)
        todo.extend(sorted(children.get(current, [])))
    return tree


def resident_bytes(pid: int) -> int | None:
    """The process's resident memory (VmRSS); None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return 0  # a zombie: nothing resident


# --- children that die with their parent ------------------------------------------------------

PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        return None
    return prctl


_PRCTL = _load_prctl()  # looked up once, before any fork: the child only calls it


def die_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen`: the child gets `signum` when the parent dies.

    Linux's PR_SET_PDEATHSIG, set in the child between fork and exec (it survives the exec). If
    the parent died before that (the fork's race), the child signals itself at once. The signal
    is sent when the *thread* that started the child ends, so children are started from the
    daemon's main thread. Returns None where there is no prctl (the child then outlives us, and
    the next start ends it as an orphan).
    """
    if _PRCTL is None:
        return None
    prctl, parent = _PRCTL, os.getpid()

    def in_the_child() -> None:
        prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signum)

    return in_the_child


def processes_with_open(paths: list[Path]) -> list[int]:
    """The pids of other processes that have one of `paths` open (those /proc lets us see: our
    own user's, or all as root)."""
    wanted = {str(path.absolute()) for path in paths}
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
        except OSError:  # gone, or not ours to look at
            continue
        if links & wanted:
            found.append(int(proc.name))
    return sorted(found)
