"""The supervisor and the training scheduler with real child processes (small Python programs)."""

from __future__ import annotations

import io
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
from helpers import free_port, wait_until
from support_daemon import seed_store

from instaflyd.config import build_config
from instaflyd.daemon.children import ChildProcess, instaflyd_argv, stop_all
from instaflyd.daemon.event_writer import EventWriter
from instaflyd.daemon.scheduler import TrainingScheduler
from instaflyd.daemon.supervisor import ComponentSpec, RestartPolicy, Supervisor, tcp_listening
from instaflyd.store import Database
from instaflyd.store.events import recent_events

QUICK = RestartPolicy(
    max_restarts=3,
    window_seconds=60,
    backoff_first=0.2,
    backoff_max=1,
    degraded_retry_seconds=1.5,
)
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(tmp_path / "instafly.db")
    yield database
    database.close()


@pytest.fixture
def events(db: Database) -> EventWriter:
    writer = EventWriter(db.path).start()
    yield writer
    writer.stop()


def tick_until(supervisor: Supervisor, condition, timeout: float, what: str) -> None:
    def ticked() -> bool:
        supervisor.tick()
        return condition()

    wait_until(ticked, timeout, what, interval=0.05)


def test_a_killed_child_is_restarted_with_backoff_and_logged(
    db: Database, events: EventWriter
) -> None:
    supervisor = Supervisor([ComponentSpec("sleeper", SLEEPER)], events, QUICK)
    supervisor.start()
    try:
        first = supervisor.snapshot()["sleeper"]
        assert (first.state, first.restarts) == ("running", 0)
        os.kill(first.pid, signal.SIGKILL)
        tick_until(supervisor, lambda: supervisor.snapshot()["sleeper"].restarts == 1, 5, "restart")
        after = supervisor.snapshot()["sleeper"]
        assert after.state == "running"
        assert after.pid != first.pid
        assert after.last_exit == -signal.SIGKILL
        assert events.flush()
        [event] = recent_events(db.conn)
        assert (event.component, event.level) == ("sleeper", "warning")
        assert event.message == "sleeper was killed by signal 9; restarting in 0 s"
    finally:
        supervisor.stop(5)
    assert supervisor.snapshot()["sleeper"].state == "stopped"


@pytest.mark.slow
def test_a_crash_loop_becomes_degraded_then_is_retried_later(
    db: Database, events: EventWriter
) -> None:
    crash = python("import sys; print('boom: port in use', file=sys.stderr); sys.exit(3)")
    supervisor = Supervisor([ComponentSpec("crasher", crash)], events, QUICK)
    supervisor.start()
    started = time.monotonic()
    tick_until(
        supervisor, lambda: supervisor.snapshot()["crasher"].state == "degraded", 15, "degraded"
    )
    crasher = supervisor.snapshot()["crasher"]
    # 3 restarts (0.2 s, 0.4 s, 0.8 s apart) were allowed, the 4th exit made it degraded.
    assert crasher.restarts == QUICK.max_restarts
    assert (crasher.last_exit, crasher.last_error) == (3, "boom: port in use")
    assert time.monotonic() - started < 10
    assert events.flush()
    recorded = recent_events(db.conn)
    assert recorded[0].level == "error"
    assert "degraded and will be tried again in 2 s" in recorded[0].message
    assert "exited with status 3 (boom: port in use)" in recorded[0].message
    # Degraded means waiting, not spinning: no restart before degraded_retry_seconds.
    for _ in range(10):
        supervisor.tick()
        time.sleep(0.05)
    assert supervisor.snapshot()["crasher"].restarts == QUICK.max_restarts
    tick_until(
        supervisor,
        lambda: supervisor.snapshot()["crasher"].restarts == QUICK.max_restarts + 1,
        5,
        "the retry after degraded",
    )
    supervisor.stop(2)


