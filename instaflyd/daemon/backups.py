"""The daily backup: `instaflyd backup --scheduled` as a child process at the lowest priority.

Every `backup.interval_hours` (on the monotonic clock, so a clock step neither skips nor
repeats one) the daemon starts one backup child at CPU niceness 19; the child copies the
database with SQLite's online backup API (the proxy and the writer go on), writes the file into
`backup.dir` and removes the oldest beyond `backup.keep` (`instaflyd.backup.rotation`). After a
restart of the daemon the first backup is due when the newest one in the folder is
`interval_hours` old, but not before `FIRST_DELAY_SECONDS`, so that a start-up is not slowed
down. A failed backup (a full disk, a missing USB drive) is recorded as an event, which the page
shows, and a problem in the repairs list until a backup succeeds; it is tried again after an
hour.
"""

from __future__ import annotations

import logging
import time
from typing import ClassVar

from instaflyd.backup import list_backups
from instaflyd.config import Config
from instaflyd.daemon.children import ChildProcess, instaflyd_argv
from instaflyd.daemon.event_writer import EventSink
from instaflyd.daemon.handover import BACKUP_IGNORES, release_if_unchanged
from instaflyd.repairs import RepairsRegistry

log = logging.getLogger("instafly.daemon")

BACKUP_NICE = 19
PROBLEM_ID = "backup_failed"
FIRST_DELAY_SECONDS = 600.0
RETRY_SECONDS = 3600.0


class BackupScheduler:
    """Starts the daily backup child when it is due; one at a time."""

    COMMAND: ClassVar[tuple[str, ...]] = ("backup", "--scheduled")
    IGNORES: ClassVar[frozenset[str]] = BACKUP_IGNORES

    def __init__(
        self,
        config: Config,
        events: EventSink,
        repairs: RepairsRegistry | None = None,
        first_delay: float = FIRST_DELAY_SECONDS,
    ) -> None:
        self.config = config
        self.events = events
        self.repairs = repairs
        self.interval = config.backup.interval_hours * 3600
        self.first_delay = first_delay
        self.child: ChildProcess | None = None
        self.next_due: float | None = None  # monotonic; None until the first tick
        self.made = 0
        self.failures = 0
        self.stopped = False

    def argv(self) -> list[str]:
        return instaflyd_argv(self.config, *self.COMMAND)

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self.stopped:
            return
        if self.next_due is None:
            self.next_due = now + self._first_wait()
        if self.child is not None:
            code = self.child.poll()
            if code is None:
                return
            self._finished(code, now)
        if now < self.next_due:
            return
        self.next_due = now + self.interval
        self.child = ChildProcess("backup", self.argv(), nice=BACKUP_NICE)
        log.info("daily backup started (pid %d) into %s", self.child.pid, self.config.backup.dir)

    def _first_wait(self) -> float:
        """Until the newest backup in the folder is an interval old (wall clock, read once)."""
        backups = list_backups(self.config)
        if not backups:
            return self.first_delay
        age = max(0.0, time.time() - backups[0].manifest.created)
        return max(self.first_delay, self.interval - age)

    def _finished(self, code: int, now: float) -> None:
        assert self.child is not None
        last = self.child.last_line()
        self.child = None
        if code == 0:
            self.made += 1
            self.failures = 0
            log.info("daily backup done: %s", last or "")
            if self.repairs is not None:
                self.repairs.resolve(PROBLEM_ID)
            return
        self.failures += 1
        self.next_due = now + min(RETRY_SECONDS, self.interval)
        message = (
            f"the daily backup failed: {last or f'exit status {code}'}; "
            f"next try in {min(RETRY_SECONDS, self.interval) / 60:.0f} minutes"
        )
        log.error("%s", message)
        self.events.record("backup", "error", "backup_failed", message)
        if self.repairs is not None:
            reason = (last or f"exit status {code}").removeprefix("instaflyd: ")
            self.repairs.report(
                PROBLEM_ID,
                "warning",
                f"The daily backup failed: {reason}.",
                f"Check that {self.config.backup.dir} is there and has room (backup.dir in the"
                " config); the box tries again every hour.",
                title="Backup failed",
                source="backup",
            )

    def release(self, new: Config) -> ChildProcess | None:
        """A reload to `new`: the running backup, let go for the next daemon if `new` changes
        nothing it reads; None if it is to be stopped."""
        return release_if_unchanged(self, new)

    def adopt(self, child: ChildProcess, now: float | None = None) -> None:
        """Take over the backup an earlier daemon let go of (a reload): the next is due an
        interval from now, as if this one had just started here."""
        self.child = child
        self.next_due = (time.monotonic() if now is None else now) + self.interval
        log.info("the daily backup kept running (pid %d): its settings did not change", child.pid)

    def stop(self) -> ChildProcess | None:
        """Start no more backups; returns a running one for the caller to stop with the rest."""
        self.stopped = True
        child, self.child = self.child, None
        return child
