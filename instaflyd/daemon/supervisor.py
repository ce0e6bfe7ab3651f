"""The supervisor: keeps the proxy and the worker running, restarting them with backoff.

A component that exits is started again after a delay that doubles with each quick crash
(1 s, 2 s, 4 s, ... up to 30 s). More than `max_restarts` restarts within a minute means
something is persistently wrong (a port in use, a broken file): the component is then shown
"degraded" and tried again only after `degraded_retry_seconds`, instead of burning the CPU in a
crash loop. Every crash is written to the event log so the status page can say why.

A component that stops answering (no heartbeat for `faults.hang_seconds`, see
`daemon.lifelines`) is killed and restarted the same way, and the event says it hung; so is a
hung grandchild (the capture writer, the enhancer), which its parent then starts again. A
component that is degraded or hung is also a problem on the repairs list, until it runs again.

The supervisor's `tick()` runs on the daemon's main thread; the status page reads `snapshot()`
from waitress's threads, so the state is guarded by a lock, which is never held while waiting
for anything: events go to the `EventWriter`'s queue after the lock is released.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from instaflyd.daemon.backoff import Backoff
from instaflyd.daemon.children import ChildProcess, stop_all
from instaflyd.daemon.event_writer import EventSink
from instaflyd.daemon.lifelines import Lifelines, Silent, descends_from, hung_problem_id
from instaflyd.repairs import RepairsRegistry
from instaflyd.status.document import ComponentStatus
from instaflyd.store.events import Level

log = logging.getLogger("instafly.daemon")

ComponentState = Literal["starting", "running", "backoff", "degraded", "stopping", "stopped"]


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 5  # restarts allowed within `window_seconds`...
    window_seconds: float = 60.0
    backoff_first: float = 1.0  # ...each after a delay that doubles from this...
    backoff_max: float = 30.0  # ...up to this
    degraded_retry_seconds: float = 300.0  # a degraded component is tried again after this
    stable_after_seconds: float = 60.0  # a run this long resets the backoff


@dataclass
class ComponentSpec:
    """What to run and how to tell it is up (None: as soon as it is started)."""

    name: str
    argv: Sequence[str]
    ready_check: Callable[[], bool] | None = None
    heartbeat: bool = False  # it beats (`instaflyd.heartbeat`): silence means it hangs
    title: str = ""  # how the household calls it: "the proxy"
    hung_effect: str = ""  # what its hang meant: "phones could not browse"
    settings: str = ""  # a digest of the config it reads: a reload restarts it if this changes


def tcp_listening(host: str, port: int) -> Callable[[], bool]:
    """A ready check: something accepts TCP connections on host:port."""
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)

    def check() -> bool:
        try:
            with socket.create_connection((target, port), timeout=0.5):
                return True
        except OSError:
            return False

    return check


class Component:
    """One supervised child: its process, its state and its restart history."""

    def __init__(self, spec: ComponentSpec, policy: RestartPolicy) -> None:
        self.spec = spec
        self.policy = policy
        self.state: ComponentState = "stopped"
        self.child: ChildProcess | None = None
        self.restarts = 0  # restarts since the daemon started
        self.recent_restarts: collections.deque[float] = collections.deque()
        self.next_start: float | None = None  # monotonic time of the next start attempt
        self.backoff = Backoff(policy.backoff_first, policy.backoff_max)
        self.last_exit: int | None = None
        self.last_exit_at: float | None = None
        self.last_error: str | None = None
        self.hung_for: float | None = None  # set when it was killed for not answering
        self._started_monotonic = 0.0

    @property
    def name(self) -> str:
        return self.spec.name

    def start(self, now: float, lifelines: Lifelines | None = None) -> None:
        self.child = ChildProcess(self.name, self.spec.argv, listener=lifelines)
        if lifelines is not None and self.spec.heartbeat:
            lifelines.expect(self.name, self.child.pid)
        self._started_monotonic = now
        self.next_start = None
        self.hung_for = None
        self.state = "starting" if self.spec.ready_check else "running"
        log.info("%s started (pid %d)", self.name, self.child.pid)

    def adopt(self, child: ChildProcess, now: float, lifelines: Lifelines | None = None) -> None:
        """Take over `child`, started by an earlier supervisor with the same settings (a
        reload that did not change what it reads): it keeps running, under our lifelines."""
        self.child = child
        child.listener = lifelines
        if lifelines is not None and self.spec.heartbeat:
            lifelines.expect(self.name, child.pid)
        self._started_monotonic = child.started_monotonic
        self.next_start = None
        self.hung_for = None
        self.state = "starting" if self.spec.ready_check else "running"
        log.info("%s kept running (pid %d): its settings did not change", self.name, child.pid)

    def check_ready(self) -> None:
        if self.state == "starting" and self.spec.ready_check and self.spec.ready_check():
            self.state = "running"
            log.info("%s is up", self.name)

    def exited(self, now: float, wall: float) -> str:
        """Record the child's exit and schedule its restart; returns a sentence for the log."""
        assert self.child is not None
        self.last_exit = self.child.poll()
        self.last_exit_at = wall
        if self.hung_for is not None:
            self.last_error = f"stopped answering for {self.hung_for:.0f} s (hung)"
            how = f"stopped answering for {self.hung_for:.0f} s (hung), so it was killed"
        else:
            self.last_error = self.child.last_error()
            how = _exit_words(self.last_exit)
            how += f" ({self.last_error})" if self.last_error else ""
        self.child = None
        if now - self._started_monotonic >= self.policy.stable_after_seconds:
            self.backoff.succeeded()
        while self.recent_restarts and now - self.recent_restarts[0] > self.policy.window_seconds:
            self.recent_restarts.popleft()
        if len(self.recent_restarts) >= self.policy.max_restarts:
            self.state = "degraded"
            self.next_start = now + self.policy.degraded_retry_seconds
            self.recent_restarts.clear()
            self.backoff.succeeded()
            return (
                f"{self.name} {how}; it was restarted {self.policy.max_restarts} times within "
                f"{self.policy.window_seconds:.0f} s, so it is degraded and will be tried again in "
                f"{self.policy.degraded_retry_seconds:.0f} s"
            )
        self.state = "backoff"
        delay = self.backoff.failed()
        self.next_start = now + delay
        return f"{self.name} {how}; restarting in {delay:.0f} s"

    def restart_due(self, now: float) -> bool:
        return (
            self.state in ("backoff", "degraded")
            and self.next_start is not None
            and (now >= self.next_start)
        )

    def snapshot(self, now: float) -> ComponentStatus:
        return ComponentStatus(
            state=self.state,
            pid=self.child.pid if self.child else None,
            restarts=self.restarts,
            started_at=self.child.started if self.child else None,
            last_exit=self.last_exit,
            last_exit_at=self.last_exit_at,
            last_error=self.last_error,
            next_start_in=round(self.next_start - now, 1) if self.next_start else None,
        )


