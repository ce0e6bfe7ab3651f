"""What the daemon tidies on a schedule, so that the store stays small over years: events older
than `log.events_retention_days` are deleted once an hour (and at the first tick).

"Older" is measured on a `SteadyClock`, which a step of the system clock cannot push forward,
and the newest events are never pruned by age (`store.events.KEEP_NEWEST`): a clock stepped a
month ahead must not delete the event log as "older than 30 days". When the next prune is due
is measured on the monotonic clock, so a step back of a month does not put it off a month.
"""

from __future__ import annotations

import logging

from instaflyd.clock import SteadyClock
from instaflyd.config import Config
from instaflyd.store import Database
from instaflyd.store.events import KEEP_NEWEST, prune_events

log = logging.getLogger("instafly.daemon")

PRUNE_EVERY_SECONDS = 3600.0
DAY = 86_400.0


class Housekeeping:
    """Called from the daemon's loop; does its work when it is due."""

    def __init__(
        self,
        config: Config,
        db: Database,
        clock: SteadyClock | None = None,
        keep_newest: int = KEEP_NEWEST,
    ) -> None:
        self.retention_seconds = config.log.events_retention_days * DAY
        self.db = db
        self.keep_newest = keep_newest
        self.clock = clock or SteadyClock()
        self.next_prune: float | None = None  # monotonic (or a test's `now`); None: at once
        self.pruned = 0  # events deleted since the daemon started

    def tick(self, now: float | None = None) -> int:
        """Prune the event log if it is due; returns the events deleted now. A test may pass
        `now`, which then serves both as the time of day and to say when the next prune is due."""
        due = self.clock.monotonic() if now is None else now
        if self.next_prune is not None and due < self.next_prune:
            return 0
        self.next_prune = due + PRUNE_EVERY_SECONDS
        now = self.clock.now() if now is None else now
        deleted = prune_events(self.db, now - self.retention_seconds, self.keep_newest)
        if deleted:
            self.pruned += deleted
            log.info(
                "deleted %d events older than %.0f days", deleted, self.retention_seconds / DAY
            )
        return deleted
