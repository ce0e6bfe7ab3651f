"""The repairs list: every problem the box knows about, in the household's words, with what to do.

Home Assistant's Repairs panel is the model: a problem is one entry however often it is raised,
it carries a sentence a household understands and what to do about it, it says since when and
how often, and it disappears when its cause is gone. The page shows each as a card, /healthz is
not "ok" while one of severity "error" exists, /metrics has a gauge per problem, and systemd's
STATUS line leads with them.

Any part of the appliance reports through one pair of functions, wherever it runs::

    from instaflyd import repairs

    repairs.report("store.read_only", "error",
                   "Captured posts cannot be saved: the storage is read-only.",
                   "Check the SD card or disk; the box saves them again once it is writable.")
    ...
    repairs.resolve("store.read_only")  # the cause is gone

- In the daemon, `install(registry)` makes them go straight into its `RepairsRegistry`.
- In a child of the daemon (proxy, capture writer, worker, enhancer, trainer), where the daemon
  sets $INSTAFLY_REPAIRS, they write one marker line to stderr, which the daemon's relay of the
  child's output reads (`parse_marker`) and files under that child's name: nothing touches the
  disk, so a full or read-only disk cannot stop a report. A child's problems are dropped when
  it exits (it reports them again if their cause is still there).
- Anywhere else (a command run by hand) the first report of a problem is logged once.

Reporting the same problem again is cheap and silent: it counts, and a child sends a repeat at
most every few seconds. A problem is logged once when it appears and once when it is resolved
(with how often it was seen), never per occurrence. Problem ids are dotted, area first:
"disk.low", "store.read_only", "child.hung.proxy", "config.invalid".

A shared module: it imports no package of instaflyd, so the store and the capture writer can
report too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, replace
from typing import Literal, get_args

log = logging.getLogger("instafly.repairs")

Severity = Literal["warning", "error"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
ENV = "INSTAFLY_REPAIRS"  # set by the daemon for its children: report through stderr
MARKER = "\x1einstafly-repairs "  # starts a report line on a child's stderr
RESEND_SECONDS = 5.0  # a child repeats an unchanged report at most this often
MAX_TEXT = 500  # characters of a sentence or an action that are kept


@dataclass(frozen=True)
class Problem:
    """One entry of the repairs list."""

    id: str  # dotted, area first: "disk.low", "child.hung.proxy"
    severity: Severity  # error: the box cannot do its job (healthz says so); warning: soon
    title: str  # a few words for the card's heading
    sentence: str  # what is wrong, in the household's words
    action: str  # what to do about it
    since: float  # when it was first raised (Unix time, for people)
    last_seen: float  # when it was last raised (Unix time)
    count: int  # how often it was raised while it lasted
    source: str  # who reported it: "daemon", "proxy", "worker", ...


class RepairsRegistry:
    """The daemon's current problems: one entry per id, thread-safe, no I/O under its lock."""

    def __init__(self) -> None:
        self._problems: dict[str, Problem] = {}
        self._lock = threading.Lock()

    def report(
        self,
        problem_id: str,
        severity: Severity,
        sentence: str,
        action: str,
        *,
        title: str | None = None,
        source: str = "daemon",
        count: int | None = None,
        now: float | None = None,
    ) -> Problem:
        """Raise a problem, or count it again if it is already raised (its text may change).

        `count`, when given, is the reporter's own count so far (a child's repeats arrive
        batched); otherwise each call counts one.
        """
        if severity not in SEVERITIES:
            raise ValueError(f"unknown severity {severity!r}")
        now = time.time() if now is None else now
        title = title or _title(problem_id)
        with self._lock:
            old = self._problems.get(problem_id)
            if old is None:
                problem = Problem(
                    problem_id,
                    severity,
                    title[:MAX_TEXT],
                    sentence[:MAX_TEXT],
                    action[:MAX_TEXT],
                    since=now,
                    last_seen=now,
                    count=count or 1,
                    source=source,
                )
            else:
                problem = replace(
                    old,
                    severity=severity,
                    title=title[:MAX_TEXT],
                    sentence=sentence[:MAX_TEXT],
                    action=action[:MAX_TEXT],
                    last_seen=now,
                    count=max(old.count, count) if count else old.count + 1,
                    source=source,
                )
            self._problems[problem_id] = problem
        if old is None:
            log.log(_LOG_LEVELS[severity], "problem: %s %s", sentence, action)
        elif old.severity != severity:
            log.log(_LOG_LEVELS[severity], "problem is now %s: %s", severity, sentence)
        return problem

    def resolve(self, problem_id: str) -> Problem | None:
        """The cause is gone: the entry disappears (returned, or None if it was not raised)."""
        with self._lock:
            problem = self._problems.pop(problem_id, None)
        if problem is not None:
            _log_resolved(problem)
        return problem

    def resolve_source(self, source: str) -> list[Problem]:
        """Drop every problem `source` reported (a child that exited)."""
        with self._lock:
            gone = [p for p in self._problems.values() if p.source == source]
            for problem in gone:
                del self._problems[problem.id]
        for problem in gone:
            _log_resolved(problem)
        return gone

    def resolve_prefix(self, prefix: str, keep: frozenset[str] = frozenset()) -> list[Problem]:
        """Drop the problems whose id starts with `prefix`, except those in `keep` (a probe that
        checks several things at once clears what it no longer sees)."""
        with self._lock:
            gone = [
                p for p in self._problems.values() if p.id.startswith(prefix) and p.id not in keep
            ]
            for problem in gone:
                del self._problems[problem.id]
        for problem in gone:
            _log_resolved(problem)
        return gone

    def problems(self) -> list[Problem]:
        """The current problems, errors first, then the oldest first."""
        with self._lock:
            current = list(self._problems.values())
        return sorted(current, key=lambda p: (p.severity != "error", p.since, p.id))

    def get(self, problem_id: str) -> Problem | None:
        with self._lock:
            return self._problems.get(problem_id)

    def errors(self) -> list[Problem]:
        return [p for p in self.problems() if p.severity == "error"]