class Supervisor:
    """Starts, watches and restarts the components; stops them all on request."""

    def __init__(
        self,
        specs: Sequence[ComponentSpec],
        events: EventSink,
        policy: RestartPolicy | None = None,
        *,
        lifelines: Lifelines | None = None,
        repairs: RepairsRegistry | None = None,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self.components = {spec.name: Component(spec, self.policy) for spec in specs}
        self.events = events
        self.lifelines = lifelines
        self.repairs = repairs or (lifelines.registry if lifelines else RepairsRegistry())
        self.stopping = False
        self._lock = threading.Lock()

    def start(self, adopt: Mapping[str, ChildProcess] | None = None) -> None:
        """Start every component, or take over its running process from `adopt` (a reload)."""
        now = time.monotonic()
        adopt = adopt or {}
        with self._lock:
            for name, component in self.components.items():
                child = adopt.get(name)
                if child is not None and child.poll() is None:
                    component.adopt(child, now, self.lifelines)
                else:
                    component.start(now, self.lifelines)

    def release(self, names: Iterable[str]) -> dict[str, ChildProcess]:
        """Let go of these components' running processes, without stopping them, for the
        supervisor that takes over after a reload; `stop()` then leaves them alone."""
        released = {}
        with self._lock:
            for name in names:
                component = self.components.get(name)
                if component is None or component.child is None or component.state != "running":
                    continue
                if component.child.poll() is not None:
                    continue
                released[name] = component.child
                component.child = None
                component.state = "stopped"
        return released

    def tick(self) -> None:
        """Notice exits and hangs, restart what is due, mark what came up. Call a few times a
        second. Holds the lock only while it changes the state; writes nothing itself."""
        now, wall = time.monotonic(), time.time()
        said: list[tuple[str, Level, str, str]] = []  # events, recorded once the lock is free
        with self._lock:
            if self.stopping:
                return
            for component in self.components.values():
                if component.child is not None and component.child.poll() is not None:
                    hung = component.hung_for is not None
                    message = component.exited(now, wall)
                    degraded = component.state == "degraded"
                    log.log(logging.ERROR if degraded or hung else logging.WARNING, "%s", message)
                    level: Level = "error" if degraded or hung else "warning"
                    said.append((component.name, level, "hung" if hung else "exited", message))
                    if self.lifelines is not None:
                        self.lifelines.ended(component.name)
                    if degraded:
                        self._report_degraded(component)
                elif component.restart_due(now):
                    component.restarts += 1
                    component.recent_restarts.append(now)
                    component.start(now, self.lifelines)
                component.check_ready()
                if component.state == "running":
                    self.repairs.resolve(degraded_problem_id(component.name))
        for name, level, kind, message in said:
            self.events.record(name, level, kind, message)

    def hung(self, silent: Silent) -> bool:
        """`silent` stopped answering: kill it if it is one of ours (a component, or a process
        under one); the component is then restarted, a grandchild by its parent. True if it
        was ours to handle."""
        with self._lock:
            component = self.components.get(silent.component)
            child = component.child if component else None
            if component is None or child is None or self.stopping:
                return False
            if silent.pid == child.pid:
                component.hung_for = silent.silent_for
                child.kill()  # SIGKILL: a stopped (SIGSTOP) process cannot act on SIGTERM
                what = component.spec.title or f"the {component.name}"
                effect = component.spec.hung_effect
            elif descends_from(silent.pid, child.pid):
                _kill(silent.pid)
                what = _GRANDCHILD_TITLES.get(silent.name, f"the {silent.name}")
                effect = ""
            else:
                return False
        message = (
            f"{silent.name} (pid {silent.pid}) stopped answering for {silent.silent_for:.0f} s;"
            " it was killed and is being started again"
        )
        log.error("%s", message)
        if silent.pid != child.pid:  # a component's own hang is recorded when its exit is seen
            self.events.record(silent.component, "error", "hung", message)
        self.repairs.report(
            hung_problem_id(silent.name),
            "error",
            f"{what.capitalize()} stopped answering for {silent.silent_for:.0f} seconds"
            + (f" ({effect})" if effect else "")
            + "; it is being restarted.",
            "Nothing, if this goes away by itself in a moment. If it keeps coming back, restart"
            " the box, and if that does not help, report it with the log (Details).",
            title=f"{what.capitalize()} stopped answering",
        )
        return True

    def is_up(self, name: str) -> bool:
        """Running, or given up on for now (so that start-up does not wait forever)."""
        with self._lock:
            return self.components[name].state in ("running", "degraded")

    def snapshot(self) -> dict[str, ComponentStatus]:
        now = time.monotonic()
        with self._lock:
            return {name: c.snapshot(now) for name, c in self.components.items()}

    def stop(self, timeout: float, also: Sequence[ChildProcess] = ()) -> dict[str, int | None]:
        """Stop every component (and `also`) within `timeout` seconds: SIGTERM, then SIGKILL."""
        with self._lock:
            self.stopping = True
            for component in self.components.values():
                component.state = "stopping"
                component.next_start = None
            children = [c.child for c in self.components.values() if c.child is not None]
        codes = stop_all([*children, *also], timeout)
        with self._lock:
            for component in self.components.values():
                component.child = None
                component.state = "stopped"
        return codes

    def _report_degraded(self, component: Component) -> None:
        what = component.spec.title or f"the {component.name}"
        reason = f" The last error: {component.last_error}" if component.last_error else ""
        self.repairs.report(
            degraded_problem_id(component.name),
            "error",
            f"{what.capitalize()} keeps stopping, so the box has paused it and tries again in "
            f"{self.policy.degraded_retry_seconds / 60:.0f} minutes.{reason}",
            "Look at the last error under Details. A port used by another program, or a"
            " setting that changed, are the usual causes; restart the box once it is fixed.",
            title=f"{what.capitalize()} keeps stopping",
        )


_GRANDCHILD_TITLES = {"proxy-writer": "the capture writer", "enhancer": "the photo enhancer"}


def degraded_problem_id(name: str) -> str:
    return f"child.degraded.{name}"


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _exit_words(code: int | None) -> str:
    if code is None:
        return "stopped"
    if code < 0:
        return f"was killed by signal {-code}"
    return f"exited with status {code}"
