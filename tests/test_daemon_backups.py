"""The daemon's daily backup: a real `instaflyd backup --scheduled` child at the lowest priority,
due by the monotonic clock, the first one timed from the newest backup in the folder; a failure
is an event and a retry an hour later, never a crash of the loop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import wait_until, write_config
from support_daemon import seed_store

from instaflyd.backup import list_backups, scheduled_backup
from instaflyd.config import load_config
from instaflyd.daemon.backups import PROBLEM_ID, RETRY_SECONDS, BackupScheduler
from instaflyd.repairs import RepairsRegistry

HOUR = 3600.0


def _config(tmp_path: Path, backup_dir: Path):
    source = write_config(
        tmp_path / "instafly.yaml",
        {
            "data_dir": str(tmp_path / "data"),
            "watch": {"drop_dir": "drop", "output_dir": "out"},
            "backup": {"dir": str(backup_dir), "interval_hours": 24, "keep": 2},
        },
    )
    return load_config(source)


class Events:
    """The daemon's event sink, as a list."""

    def __init__(self) -> None:
        self.recorded: list[tuple[str, str, str, str]] = []

    def record(self, component: str, level: str, kind: str, message: str) -> None:
        self.recorded.append((component, level, kind, message))


def _finish(scheduler: BackupScheduler, now: float) -> None:
    child = scheduler.child
    assert child is not None
    wait_until(lambda: child.poll() is not None, 240, "the backup child to end")
    scheduler.tick(now)


def test_the_daily_backup_runs_as_a_low_priority_child_when_due(tmp_path: Path) -> None:
    config = _config(tmp_path, tmp_path / "usb")
    seed_store(config.data_dir, posts=5)
    events = Events()
    scheduler = BackupScheduler(config, events, RepairsRegistry(), first_delay=60)
    scheduler.tick(1000.0)
    assert scheduler.child is None and scheduler.next_due == 1060.0  # no backup yet: soon
    scheduler.tick(1060.0)
    child = scheduler.child
    assert child is not None and "--scheduled" in child.argv
    assert os.getpriority(os.PRIO_PROCESS, child.pid) == 19
    _finish(scheduler, 1070.0)
    assert (scheduler.made, scheduler.failures, scheduler.next_due) == (1, 0, 1060 + 24 * HOUR)
    [made] = list_backups(config)
    assert made.manifest.counts.posts == 5

    # A restarted daemon waits until the newest backup is a day old.
    again = BackupScheduler(config, events, first_delay=60)
    again.tick(5.0)
    assert again.next_due is not None and 24 * HOUR - 120 < again.next_due - 5 <= 24 * HOUR


@pytest.mark.slow
def test_a_failed_backup_is_an_event_and_a_problem_until_one_succeeds(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the backup folder should be")
    config = _config(tmp_path, blocked)
    seed_store(config.data_dir, posts=3)
    events, repairs = Events(), RepairsRegistry()
    scheduler = BackupScheduler(config, events, repairs, first_delay=0)
    scheduler.tick(50.0)
    _finish(scheduler, 60.0)
    assert (scheduler.made, scheduler.failures) == (0, 1)
    assert scheduler.next_due == 60 + RETRY_SECONDS
    [(component, level, kind, message)] = events.recorded
    assert (component, level, kind) == ("backup", "error", "backup_failed")
    assert f"cannot create the backup folder {blocked}" in message
    assert "next try in 60 minutes" in message
    [problem] = repairs.problems()
    assert (problem.id, problem.severity) == (PROBLEM_ID, "warning")
    assert problem.sentence.startswith(
        f"The daily backup failed: cannot create the backup folder {blocked}"
    )
    assert f"Check that {blocked} is there" in problem.action

    # The folder is back: the next backup succeeds and the problem is gone.
    blocked.unlink()
    scheduler.tick(60 + RETRY_SECONDS)
    _finish(scheduler, 61 + RETRY_SECONDS)
    assert (scheduler.made, repairs.problems()) == (1, [])


def test_a_backup_killed_midway_leaves_no_file_that_counts(tmp_path: Path) -> None:
    config = _config(tmp_path, tmp_path / "usb")
    seed_store(config.data_dir, posts=3)
    leftover = config.backup.dir / ".tmp-instafly-backup-x.tar"
    config.backup.dir.mkdir()
    leftover.write_bytes(b"half")
    os.utime(leftover, (1, 1))  # from a backup killed long ago
    scheduled_backup(config)
    assert not leftover.exists()
    assert len(list_backups(config)) == 1
