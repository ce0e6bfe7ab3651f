"""`daemon.handover`: which children a reload leaves running, section by section.

The real schedulers with a real child process each (a sleeping Python: the decision is under
test, not the child's work); the whole reload with the real trainer and weights fetch is in
test_daemon_reload_scheduled.py.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from instaflyd.config import Config, build_config
from instaflyd.daemon.backups import BackupScheduler
from instaflyd.daemon.children import ChildProcess
from instaflyd.daemon.event_writer import EventWriter
from instaflyd.daemon.handover import unchanged_for
from instaflyd.daemon.run import Daemon, component_specs
from instaflyd.daemon.scheduler import TrainingScheduler
from instaflyd.daemon.sdnotify import Notifier
from instaflyd.daemon.weights_fetch import WeightsFetcher

Scheduler = TrainingScheduler | WeightsFetcher | BackupScheduler


def config_with(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    return build_config(
        {"model": {"weights": "none"}, "backup": {"dir": str(tmp_path / "backups")}, **sections},
        data_dir=tmp_path / "data",
    )


@pytest.fixture
def child() -> Iterator[ChildProcess]:
    process = ChildProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait(5)


def schedulers(config: Config) -> dict[str, Scheduler]:
    events = EventWriter(config.db_path)  # never started: nothing here records an event
    return {
        "trainer": TrainingScheduler(config, None, events),
        "weights": WeightsFetcher(config),
        "backup": BackupScheduler(config, events),
    }


# What each reload changes, and which scheduled children it concerns.
RELOADS: list[tuple[dict[str, dict[str, Any]], set[str]]] = [
    ({"web": {"port": 9999}}, set()),
    ({"faults": {"hang_seconds": 99}}, set()),
    ({"watch": {"settle_seconds": 9}}, {"backup"}),  # it checks the room of watch's folders
    ({"train": {"epochs": 7}}, {"trainer"}),
    ({"model": {"weights_url": "http://192.0.2.1/w.h5"}}, {"trainer", "weights"}),
    ({"backup": {"keep": 3}}, {"backup"}),
    ({"log": {"level": "debug"}}, {"trainer", "weights", "backup"}),
]


@pytest.mark.parametrize(("change", "restarted"), RELOADS)
def test_a_reload_restarts_only_the_children_whose_sections_it_changes(
    tmp_path: Path, change: dict[str, dict[str, Any]], restarted: set[str]
) -> None:
    old = config_with(tmp_path)
    new = config_with(tmp_path, **change)
    changed = {name for name, s in schedulers(old).items() if not unchanged_for(s, new)}
    assert changed == restarted


def test_the_proxy_and_the_worker_read_no_training_and_no_fault_settings(tmp_path: Path) -> None:
    before = {s.name: s.settings for s in component_specs(config_with(tmp_path))}
    for change in ({"train": {"epochs": 7}}, {"faults": {"hang_seconds": 99}}):
        after = {s.name: s.settings for s in component_specs(config_with(tmp_path, **change))}
        assert after == before
    moved = config_with(tmp_path, proxy={"listen_port": 18080})
    assert {s.name: s.settings for s in component_specs(moved)}["worker"] == before["worker"]
    assert {s.name: s.settings for s in component_specs(moved)}["proxy"] != before["proxy"]


@pytest.mark.parametrize("name", ["trainer", "weights", "backup"])
def test_a_running_child_is_let_go_for_the_next_daemon_or_left_to_be_stopped(
    tmp_path: Path, name: str, child: ChildProcess
) -> None:
    old = config_with(tmp_path)
    scheduler = schedulers(old)[name]
    scheduler.child = child
    # Its own section changed: kept by this scheduler, which stops it with the rest.
    own = {"trainer": "train", "weights": "model", "backup": "backup"}[name]
    change = {
        "train": {"epochs": 7},
        "model": {"weights_url": "http://192.0.2.1/w.h5"},
        "backup": {"keep": 3},
    }[own]
    assert scheduler.release(config_with(tmp_path, **{own: change})) is None
    assert scheduler.child is child
    # Only the page changed: let go, and `stop()` leaves it alone.
    new = config_with(tmp_path, web={"port": 9999})
    assert scheduler.release(new) is child
    assert scheduler.child is None and scheduler.stop() is None
    assert child.poll() is None  # still running
    successor = schedulers(new)[name]
    successor.adopt(child)
    assert successor.child is child
    assert successor.stop() is child  # the new daemon stops it when its time comes


def test_an_adopted_backup_puts_the_next_one_an_interval_later(
    tmp_path: Path, child: ChildProcess
) -> None:
    backups = schedulers(config_with(tmp_path, backup={"interval_hours": 2}))["backup"]
    assert isinstance(backups, BackupScheduler)
    backups.adopt(child, now=1000.0)
    assert backups.next_due == 1000.0 + 2 * 3600  # not a second backup once this one ends


def test_a_child_that_has_ended_is_not_handed_over(tmp_path: Path) -> None:
    scheduler = schedulers(config_with(tmp_path))["weights"]
    ended = ChildProcess("quick", [sys.executable, "-c", "pass"])
    ended.wait(10)
    scheduler.child = ended
    assert scheduler.release(config_with(tmp_path, web={"port": 9999})) is None
    assert scheduler.child is ended  # its end is noted by the scheduler's next tick


@pytest.mark.parametrize(
    ("change", "forced", "kept", "train_again"),
    [
        ({"web": {"port": 9999}}, True, True, False),  # the page only: the run goes on
        ({"train": {"epochs": 7}}, True, False, True),  # "Train now" stopped: asked again
        ({"train": {"epochs": 7}}, False, False, False),  # a scheduled run: the policy decides
    ],
)
def test_the_daemon_hands_its_trainer_over_or_asks_for_a_stopped_train_now_again(
    tmp_path: Path,
    child: ChildProcess,
    change: dict[str, dict[str, Any]],
    forced: bool,
    kept: bool,
    train_again: bool,
) -> None:
    new = config_with(tmp_path, **change)
    daemon = Daemon(config_with(tmp_path), Notifier({}), load=lambda: new)
    try:
        daemon.scheduler.child, daemon.scheduler.forced = child, forced
        daemon.keep_for_reload()
        assert daemon.reloaded is new
        assert (daemon.kept.get("trainer") is child) == kept
        assert (daemon.scheduler.child is child) == (not kept)  # then stopped with the rest
        assert daemon.train_again == train_again
    finally:
        if daemon.db is not None:
            daemon.db.close()
