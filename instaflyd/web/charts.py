"""The page's charts as server-rendered SVG: no script, no CDN, styled by the page's CSS.

Each chart is a `<figure>`: an SVG (role="img", with a <title> and a <desc> that say what it
shows) and the same numbers in a visually hidden table for screen readers. Colours come from
CSS classes (the stylesheet has light and dark schemes; the page's CSP forbids inline styles).
The SVG's viewBox is phone-sized and scales to the card's width. Every point of a series is one
vertex of its polyline or one bar, so a test can count them against /api/history.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from instaflyd.status.document import StatusDocument
from instaflyd.status.history import (
    CapturePoint,
    EnhancedPoint,
    HistorySeries,
    LevelPoint,
    RangeName,
    SeriesName,
    history_series,
    quiet_capture,
)
from instaflyd.store.versions import VersionMetrics

WIDTH, HEIGHT = 360, 170
LEFT, RIGHT, TOP, BOTTOM = 40, 40, 10, 145  # the plot area
X_LABELS: dict[RangeName, tuple[str, str, str]] = {
    "day": ("24 h ago", "12 h ago", "now"),
    "month": ("30 days ago", "15 days ago", "now"),
    "year": ("a year ago", "6 months ago", "now"),
}


@dataclass(frozen=True)
class Line:
    name: str  # for people, in the legend and the table
    css: str  # the class that colours it
    values: list[float | None]


def posts_chart(series: HistorySeries) -> Markup:
    points = [p for p in series.points if isinstance(p, LevelPoint)]
    lines = [
        Line("posts", "series-a", [p.posts for p in points]),
        Line("posts it can learn from", "series-b", [p.labelled for p in points]),
        Line("next lesson at", "threshold", [p.next_training_at for p in points]),
    ]
    if not points:
        return _empty("posts")
    if len(points) < 2:  # one sample draws no line: say the number instead
        return Markup(
            '<p class="muted small chart-empty" data-chart="posts" data-points="1">'
            "{:,} posts, {:,} of them can be learned from; the line starts with the next sample, "
            "within 5 minutes.</p>"
        ).format(points[0].posts, points[0].labelled)
    last = points[-1]
    desc = (
        f"{last.posts:,} posts and {last.labelled:,} labelled posts now "
        f"(from {points[0].posts:,} and {points[0].labelled:,}); the next training starts at "
        f"{last.next_training_at:,} labelled posts."
    )
    xs = _time_xs([p.time for p in points], series)
    return _figure(
        "posts", "Posts and labelled posts", desc, series.range, lines,
        _line_chart(xs, lines), [p.time for p in points], series,
    )  # fmt: skip


def capture_chart(series: HistorySeries) -> Markup:
    points = [p for p in series.points if isinstance(p, CapturePoint)]
    if not points:
        return _empty("capture")
    per = _per(series)
    lines = [Line(f"posts captured per {per}", "series-a", [p.posts for p in points])]
    total = sum(p.posts for p in points)
    busiest = max(points, key=lambda p: p.posts)
    desc = f"{total:,} posts captured in the range" + (
        f"; the most, {busiest.posts:,}, in the {per} of {_when(busiest.time, series)}."
        if total
        else "."
    )
    xs = _time_xs([p.time for p in points], series, bars=True)
    return _figure(
        "capture", f"Posts captured per {per}", desc, series.range, lines,
        _bars(xs, lines[0].values, series), [p.time for p in points], series,
    )  # fmt: skip


def enhanced_chart(series: HistorySeries) -> Markup:
    points = [p for p in series.points if isinstance(p, EnhancedPoint)]
    if not points:
        return _empty("enhanced")
    per = _per(series)
    lines = [
        Line(f"photos enhanced per {per}", "series-a", [p.photos for p in points]),
        Line(
            "average gain in expected likes (%)",
            "series-b",
            [None if p.mean_gain is None else _gain_percent(p.mean_gain) for p in points],
        ),
    ]
    photos = sum(p.photos for p in points)
    gains = [(p.mean_gain or 0.0) * p.photos for p in points]
    desc = f"{photos:,} photos enhanced in the range" + (
        f"; on average they should get {_gain_percent(sum(gains) / photos):+.0f}% more likes."
        if photos
        else "."
    )
    xs = _time_xs([p.time for p in points], series, bars=True)
    body = _bars(xs, lines[0].values, series) + _dots(xs, lines[1].values, "series-b", right=True)
    return _figure(
        "enhanced", f"Photos enhanced per {per}", desc, series.range, lines, body,
        [p.time for p in points], series,
    )  # fmt: skip


def models_chart(series: HistorySeries) -> Markup:
    versions = [p for p in series.points if isinstance(p, VersionMetrics)]
    if not versions:
        return _empty("models")
    lines = [
        Line("orders posts as their likes do", "series-a", [v.val_srcc for v in versions]),
        Line(
            "picks the better of two posts", "series-b", [v.val_pairwise_accuracy for v in versions]
        ),
    ]
    last = versions[-1]
    pairs = last.val_pairwise_accuracy
    in_100 = _number(round(pairs * 100) if pairs is not None else None)
    desc = (
        f"{len(versions)} models learned; the "
        f"{'one in use' if last.promoted else 'newest, not better, so not used'} picks the "
        f"better of two posts {in_100} times in 100 "
        f"(rank correlation {_number(last.val_srcc)}, pairwise accuracy {_number(pairs)})."
    )
    n = len(versions)
    xs = [LEFT + (RIGHT_EDGE - LEFT) * (i + 0.5) / n for i in range(n)]
    low = min([0.0, *(v for line in lines for v in line.values if v is not None)])
    body = Markup("").join(
        _polyline(xs, line.values, line.css, (low, 1.0)) for line in lines
    ) + Markup("").join(
        _version_marks(xs, line.values, line.css, versions, (low, 1.0)) for line in lines
    )
    labels = Markup("").join(
        Markup('<text class="axis" x="{:.1f}" y="{}" text-anchor="middle">v{}</text>').format(
            x, HEIGHT - 8, v.version
        )
        for x, v in list(zip(xs, versions, strict=True))[:: max(1, math.ceil(n / 8))]
    )
    svg = _svg("models", _grid((low, 1.0)) + body + labels)
    table = _table(
        "Validation per model version",
        ["version", "promoted", *(line.name for line in lines)],
        [
            [f"v{v.version}", "yes" if v.promoted else "no", _number(v.val_srcc),
             _number(v.val_pairwise_accuracy)]
            for v in versions
        ],
    )  # fmt: skip
    return _wrap("models", "Model versions", desc, svg, lines, table, n, promoted_note=True)


# --- drawing -------------------------------------------------------------------------------

RIGHT_EDGE = WIDTH - RIGHT


def _line_chart(xs: list[float], lines: list[Line]) -> Markup:
    top = _nice_max(max((v for line in lines for v in line.values if v is not None), default=1))
    return _grid((0, top)) + Markup("").join(
        _polyline(xs, line.values, line.css, (0, top)) for line in lines
    )


def _bars(xs: list[float], values: Sequence[float | None], series: HistorySeries) -> Markup:
    top = _nice_max(max((v or 0 for v in values), default=1))
    span = max(1.0, series.until - series.since)
    slot = (RIGHT_EDGE - LEFT) * (series.bucket_seconds or 1) / span
    width = max(1.0, slot * 0.8)
    # Plain f-strings of numbers (nothing to escape): Markup.format per bar is 10x slower.
    bars = []
    for x, value in zip(xs, values, strict=True):
        height = (BOTTOM - TOP) * (value or 0) / top
        bars.append(
            f'<rect class="bar" x="{x - width / 2:.1f}" y="{BOTTOM - height:.1f}" '
            f'width="{width:.1f}" height="{height:.1f}"><title>{_number(value)}</title></rect>'
        )
    return _grid((0, top)) + Markup("".join(bars))


def _dots(xs: list[float], values: Sequence[float | None], css: str, right: bool) -> Markup:
    present = [v for v in values if v is not None]
    if not present:  # nothing to mark: no scale either (no stray "+0.010" on an empty box)
        return Markup("")
    low = min([0.0, *present])
    high = _nice_max(max(present, default=0.01) or 0.01)
    dots = [
        f'<circle class="dot {css}" cx="{x:.1f}" cy="{_y(v, (low, high)):.1f}" r="3">'
        f"<title>{v:+.1f}%</title></circle>"
        for x, v in zip(xs, values, strict=True)
        if v is not None
    ]
    axis = (
        Markup('<text class="axis {}" x="{}" y="{}" text-anchor="start">{}</text>').format(
            css, RIGHT_EDGE + 4, TOP + 10, f"{high:+.0f}%"
        )
        if right
        else Markup("")
    )
    return axis + Markup("".join(dots))


def _polyline(
    xs: list[float], values: Sequence[float | None], css: str, scale: tuple[float, float]
) -> Markup:
    vertices = " ".join(
        f"{x:.1f},{_y(v, scale):.1f}" for x, v in zip(xs, values, strict=True) if v is not None
    )
    return Markup('<polyline class="line {}" points="{}"/>').format(css, vertices)


def _version_marks(
    xs: list[float],
    values: Sequence[float | None],
    css: str,
    versions: list[VersionMetrics],
    scale: tuple[float, float],
) -> Markup:
    marks = []
    for x, value, v in zip(xs, values, versions, strict=True):
        if value is None:
            continue
        state = "promoted" if v.promoted else "not-promoted"
        note = "" if v.promoted else " (not promoted)"
        marks.append(
            Markup(
                '<circle class="dot {} {}" cx="{:.1f}" cy="{:.1f}" r="4">'
                "<title>v{}: {}{}</title></circle>"
            ).format(css, state, x, _y(value, scale), v.version, _number(value), note)
        )
    return Markup("").join(marks)


def _grid(scale: tuple[float, float]) -> Markup:
    low, high = scale
    parts = []
    for value in (low, (low + high) / 2, high):
        y = _y(value, scale)
        parts.append(
            Markup(
                '<line class="grid" x1="{}" y1="{:.1f}" x2="{}" y2="{:.1f}"/>'
                '<text class="axis" x="{}" y="{:.1f}" text-anchor="end">{}</text>'
            ).format(LEFT, y, RIGHT_EDGE, y, LEFT - 4, y + 4, _tick(value))
        )
    return Markup("").join(parts)


def _time_xs(times: list[int], series: HistorySeries, bars: bool = False) -> list[float]:
    """x of each bucket: its start for a line, its middle for a bar (kept inside the plot)."""
    span = max(1.0, series.until - series.since)
    width = (RIGHT_EDGE - LEFT) / span
    if not bars:
        return [LEFT + width * (t - series.since) for t in times]
    half = width * (series.bucket_seconds or 0) / 2
    return [
        min(
            RIGHT_EDGE - half * 0.8,
            max(LEFT + half * 0.8, LEFT + width * (t - series.since) + half),
        )
        for t in times
    ]


def _y(value: float, scale: tuple[float, float]) -> float:
    low, high = scale
    share = (value - low) / (high - low) if high > low else 0.0
    return BOTTOM - (BOTTOM - TOP) * max(0.0, min(1.0, share))


def _nice_max(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `value`."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value)


# --- the figure around it ------------------------------------------------------------------


def _figure(
    name: str,
    title: str,
    desc: str,
    range_: RangeName,
    lines: list[Line],
    body: Markup,
    times: list[int],
    series: HistorySeries,
) -> Markup:
    labels = X_LABELS[range_]
    xs = (LEFT, (LEFT + RIGHT_EDGE) / 2, RIGHT_EDGE)
    anchors = ("start", "middle", "end")
    axis = Markup("").join(
        Markup('<text class="axis" x="{}" y="{}" text-anchor="{}">{}</text>').format(
            x, HEIGHT - 8, anchor, label
        )
        for x, anchor, label in zip(xs, anchors, labels, strict=True)
    )
    table = _table(
        title,
        ["time (UTC)", *(line.name for line in lines)],
        [
            [_when(t, series), *(_number(line.values[i]) for line in lines)]
            for i, t in enumerate(times)
        ],
    )
    return _wrap(name, title, desc, _svg(name, body + axis), lines, table, len(times))


def _svg(name: str, body: Markup) -> Markup:
    return (
        Markup(
            '<svg class="chart-svg" viewBox="0 0 {} {}" role="img" '
            'aria-labelledby="chart-{}-title chart-{}-desc">'
        ).format(WIDTH, HEIGHT, name, name)
        + body
        + Markup("</svg>")
    )


def _wrap(
    name: str,
    title: str,
    desc: str,
    svg: Markup,
    lines: list[Line],
    table: Markup,
    points: int,
    promoted_note: bool = False,
) -> Markup:
    # <title> and <desc> go first inside the SVG, where assistive technology looks for them.
    head = Markup('<title id="chart-{}-title">{}</title><desc id="chart-{}-desc">{}</desc>').format(
        name, title, name, desc
    )
    svg = Markup(str(svg).replace(">", ">" + str(head), 1))
    legend = Markup("").join(
        Markup('<li><span class="swatch {}" aria-hidden="true"></span>{}</li>').format(
            line.css, line.name
        )
        for line in lines
    )
    if promoted_note:
        legend += Markup(
            '<li><span class="swatch hollow" aria-hidden="true"></span>not promoted</li>'
        )
    return Markup(
        '<figure class="chart" data-chart="{}" data-points="{}"><figcaption>{}</figcaption>'
        '{}<ul class="legend small" aria-hidden="true">{}</ul>{}</figure>'
    ).format(name, points, title, svg, legend, table)


def _table(caption: str, header: list[str], rows: list[list[str]]) -> Markup:
    head = Markup("").join(Markup('<th scope="col">{}</th>').format(h) for h in header)
    body = Markup(
        "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    )
    return Markup(
        '<div class="visually-hidden"><table><caption>{}</caption><thead><tr>{}</tr></thead>'
        "<tbody>{}</tbody></table></div>"
    ).format(caption, head, body)


def _empty(name: str) -> Markup:
    text = (
        "No model version yet."
        if name == "models"
        else "No history yet: the first point appears within 5 minutes of the daemon's start."
    )
    return Markup('<p class="muted small chart-empty" data-chart="{}">{}</p>').format(
        name, escape(text)
    )


def _per(series: HistorySeries) -> str:
    return "hour" if series.bucket_seconds == 3600 else "day"


def _when(timestamp: float, series: HistorySeries) -> str:
    fmt = "%Y-%m-%d" if (series.bucket_seconds or 0) >= 86400 else "%Y-%m-%d %H:%M"
    return time.strftime(fmt, time.gmtime(timestamp))


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.3f}"


def _tick(value: float) -> str:
    """An axis label: 1,000 or 12.5 or 0.25, never 12.500."""
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _gain_percent(score_gain: float) -> float:
    """A mean score gain (log of likes) as the share of likes gained, in percent."""
    return (math.exp(min(score_gain, 50.0)) - 1.0) * 100


@dataclass(frozen=True)
class HistoryCharts:
    """The history card of the page for one range."""

    range: RangeName
    quiet: str | None  # "Nothing captured for 3 days: ...", when so
    posts: Markup
    capture: Markup
    models: Markup
    enhanced: Markup


def history_charts(
    conn: sqlite3.Connection, range_: RangeName, status: StatusDocument
) -> HistoryCharts:
    now = status.instafly.time

    def series(name: SeriesName) -> HistorySeries:
        return history_series(conn, name, range_, now)

    return HistoryCharts(
        range=range_,
        quiet=quiet_capture(status.capture.last_capture, now),
        posts=posts_chart(series("posts")),
        capture=capture_chart(series("capture")),
        models=models_chart(series("models")),
        enhanced=enhanced_chart(series("enhanced")),
    )
