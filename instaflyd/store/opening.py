"""Opening the store while a passing fault keeps it shut: the one way to wait for it.

The daemon, the worker and the status snapshots may start on a data folder that is full,
read-only or held by another program. None of them exits into a restart loop: each tries the
store again until it opens. `StoreOpening` is that wait, written once: one try at a time for a
loop that must not block (the daemon's), or `wait()` until it opens for a thread or process
with nothing else to do yet, ended at once by a stop event. Tries come every `every` seconds,
doubling up to `at_most` (the same interval throughout unless told). Why the store is still
shut is a typed record (`StoreShut`), handed to the caller's `waiting` hook after each failed
try (to log it once, to say it on the page); `opened` is told once, with the last reason, when
it opens after a wait. A failure that retrying cannot fix (a damaged file, a schema newer than
the code) raises at once, as it did before the wait existed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from instaflyd.store.database import StoreError
from instaflyd.store.faults import FAULT_ACTION, FAULT_TEXT, Fault, transient_fault

T = TypeVar("T")


@dataclass(frozen=True)
class StoreShut:
    """Why the store has not opened yet, as of the latest try."""

    fault: Fault
    error: str  # what SQLite or the operating system said, on one line
    since: float  # monotonic: the first failed try of this wait
    tries: int  # failed tries in a row, this one included
    exception: StoreError = field(compare=False, repr=False)  # the latest, for a traceback

    @property
    def text(self) -> str:
        """The cause in a household's words ("the data folder's disk is full")."""
        return FAULT_TEXT[self.fault]

    @property
    def what_to_do(self) -> str:
        return FAULT_ACTION[self.fault]


class StoreOpening(Generic[T]):
    """Tries `opener` until it returns; see the module docstring."""

    def __init__(
        self,
        opener: Callable[[], T],
        *,
        every: float = 2.0,
        at_most: float | None = None,
        waiting: Callable[[StoreShut], object] | None = None,
        opened: Callable[[StoreShut], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.opener = opener
        self.every = every
        self.at_most = max(every, at_most if at_most is not None else every)
        self.waiting = waiting
        self.opened = opened
        self.clock = clock
        self.shut: StoreShut | None = None  # while waiting: why
        self.next_try = 0.0  # monotonic: when `due` says yes again
        self._delay = every

    def due(self, now: float | None = None) -> bool:
        """Whether the next try is due (for a caller that tries from its own loop)."""
        return (self.clock() if now is None else now) >= self.next_try

    def try_open(self) -> T | None:
        """One try: what `opener` returned, or None while a passing fault keeps the store shut
        (`shut` says why; the next try is due after the back-off). Any other error raises."""
        now = self.clock()
        try:
            opened = self.opener()
        except StoreError as exc:
            fault = exc.fault or transient_fault(exc)
            if fault is None:
                raise
            before = self.shut
            self._delay = self.every if before is None else min(self._delay * 2, self.at_most)
            self.next_try = now + self._delay
            self.shut = StoreShut(
                fault=fault,
                error=" ".join(str(exc).split())[:500],
                since=now if before is None else before.since,
                tries=1 if before is None else before.tries + 1,
                exception=exc,
            )
            if self.waiting is not None:
                self.waiting(self.shut)
            return None
        was, self.shut = self.shut, None
        self._delay = self.every
        self.next_try = now
        if was is not None and self.opened is not None:
            self.opened(was)
        return opened

    def wait(self, stop: threading.Event) -> T | None:
        """Try until the store opens; None as soon as `stop` is set (before or meanwhile)."""
        while not stop.is_set():
            opened = self.try_open()
            if opened is not None:
                return opened
            stop.wait(max(0.0, self.next_try - self.clock()))
        return None

    def error(self) -> StoreError:
        """What a request that needs the store meets while it is shut."""
        shut = self.shut
        if shut is None:
            return StoreError("the database has not been opened yet")
        return StoreError(f"the database cannot be opened: {shut.error}", shut.fault)