@pytest.mark.slow
def test_stop_ends_children_in_time_killing_those_that_ignore_sigterm(
    events: EventWriter,
) -> None:
    stubborn = python(
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " print('ready', flush=True); time.sleep(60)"
    )
    supervisor = Supervisor(
        [ComponentSpec("polite", SLEEPER), ComponentSpec("stubborn", stubborn)], events, QUICK
    )
    supervisor.start()
    pids = {name: c.pid for name, c in supervisor.snapshot().items()}
    stubborn_child = supervisor.components["stubborn"].child
    assert stubborn_child is not None
    wait_until(lambda: "ready" in stubborn_child.lines, 10, "the stubborn one's SIGTERM handler")
    started = time.monotonic()
    codes = supervisor.stop(timeout=2)
    took = time.monotonic() - started
    assert codes == {"polite": -signal.SIGTERM, "stubborn": -signal.SIGKILL}
    assert 1.9 < took < 4
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_child_output_is_relayed_with_its_name_and_kept() -> None:
    out = io.StringIO()
    child = ChildProcess(
        "proxy", python("import sys; print('hello'); print('oops', file=sys.stderr)"), relay_to=out
    )
    assert child.wait(10) == 0
    assert child.last_line() == "oops"
    assert sorted(out.getvalue().splitlines()) == ["proxy | hello", "proxy | oops"]


TENSORFLOW_WITH_A_REAL_WARNING = """
import logging, os, sys, warnings
import tensorflow as tf
tf.constant(1.0) + 1  # the first op: oneDNN and cuInit speak up here
sys.stderr.flush()
os.write(2, b"W0000 00:00:1796138348.994140   13344 op_kernel.cc:1857] OP_REQUIRES failed\\n")
warnings.warn("a real Python warning", UserWarning)
logging.basicConfig(format="%(levelname)s %(message)s")
logging.getLogger("instafly.worker").error("a real error")
"""


@pytest.mark.slow  # imports TensorFlow
def test_tensorflows_start_up_noise_is_dropped_and_real_warnings_are_relayed() -> None:
    out = io.StringIO()
    child = ChildProcess("trainer", python(TENSORFLOW_WITH_A_REAL_WARNING), relay_to=out)
    assert child.wait(120) == 0, out.getvalue()
    child.last_line()  # the relay has read everything
    relayed = out.getvalue()
    for noise in ("cuInit", "oneDNN", "cuda drivers", "absl::InitializeLog", "AVX"):
        assert noise not in relayed, relayed
    assert "trainer | W0000 00:00:1796138348.994140   13344 op_kernel.cc:1857] OP_REQUIRES" in (
        relayed
    )
    assert "UserWarning: a real Python warning" in relayed
    assert "trainer | ERROR a real error" in relayed


@pytest.mark.slow
def test_a_component_with_a_ready_check_is_starting_until_it_listens(
    events: EventWriter,
) -> None:
    port = free_port()
    listen_later = python(
        "import socket, time; time.sleep(1); s = socket.socket();"
        f" s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(60)"
    )
    spec = ComponentSpec("proxy", listen_later, tcp_listening("0.0.0.0", port))
    supervisor = Supervisor([spec], events, QUICK)
    supervisor.start()
    supervisor.tick()
    assert supervisor.snapshot()["proxy"].state == "starting"
    assert not supervisor.is_up("proxy")
    tick_until(supervisor, lambda: supervisor.is_up("proxy"), 10, "the listener")
    assert supervisor.snapshot()["proxy"].state == "running"
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    supervisor.stop(2)


def test_components_get_the_daemons_config_and_data_dir(tmp_path: Path) -> None:
    config = build_config({}, data_dir=tmp_path / "data")
    argv = instaflyd_argv(config, "train", "--scheduled")
    assert argv == [
        sys.executable, "-m", "instaflyd", "--data-dir", str(tmp_path / "data"),
        "train", "--scheduled",
    ]  # fmt: skip


