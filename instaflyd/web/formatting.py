"""Jinja filters that turn the status document's raw values into short words for people."""

from __future__ import annotations

import time

from flask import Flask


def number(value: int | float | None) -> str:
    """1234 -> "1,234"; None -> "–" (the page's JavaScript formats updates the same way)."""
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.3g}"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.3f}"


def ago(timestamp: float | None, now: float | None = None) -> str:
    """Unix time -> "just now", "5 min ago", "3 h ago", "2 days ago"; None -> "never"."""
    if timestamp is None:
        return "never"
    seconds = max(0.0, (time.time() if now is None else now) - timestamp)
    if seconds < 60:
        return "just now"
    for size, unit in ((86400, "days"), (3600, "h"), (60, "min")):
        if seconds >= size:
            amount = int(seconds // size)
            return f"{amount} {unit if amount > 1 or unit != 'days' else 'day'} ago"
    return "just now"


def duration(seconds: float | None) -> str:
    """Seconds -> "42 s", "3 min 5 s", "1 h 12 min"; None -> "–"."""
    if seconds is None:
        return "–"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def until(timestamp: float | None, now: float | None = None) -> str:
    """Unix time ahead -> "in a minute", "in 40 min", "today at 18:05", "tomorrow at 09:14"
    (the box's local time); None -> "later"."""
    if timestamp is None:
        return "later"
    now = time.time() if now is None else now
    seconds = timestamp - now
    if seconds < 90:
        return "in a minute"
    if seconds < 3600:
        return f"in {round(seconds / 60)} min"
    then, today = time.localtime(timestamp), time.localtime(now)
    days = (
        time.mktime((then.tm_year, then.tm_mon, then.tm_mday, 12, 0, 0, 0, 0, -1))
        - time.mktime((today.tm_year, today.tm_mon, today.tm_mday, 12, 0, 0, 0, 0, -1))
    ) // 86400
    clock = time.strftime("%H:%M", then)
    if days == 0:
        return f"today at {clock}"
    if days == 1:
        return f"tomorrow at {clock}"
    return f"{time.strftime('%A', then)} at {clock}"


def install(app: Flask) -> None:
    for name, function in (
        ("number", number),
        ("percent", percent),
        ("signed", signed),
        ("ago", ago),
        ("duration", duration),
        ("until", until),
    ):
        app.jinja_env.filters[name] = function
