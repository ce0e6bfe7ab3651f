"""The one back-off rule of the supervisor, the training scheduler and the weights fetch."""

from __future__ import annotations

import pytest

from instaflyd.daemon.backoff import Backoff


def test_the_wait_doubles_with_each_failure_up_to_the_cap_and_a_success_starts_over() -> None:
    backoff = Backoff(1.0, 30.0)
    assert [backoff.failed() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert (backoff.failures, backoff.wait) == (7, 30.0)
    backoff.succeeded()
    assert (backoff.failures, backoff.wait, backoff.failed()) == (0, 1.0, 1.0)


@pytest.mark.parametrize(("first", "most"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_a_backoff_that_could_never_wait_or_shrink_is_refused(first: float, most: float) -> None:
    with pytest.raises(ValueError, match="0 < first <= most"):
        Backoff(first, most)
