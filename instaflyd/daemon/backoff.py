"""The wait before trying a failed child again: doubling with each failure in a row, capped.

One rule for the supervisor's restarts, the training scheduler's failed runs and the weights
fetch: the first failure waits `first`, each further one twice as long, never more than `most`;
a success (or a run long enough to count as healthy) starts over.
"""

from __future__ import annotations


class Backoff:
    """Failures in a row and the wait they call for."""

    def __init__(self, first: float, most: float) -> None:
        if not 0 < first <= most:
            raise ValueError(f"a backoff needs 0 < first <= most, not {first} and {most}")
        self.first = first
        self.most = most
        self.failures = 0  # in a row, since the last success

    @property
    def wait(self) -> float:
        """The wait the next failure calls for."""
        return min(self.first * 2**self.failures, self.most)

    def failed(self) -> float:
        """Count a failure; returns how long to wait before the next try."""
        wait = self.wait
        self.failures += 1
        return wait

    def succeeded(self) -> None:
        self.failures = 0
