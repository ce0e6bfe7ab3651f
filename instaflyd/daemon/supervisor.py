"""The supervisor: keeps the proxy and the worker running, restarting them with backoff.

A component that exits is started again after a delay that doubles with each quick crash
(1 s, 2 s, 4 s, ... up to 30 s). More than `max_restarts` restarts within a minute means
something is persistently wrong (a port in use, a broken file): the component is then shown
"degraded" and tried again only after `degraded_retry_seconds`, instead of burning the CPU in a
crash loop. Every crash is written to the event log so the status page can say why.

The supervisor's `tick()` runs on the daemon's main thread; the status page reads `snapshot()`
from waitress's threads, so the state is guarded by a lock.
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from instaflyd.daemon.children import ChildProcess, stop_all
from instaflyd.status.document import ComponentStatus
from instaflyd.store import Database
from instaflyd.store.events import record_event

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
        self.backoff = policy.backoff_first
        self.last_exit: int | None = None
        self.last_exit_at: float | None = None
        self.last_error: str | None = None
        self._started_monotonic = 0.0

    @property
    def name(self) -> str:
        return self.spec.name

    def start(self, now: float) -> None:
        self.child = ChildProcess(self.name, self.spec.argv)
        self._started_monotonic = now
        self.next_start = None
        self.state = "starting" if self.spec.ready_check else "running"
        log.info("%s started (pid %d)", self.name, self.child.pid)

    def check_ready(self) -> None:
        if self.state == "starting" and self.spec.ready_check and self.spec.ready_check():
            self.state = "running"
            log.info("%s is up", self.name)

    def exited(self, now: float, wall: float) -> str:
        """Record the child's exit and schedule its restart; returns a sentence for the log."""
        assert self.child is not None
        self.last_exit = self.child.poll()
        self.last_exit_at = wall
        self.last_error = self.child.last_line()
        self.child = None
        if now - self._started_monotonic >= self.policy.stable_after_seconds:
            self.backoff = self.policy.backoff_first
        while self.recent_restarts and now - self.recent_restarts[0] > self.policy.window_seconds:
            self.recent_restarts.popleft()
        how = _exit_words(self.last_exit) + (f" ({self.last_error})" if self.last_error else "")
        if len(self.recent_restarts) >= self.policy.max_restarts:
            self.state = "degraded"
            self.next_start = now + self.policy.degraded_retry_seconds
            self.recent_restarts.clear()
            self.backoff = self.policy.backoff_first
            return (
                f"{self.name} {how}; it was restarted {self.policy.max_restarts} times within "
                f"{self.policy.window_seconds:.0f} s, so it is degraded and will be tried again in "
                f"{self.policy.degraded_retry_seconds:.0f} s"
            )
        self.state = "backoff"
        self.next_start = now + self.backoff
        delay = self.backoff
        self.backoff = min(self.backoff * 2, self.policy.backoff_max)
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
        db: Database,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self.components = {spec.name: Component(spec, self.policy) for spec in specs}
        self.db = db
        self.stopping = False
        self._lock = threading.Lock()

    def start(self) -> None:
        now = time.monotonic()
        with self._lock:
            for component in self.components.values():
                component.start(now)

    def tick(self) -> None:
        """Notice exits, restart what is due, mark what came up. Call a few times a second."""
        now, wall = time.monotonic(), time.time()
        with self._lock:
            if self.stopping:
                return
            for component in self.components.values():
                if component.child is not None and component.child.poll() is not None:
                    message = component.exited(now, wall)
                    degraded = component.state == "degraded"
                    log.log(logging.ERROR if degraded else logging.WARNING, "%s", message)
                    self._event(component.name, "error" if degraded else "warning", message)
                elif component.restart_due(now):
                    component.restarts += 1
                    component.recent_restarts.append(now)
                    component.start(now)
                component.check_ready()

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

    def _event(self, component: str, level: Literal["warning", "error"], message: str) -> None:
        record_event(self.db, component, level, "exited", message)


def _exit_words(code: int | None) -> str:
    if code is None:
        return "stopped"
    if code < 0:
        return f"was killed by signal {-code}"
    return f"exited with status {code}"
