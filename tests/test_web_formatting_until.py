"""The page's "when" for times ahead (the training plan's retry and budget): local time words."""

from __future__ import annotations

import time

from instaflyd.web.formatting import until


def test_times_ahead_read_as_minutes_today_tomorrow_or_a_weekday() -> None:
    noon = time.mktime((2027, 3, 10, 12, 0, 0, 0, 0, -1))  # a Wednesday, the box's local time
    assert until(None, noon) == "later"
    assert until(noon + 30, noon) == "in a minute"
    assert until(noon + 40 * 60, noon) == "in 40 min"
    assert until(noon + 5 * 3600 + 300, noon) == "today at 17:05"
    assert until(noon + 21 * 3600 + 14 * 60, noon) == "tomorrow at 09:14"
    assert until(noon + 2 * 86400, noon) == "Friday at 12:00"
