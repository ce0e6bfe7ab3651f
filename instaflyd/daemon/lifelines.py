"""What the daemon hears from its children besides their log: heartbeats and problem reports.

Every line a child writes goes through the daemon's relay (`children.ChildProcess`); the marker
lines of `instaflyd.heartbeat` and `instaflyd.repairs` stop here instead of going to the log.
A beat notes, by the monotonic clock, when that process (a child, or a grandchild such as the
capture writer or the enhancer, whose output passes through its parent) last said it is alive;
`overdue()` names the processes silent for longer than `faults.hang_seconds`, for the
supervisor to kill and restart. A report goes into the daemon's repairs list under the name of
the child whose output carried it, and is dropped when that child ends.

A child just started has a grace of at least `STARTUP_GRACE_SECONDS` for its first beat (the
proxy imports mitmproxy, the trainer TensorFlow, before their loops run).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from instaflyd import heartbeat, repairs
from instaflyd.processes import process_start_time, process_tree
from instaflyd.repairs import RepairsRegistry

BEATS_PER_TIMEOUT = 6  # a child beats this many times within the hang timeout
STARTUP_GRACE_SECONDS = 60.0


@dataclass
class _Heard:
    component: str  # the daemon's child whose output carried the beats
    name: str  # who beats: "proxy", "proxy-writer", "enhancer", ...
    pid: int
    last: float  # monotonic time of the last beat (or of the start)
    allowance: float  # seconds of silence allowed from `last`
    reported: bool = False  # overdue() has named it already
    beaten: bool = False  # it has beaten at least once


@dataclass(frozen=True)
class Silent:
    """A process that stopped answering."""

    component: str
    name: str
    pid: int
    silent_for: float  # seconds since it was last heard


class Lifelines:
    def __init__(
        self,
        registry: RepairsRegistry,
        hang_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.hang_seconds = hang_seconds
        self.clock = clock
        self._heard: dict[int, _Heard] = {}
        self._lock = threading.Lock()

    def environment(self) -> dict[str, str]:
        """What a child needs to beat and to report problems through its output."""
        every = max(0.2, self.hang_seconds / BEATS_PER_TIMEOUT)
        return {heartbeat.ENV: f"{every:g}", repairs.ENV: "1"}

    def expect(self, component: str, pid: int) -> None:
        """`pid` was just started as `component`: it must beat within the start-up grace."""
        grace = max(self.hang_seconds, STARTUP_GRACE_SECONDS)
        with self._lock:
            self._heard[pid] = _Heard(component, component, pid, self.clock(), grace)

    def hear(self, component: str, line: str) -> bool:
        """A line of `component`'s output: True if it was a marker (and taken care of here)."""
        if beat := heartbeat.parse(line):
            self._beat(component, beat)
            return True
        if report := repairs.parse_marker(line):
            if report.op == "resolve":
                self.registry.resolve(report.id)
            else:
                self.registry.report(
                    report.id,
                    report.severity,
                    report.sentence,
                    report.action,
                    title=report.title,
                    source=component,
                    count=report.count,
                )
            return True
        return False

    def _beat(self, component: str, beat: heartbeat.Beat) -> None:
        with self._lock:
            known = self._heard.get(beat.pid)
            new = known is None or known.name != beat.name or not known.beaten
            self._heard[beat.pid] = _Heard(
                component, beat.name, beat.pid, self.clock(), self.hang_seconds, beaten=True
            )
        if new:  # a new process of that name answers: an earlier one's hang is healed
            self.registry.resolve(hung_problem_id(beat.name))

    def overdue(self) -> list[Silent]:
        """The processes silent for too long, each named once (until it beats again)."""
        now = self.clock()
        silent = []
        with self._lock:
            for heard in list(self._heard.values()):
                if heard.reported or now - heard.last <= heard.allowance:
                    continue
                if process_start_time(heard.pid) is None:  # it ended: nothing hangs
                    del self._heard[heard.pid]
                    continue
                heard.reported = True
                silent.append(Silent(heard.component, heard.name, heard.pid, now - heard.last))
        return silent

    def forget(self, pid: int) -> None:
        with self._lock:
            self._heard.pop(pid, None)

    def ended(self, component: str) -> None:
        """The child `component` ended: forget it and what beat through it, drop its reports."""
        with self._lock:
            for pid in [p for p, h in self._heard.items() if h.component == component]:
                del self._heard[pid]
        self.registry.resolve_source(component)

    def silence(self, pid: int) -> float | None:
        """Seconds since `pid` was last heard (None: not followed)."""
        with self._lock:
            heard = self._heard.get(pid)
            return None if heard is None else self.clock() - heard.last


def hung_problem_id(name: str) -> str:
    return f"child.hung.{name}"


def descends_from(pid: int, ancestor: int) -> bool:
    """Whether `pid` is `ancestor` or one of its descendants now (never kill a stranger)."""
    return pid in process_tree(ancestor)