_LOG_LEVELS = {"warning": logging.WARNING, "error": logging.ERROR}


def _log_resolved(problem: Problem) -> None:
    seen = f"seen {problem.count} time{'s' if problem.count != 1 else ''}"
    log.info("resolved: %s (%s since %s)", problem.title, seen, time.ctime(problem.since))


def _title(problem_id: str) -> str:
    return problem_id.replace(".", " ").replace("_", " ").capitalize()


# --- the one way in, from any process ---------------------------------------------------------


class _Reporter:
    """Where this process's reports go: the daemon's registry, its stderr, or the log."""

    def __init__(self) -> None:
        self.registry: RepairsRegistry | None = None
        self.source = "daemon"
        self._sent: dict[str, tuple[float, int, tuple[str, ...]]] = {}  # id -> when, count, text
        self._resolved: set[str] = set()  # ids this process has said are resolved
        self._lock = threading.Lock()

    def report(
        self, problem_id: str, severity: Severity, sentence: str, action: str, title: str | None
    ) -> None:
        if self.registry is not None:
            self.registry.report(
                problem_id, severity, sentence, action, title=title, source=self.source
            )
            return
        now = time.monotonic()
        text = (severity, sentence, action, title or "")
        with self._lock:
            first = problem_id not in self._sent
            when, count, last_text = self._sent.get(problem_id, (now, 0, ()))
            count += 1
            due = first or text != last_text or now - when >= RESEND_SECONDS
            self._sent[problem_id] = (now, count, text) if due else (when, count, last_text)
            self._resolved.discard(problem_id)
        if not due:
            return
        if os.environ.get(ENV):
            _write_marker(
                {"op": "report", "id": problem_id, "severity": severity, "sentence": sentence,
                 "action": action, "title": title, "count": count, "pid": os.getpid()}
            )  # fmt: skip
        elif first:
            log.log(_LOG_LEVELS.get(severity, logging.WARNING), "problem: %s %s", sentence, action)

    def resolve(self, problem_id: str) -> None:
        if self.registry is not None:
            self.registry.resolve(problem_id)
            return
        with self._lock:
            was = self._sent.pop(problem_id, None)
            # A new process resolves once what an earlier one (its predecessor) may have raised.
            tell = was is not None or problem_id not in self._resolved
            self._resolved.add(problem_id)
        if not tell:
            return
        if os.environ.get(ENV):
            _write_marker({"op": "resolve", "id": problem_id, "pid": os.getpid()})
        elif was is not None:
            log.info("resolved: %s (seen %d times)", problem_id, was[1])


_reporter = _Reporter()


def install(registry: RepairsRegistry | None, source: str = "daemon") -> None:
    """Make this process's reports go into `registry` (the daemon's); None undoes it."""
    _reporter.registry = registry
    _reporter.source = source


def report(
    problem_id: str, severity: Severity, sentence: str, action: str, *, title: str | None = None
) -> None:
    """Raise (or count again) a problem; see the module docstring. Never raises."""
    try:
        _reporter.report(problem_id, severity, sentence, action, title)
    except Exception as exc:  # a report must never take its reporter down
        log.warning("could not report the problem %s: %s", problem_id, exc)


def resolve(problem_id: str) -> None:
    """The cause of `problem_id` is gone. Never raises; resolving what is not raised is a no-op."""
    try:
        _reporter.resolve(problem_id)
    except Exception as exc:
        log.warning("could not resolve the problem %s: %s", problem_id, exc)


# --- the marker lines a child writes and the daemon reads --------------------------------------


@dataclass(frozen=True)
class Report:
    """A child's report as the daemon's relay reads it from a marker line."""

    op: Literal["report", "resolve"]
    id: str
    pid: int
    severity: Severity = "warning"
    sentence: str = ""
    action: str = ""
    title: str | None = None
    count: int = 1


def _write_marker(fields: dict[str, object]) -> None:
    line = (MARKER + json.dumps(fields, separators=(",", ":"))[:3000] + "\n").encode()
    # One write of less than PIPE_BUF bytes: never interleaved with another thread's log line.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.write(sys.stderr.fileno(), line)


def parse_marker(line: str) -> Report | None:
    """The report on a line of a child's output, or None if the line is not one (or is bad)."""
    if not line.startswith(MARKER):
        return None
    try:
        fields = json.loads(line[len(MARKER) :])
        op, problem_id, pid = fields["op"], str(fields["id"]), int(fields["pid"])
        if op == "resolve":
            return Report("resolve", problem_id[:200], pid)
        severity = fields.get("severity")
        if op != "report" or severity not in SEVERITIES:
            return None
        title = fields.get("title")
        return Report(
            "report",
            problem_id[:200],
            pid,
            severity,
            str(fields.get("sentence", ""))[:MAX_TEXT],
            str(fields.get("action", ""))[:MAX_TEXT],
            str(title)[:MAX_TEXT] if title else None,
            max(1, int(fields.get("count", 1))),
        )
    except (ValueError, KeyError, TypeError):
        return None
