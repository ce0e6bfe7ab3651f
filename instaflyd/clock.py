"""Wall-clock time that a step of the system clock cannot push forward, for deciding what to delete.

A box without a real-time clock boots with a wrong date, and NTP, a person or a bad GPS can
step the clock at any time. What people read (an event's time, a chart's axis) follows the
wall clock; what decides that something is old enough to delete must not: a step forward of a
month would otherwise make the whole event log "older than 30 days". `SteadyClock.now()` is the
wall clock at the start advanced by the monotonic clock, or the wall clock when that is
earlier (after a step back it follows the wall clock from there), so a step forward never
makes anything look older than it is; after a restart it starts from the wall clock again.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SteadyClock:
    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._anchor_wall = wall()
        self._anchor_monotonic = monotonic()

    def now(self) -> float:
        wall = self._wall()
        steady = self._anchor_wall + (self._monotonic() - self._anchor_monotonic)
        if wall < steady:  # the clock stepped back (or never ran ahead): follow it from here
            self._anchor_wall, self._anchor_monotonic = wall, self._monotonic()
            return wall
        return steady

    def monotonic(self) -> float:
        """The monotonic clock it advances by: for intervals ("due in an hour"), which a step
        of the wall clock, back or forward, must not move."""
        return self._monotonic()

    def step(self) -> float:
        """How far the wall clock runs ahead of the steady time now (0 without a step)."""
        return max(0.0, self._wall() - self.now())
