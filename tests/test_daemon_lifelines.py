"""Heartbeats and hang detection with real child processes and an injected monotonic clock."""

from __future__ import annotations

import io
import os
import signal
import sys
import time

import pytest
from helpers import wait_until

from instaflyd import heartbeat
from instaflyd.daemon.children import ChildProcess
from instaflyd.daemon.event_writer import EventWriter
from instaflyd.daemon.lifelines import STARTUP_GRACE_SECONDS, Lifelines
from instaflyd.daemon.supervisor import ComponentSpec, RestartPolicy, Supervisor
from instaflyd.repairs import RepairsRegistry
from instaflyd.store import Database
from instaflyd.store.events import recent_events

BEATER = """
import sys, time
from instaflyd import heartbeat
print("started", flush=True)
while True:
    heartbeat.beat(sys.argv[1])
    time.sleep(0.05)
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.slow
def test_a_silent_child_is_overdue_once_and_a_new_one_heals_the_hang() -> None:
    registry = RepairsRegistry()
    clock = Clock()
    lifelines = Lifelines(registry, hang_seconds=10, clock=clock)
    assert lifelines.environment()[heartbeat.ENV] == f"{10 / 6:g}"
    child = ChildProcess(
        "proxy", [sys.executable, "-c", BEATER, "proxy"], listener=lifelines, relay_to=io.StringIO()
    )
    try:
        lifelines.expect("proxy", child.pid)
        clock.now += STARTUP_GRACE_SECONDS - 1
        assert lifelines.overdue() == []  # still within the start-up grace
        wait_until(lambda: lifelines.silence(child.pid) == 0, 10, "a beat")
        assert list(child.lines) == ["started"]  # beats are not log lines
        os.kill(child.pid, signal.SIGSTOP)
        time.sleep(0.3)  # the relay has read what was written before the stop
        clock.now += 10.5
        [silent] = lifelines.overdue()
        assert (silent.component, silent.name, silent.pid) == ("proxy", "proxy", child.pid)
        assert 10 < silent.silent_for < 11
        assert lifelines.overdue() == []  # named once
        registry.report("child.hung.proxy", "error", "The proxy hangs.", "Wait.")
        os.kill(child.pid, signal.SIGCONT)  # it answers again (the same process)
        wait_until(lambda: lifelines.silence(child.pid) == 0, 10, "a beat after SIGCONT")
        assert registry.get("child.hung.proxy") is not None  # only a new process heals it
    finally:
        child.kill()
        child.wait(5)
    clock.now += 20
    assert lifelines.overdue() == []  # it ended: nothing hangs
    fresh = ChildProcess(
        "proxy", [sys.executable, "-c", BEATER, "proxy"], listener=lifelines, relay_to=io.StringIO()
    )
    try:
        lifelines.expect("proxy", fresh.pid)
        wait_until(lambda: registry.get("child.hung.proxy") is None, 10, "the new proxy's beat")
    finally:
        fresh.kill()
        fresh.wait(5)


@pytest.mark.slow
def test_the_supervisor_kills_a_hung_component_restarts_it_and_says_it_hung(tmp_path) -> None:
    db = Database(tmp_path / "instafly.db")
    events = EventWriter(db.path).start()
    registry = RepairsRegistry()
    lifelines = Lifelines(registry, hang_seconds=1)
    spec = ComponentSpec(
        "worker", [sys.executable, "-c", BEATER, "worker"], heartbeat=True,
        title="the photo worker", hung_effect="new photos were not picked up",
    )  # fmt: skip
    supervisor = Supervisor(
        [spec], events, RestartPolicy(backoff_first=0.2), lifelines=lifelines, repairs=registry
    )
    supervisor.start()
    try:
        first = supervisor.snapshot()["worker"]
        wait_until(lambda: lifelines.silence(first.pid) is not None and lifelines.silence(
            first.pid) < 0.5 and supervisor.components["worker"].child.lines, 10, "a beat")  # fmt: skip
        os.kill(first.pid, signal.SIGSTOP)

        def hung_and_back() -> bool:
            supervisor.tick()
            for silent in lifelines.overdue():
                supervisor.hung(silent)
            now = supervisor.snapshot()["worker"]
            return now.pid not in (None, first.pid)

        wait_until(hung_and_back, 10, "the restart", interval=0.05)
        after = supervisor.snapshot()["worker"]
        assert after.restarts == 1
        assert after.last_error == f"stopped answering for {1:.0f} s (hung)"
        assert after.last_exit == -signal.SIGKILL
        problem = registry.get("child.hung.worker")
        assert problem is not None and problem.severity == "error"
        assert problem.sentence == (
            "The photo worker stopped answering for 1 seconds (new photos were not picked up);"
            " it is being restarted."
        )
        assert events.flush()
        [event] = recent_events(db.conn)
        assert (event.component, event.level, event.kind) == ("worker", "error", "hung")
        assert event.message == (
            "worker stopped answering for 1 s (hung), so it was killed; restarting in 0 s"
        )
        wait_until(lambda: registry.get("child.hung.worker") is None, 10, "the new one's beat")
    finally:
        supervisor.stop(5)
        events.stop()
        db.close()


INFO_THEN_KILLED = """
import logging, sys, time
from instaflyd.logs import setup_logging
setup_logging("info", "worker")
logging.getLogger("instafly.worker").info("worker started (pid 1): drop -> enhanced")
time.sleep(60)
"""


def test_a_killed_childs_last_error_is_not_its_last_info_line(tmp_path) -> None:
    db = Database(tmp_path / "instafly.db")
    events = EventWriter(db.path).start()
    spec = ComponentSpec("worker", [sys.executable, "-c", INFO_THEN_KILLED])
    supervisor = Supervisor([spec], events, RestartPolicy(backoff_first=0.2))
    supervisor.start()
    try:
        child = supervisor.components["worker"].child
        wait_until(
            lambda: any(" INFO instafly.worker: worker started" in line for line in child.lines),
            10,
            "the child's INFO line",
        )
        os.kill(child.pid, signal.SIGKILL)

        def restarted() -> bool:
            supervisor.tick()
            return supervisor.snapshot()["worker"].restarts == 1

        wait_until(restarted, 10, "the restart", interval=0.05)
        # An INFO line is never the reason it ended: killed, with nothing said.
        assert supervisor.snapshot()["worker"].last_error is None
        assert events.flush()
        [event] = recent_events(db.conn)
        assert event.message == "worker was killed by signal 9; restarting in 0 s"
    finally:
        supervisor.stop(5)
        events.stop()
        db.close()