class SleepingTrainer(TrainingScheduler):
    """The real scheduler; its child sleeps instead of training (the decisions are under test)."""

    def argv(self, forced: bool) -> list[str]:
        return python(f"import time; print('forced={forced}', flush=True); time.sleep(60)")


def test_train_now_asked_while_the_store_is_shut_starts_once_it_opens(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = build_config(
        {"model": {"weights": "none"}, "train": {"check_interval_seconds": 3600}}, data_dir=data
    )
    seed_store(data, posts=4, owners=2)
    events = EventWriter(config.db_path).start()
    scheduler = SleepingTrainer(config, None, events)  # the daemon has not opened the store yet
    try:
        assert scheduler.request() == (True, "training starts as soon as the database opens")
        for now in (100.0, 101.0, 102.0):
            scheduler.tick(now=now)
            assert scheduler.child is None
            assert scheduler.last_reason == "waiting for the database to open"
        scheduler.db = Database(config.db_path)  # what the daemon does once it opens
        scheduler.tick(now=103.0)  # not a scheduled check (the next is an hour away): the request
        assert scheduler.child is not None
        wait_until(lambda: scheduler.child.lines, 10, "the trainer's output")
        assert list(scheduler.child.lines) == ["forced=True"]
    finally:
        leftover = scheduler.stop()
        if leftover:
            stop_all([leftover], 2)
        events.stop()
        if scheduler.db is not None:
            scheduler.db.close()


def test_scheduler_starts_one_trainer_when_due_and_a_niced_one_on_request(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = build_config(
        {
            "model": {"weights": "none"},
            "train": {
                "min_labelled_posts": 6,
                "min_owners": 2,
                "check_interval_seconds": 1,
                "nice": 7,
            },
        },
        data_dir=data,
    )
    seed_store(data, posts=4, owners=2)
    db = Database(config.db_path)
    events = EventWriter(config.db_path).start()
    scheduler = SleepingTrainer(config, db, events)
    try:
        scheduler.tick(now=100.0)
        assert scheduler.child is None
        assert scheduler.last_reason == "waiting for 2 more labelled posts (4 so far)"
        seed_store(data, posts=2, owners=2, start=4)
        scheduler.tick(now=100.5)  # the next check is due at 101
        assert scheduler.child is None
        scheduler.tick(now=101.0)
        child = scheduler.child
        assert child is not None
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == 7  # the scheduler nices every run
        assert scheduler.last_reason == "training is due: 6 new labelled posts"
        for now in (102.0, 103.0, 104.0):
            scheduler.tick(now=now)
            assert scheduler.child is child  # one at a time
        assert scheduler.request() == (False, f"training is already running (pid {child.pid})")
        assert scheduler.snapshot().state == "running"

        wait_until(lambda: child.lines, 10, "the trainer's output")
        child.kill()
        child.wait(5)
        scheduler.tick(now=105.0)
        assert scheduler.child is None
        snapshot = scheduler.snapshot()
        assert (snapshot.failures, snapshot.last_exit) == (1, -signal.SIGKILL)
        assert events.flush()
        [event] = recent_events(db.conn)
        assert event.kind == "training_failed"
        assert event.message == ("training failed (exit status -9): forced=False; next try in 1 s")
        # "Train now" starts a forced run at once, whatever the schedule says.
        assert scheduler.request() == (True, "training starts now")
        scheduler.tick(now=105.1)
        assert scheduler.child is not None
        assert os.getpriority(os.PRIO_PROCESS, scheduler.child.pid) == 7
        wait_until(lambda: scheduler.child.lines, 10, "the trainer's output")
        assert list(scheduler.child.lines) == ["forced=True"]
    finally:
        leftover = scheduler.stop()
        if leftover:
            stop_all([leftover], 2)
        events.stop()
        db.close()
    assert scheduler.request() == (False, "the daemon is stopping")
