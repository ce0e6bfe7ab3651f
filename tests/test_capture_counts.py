"""The capture counters as one record: a misspelt name fails where it is counted, sums add up,
and only the counters that changed are written."""

from __future__ import annotations

import pickle

import pytest

from instaflyd.capture.counts import CaptureCounts


def test_a_tally_becomes_the_record_and_adds_up() -> None:
    first = CaptureCounts.of({"flows": 3, "posts_new": 2})
    second = CaptureCounts(flows=1, images_stored=4)
    total = first + second
    assert (total.flows, total.posts_new, total.images_stored, total.store_errors) == (4, 2, 4, 0)
    assert list(total.nonzero()) == [("flows", 4), ("posts_new", 2), ("images_stored", 4)]
    assert not CaptureCounts() and total


def test_a_name_that_is_not_a_counter_is_refused_saying_which() -> None:
    with pytest.raises(ValueError, match="not capture counters: post_new"):
        CaptureCounts.of({"flows": 1, "post_new": 1})


def test_the_record_crosses_the_pipe_as_itself() -> None:
    counts = CaptureCounts(flows_dropped=7, parse_errors=1)
    assert pickle.loads(pickle.dumps(counts)) == counts
