"""The capture counters as one record: what one response added, and what crosses the pipe.

`Ingester.ingest` returns the counts of one response; the proxy's side of the writer ships its
own counts (flows seen, dropped, refused) through the pipe as one record a second; the writer
process adds them up and writes them to the store's `counters` table. A counter is a field here,
so a misspelt name fails where it is written, not on the page that reads it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class CaptureCounts:
    """Increments of the capture counters (the names are the `counters` table's)."""

    flows: int = 0  # Instagram flows the addon handed on
    flows_unverified: int = 0  # ... whose client did not verify the certificate
    flows_dropped: int = 0  # ... that the writer's backlog could not take
    connections_refused: int = 0  # over the per-client or the total connection limit
    connections_evicted: int = 0  # idle ones of the biggest holder, closed for a newcomer
    connections_to_the_box: int = 0  # server connections refused: they named the box itself
    certificates_refused: int = 0  # new names past the budget, passed through undecrypted
    instagram_json: int = 0  # documents parsed
    formats_not_understood: int = 0  # documents whose shape no parser knew
    posts_new: int = 0
    posts_updated: int = 0
    images_stored: int = 0
    images_rejected: int = 0  # error pages, partial content, not an image
    images_unmatched: int = 0  # images no post claimed before they expired
    responses_too_large: int = 0
    responses_over_memory_budget: int = 0  # passed through uncaptured: the body budget was spent
    parse_errors: int = 0
    store_errors: int = 0
    captures_lost_writer: int = 0  # held in memory by a writer process that died (or hung)

    @classmethod
    def of(cls, counts: Mapping[str, int]) -> CaptureCounts:
        """The record of a tally by name; ValueError for a name that is not a counter."""
        unknown = set(counts) - NAMES
        if unknown:
            raise ValueError(f"not capture counters: {', '.join(sorted(unknown))}")
        return cls(**counts)

    def __add__(self, other: CaptureCounts) -> CaptureCounts:
        return CaptureCounts(**{name: getattr(self, name) + getattr(other, name) for name in NAMES})

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in NAMES)

    def nonzero(self) -> Iterator[tuple[str, int]]:
        """The counters that changed, with their increments."""
        for name in ORDER:
            if amount := getattr(self, name):
                yield name, amount


ORDER = tuple(f.name for f in fields(CaptureCounts))
NAMES = frozenset(ORDER)
