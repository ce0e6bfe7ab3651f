"""Captured responses the store could not take yet: held in order, bounded in bytes, retried.

When a response cannot be stored for a passing reason (`store.faults.transient_fault`: a full
disk, a read-only folder, a lock held too long), the writer keeps it here instead of dropping
it, and every response after it waits behind it, so that the store sees them in the order the
phones saw them. The writer retries the oldest after 1 s, 2 s, 4 s ... up to 10 s, and at once
when the folder shows room again (`store.faults.looks_writable`); once one is stored the rest
follow at once. The queue holds at most `max_bytes` (`proxy.store_retry_max_bytes`);
a response beyond that is lost and counted with the fault that kept the store shut.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from instaflyd.store.faults import Fault

FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 10.0

T = TypeVar("T")


@dataclass(frozen=True)
class Held(Generic[T]):
    item: T
    size: int


class RetryQueue(Generic[T]):
    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self._clock = clock
        self._held: deque[Held[T]] = deque()
        self.bytes = 0
        self.fault: Fault | None = None  # why the store refused the last write
        self.lost: Counter[str] = Counter()  # responses lost, by the fault at the time
        self.stored_after_waiting = 0
        self._delay = FIRST_RETRY_SECONDS
        self._next_try = 0.0

    def __len__(self) -> int:
        return len(self._held)

    def count(self, kind: type) -> int:
        """How many of the held items are a `kind` (the captured responses, say, beside the
        device sightings waiting with them)."""
        return sum(isinstance(held.item, kind) for held in self._held)

    def hold(self, item: T, size: int, fault: Fault) -> bool:
        """Keep `item` (after those already waiting); False, and counted as lost with `fault`,
        when the queue has no room left for it."""
        if not self._held:
            self._delay = FIRST_RETRY_SECONDS
            self._next_try = self._clock() + self._delay
        self.fault = fault
        if self.bytes + size > self.max_bytes:
            self.lost[fault] += 1
            return False
        self._held.append(Held(item, size))
        self.bytes += size
        return True

    def seconds_until_due(self) -> float:
        return max(0.0, self._next_try - self._clock()) if self._held else float("inf")

    def due(self) -> bool:
        return bool(self._held) and self._clock() >= self._next_try

    def oldest(self) -> T:
        return self._held[0].item

    def stored_oldest(self) -> None:
        """The oldest was stored: the next one may go at once."""
        held = self._held.popleft()
        self.bytes -= held.size
        self.stored_after_waiting += 1
        self._delay = FIRST_RETRY_SECONDS
        if not self._held:
            self.fault = None

    def dropped_oldest(self) -> None:
        """The oldest failed for good (not a passing fault): it leaves the queue."""
        held = self._held.popleft()
        self.bytes -= held.size
        if not self._held:
            self.fault = None

    def retry_now(self) -> None:
        self._next_try = self._clock()

    def failed_again(self, fault: Fault) -> None:
        """The store still refuses: wait twice as long before the next try (up to 10 s)."""
        self.fault = fault
        self._delay = min(self._delay * 2, MAX_RETRY_SECONDS)
        self._next_try = self._clock() + self._delay

    def give_up(self) -> int:
        """At shutdown: everything still held is lost (counted); returns how many."""
        count = len(self._held)
        if count:
            self.lost[self.fault or "io_error"] += count
        self._held.clear()
        self.bytes = 0
        return count
