"""The page's words for numbers: raw values of the status document as a household reads them.

Every figure the family sees goes through here, so the page, the gallery (through
`/api/photos`) and the tests say it the same way:

- the model's score is log(likes / followers); people read it as *expected likes per 1,000
  followers* ("53 → 59 (+12%)");
- the edits a photo got are said in words ("a little brighter, warmer, more colourful, slight
  vignette"), strongest first, each by how far it went towards its limit;
- the model's validation is *how well it predicts which of two posts does better: 81 of 100*.

The raw figures stay in the API and behind the page's "Details"; only the wording is here. The
functions are also Jinja filters (`install`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from flask import Flask

from instaflyd.web.thumbnails import srcset

MINUS = "\u2212"  # a real minus sign: "−12%" reads better than "-12%"


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


def hours(seconds: float | None) -> str:
    """CPU seconds as hours for people: 0 -> "0", 1800 -> "0.5", 7200 -> "2"."""
    if seconds is None:
        return "–"
    return f"{seconds / 3600:.1f}".removesuffix(".0")


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


# --- likes per 1,000 followers -------------------------------------------------------------


def likes_per_1000(score: float | None) -> float | None:
    """A score (log of likes per follower) as expected likes per 1,000 followers."""
    if score is None or not math.isfinite(score):
        return None
    return 1000.0 * math.exp(min(score, 50.0))


def likes_text(per_1000: float | None) -> str:
    """Likes per 1,000 followers for people: "1,234", "53", "5.3", "0.42"; None -> "–"."""
    if per_1000 is None:
        return "–"
    if per_1000 >= 9.95:
        return f"{round(per_1000):,}"
    if per_1000 >= 0.995:
        return f"{per_1000:.1f}"
    return f"{per_1000:.2g}"


def change_text(before: float | None, after: float | None) -> str:
    """The change from one score to another as a share of the likes: "+12%", "−3.5%"."""
    if before is None or after is None:
        return "–"
    share = (math.exp(min(after - before, 50.0)) - 1.0) * 100
    shown = f"{abs(share):.0f}" if abs(share) >= 9.5 else f"{abs(share):.1f}".removesuffix(".0")
    if shown in ("0", "0.0"):
        return "±0%"
    return ("+" if share > 0 else MINUS) + shown + "%"


def score_as_likes(score: float | None) -> str:
    """One score: "53 likes per 1,000 followers"."""
    return f"{likes_text(likes_per_1000(score))} likes per 1,000 followers"


@dataclass(frozen=True)
class ScoreChange:
    """A photo's predicted score before and after enhancing, in likes per 1,000 followers."""

    before: str  # "53"
    after: str  # "59"
    change: str  # "+12%"
    up: bool  # the change is a gain (or none)
    text: str  # "expected likes per 1,000 followers: 53 → 59 (+12%)"


def score_change(before: float | None, after: float | None) -> ScoreChange | None:
    if before is None or after is None:
        return None
    b, a = likes_text(likes_per_1000(before)), likes_text(likes_per_1000(after))
    change = change_text(before, after)
    return ScoreChange(
        b, a, change, after >= before, f"expected likes per 1,000 followers: {b} → {a} ({change})"
    )


# --- edits in words ------------------------------------------------------------------------


@dataclass(frozen=True)
class EditWords:
    limit: float  # the edit's largest value (instaflyd.enhance.filters.EDITS; a test compares)
    up: str  # what a positive value does to the photo
    down: str


EDIT_WORDS: dict[str, EditWords] = {
    "exposure": EditWords(0.50, "brighter", "darker"),
    "temperature": EditWords(0.10, "warmer", "cooler"),
    "tint": EditWords(0.10, "pinker", "greener"),
    "contrast": EditWords(0.40, "more contrast", "softer contrast"),
    "shadows": EditWords(0.14, "lighter shadows", "deeper shadows"),
    "highlights": EditWords(0.14, "brighter highlights", "softer highlights"),
    "gamma": EditWords(0.40, "brighter mid-tones", "darker mid-tones"),
    "saturation": EditWords(0.50, "more colourful", "less colourful"),
    "vignette": EditWords(0.30, "lighter corners", "vignette"),
}
UNNOTICEABLE = 0.08  # an edit below this share of its limit is not worth a word
STRONG = 0.6  # at or above this share of its limit, an edit is "much ..." (or "strong ...")


def _edit_phrase(words: str, strength: float) -> str:
    if words == "vignette":  # a noun: "slight vignette", "vignette", "strong vignette"
        return (
            "slight vignette"
            if strength < 0.3
            else "strong vignette"
            if strength >= STRONG
            else words
        )
    if strength < 0.3:
        return f"a little {words}"
    if strength >= STRONG:
        return f"much {words}"
    return words


def edits_in_words(edits: Mapping[str, float]) -> str:
    """{"exposure": 0.1, "temperature": 0.04, ...} -> "a little brighter, warmer, ..."; the
    strongest edit first; edits too small to see are left out; "" when nothing was changed.
    Unknown edit names (a newer enhancer) are said by their name."""
    said: list[tuple[float, str]] = []
    for name, value in edits.items():
        words = EDIT_WORDS.get(name)
        if words is None:
            if abs(value) > 1e-3:
                said.append((0.0, f"{name.replace('_', ' ')} {value:+.2f}"))
            continue
        strength = min(1.0, abs(value) / words.limit)
        if strength >= UNNOTICEABLE:
            said.append((strength, _edit_phrase(words.up if value > 0 else words.down, strength)))
    said.sort(key=lambda pair: -pair[0])
    return ", ".join(text for _, text in said)


def edit_name(edit: Mapping[str, float]) -> str:
    """One edit in one direction by its words, without strength: {"exposure": 1} -> "Brighter"."""
    said = []
    for name, value in edit.items():
        words = EDIT_WORDS.get(name)
        text = (words.up if value > 0 else words.down) if words else name.replace("_", " ")
        said.append(text)
    joined = ", ".join(said)
    return joined[:1].upper() + joined[1:]


# --- the model -----------------------------------------------------------------------------


def pairs_of_100(pairwise_accuracy: float | None) -> str:
    """Pairwise accuracy as "81 of 100" (a coin toss is 50)."""
    if pairwise_accuracy is None:
        return "–"
    return f"{round(max(0.0, min(1.0, pairwise_accuracy)) * 100)} of 100"


def model_quality(pairwise_accuracy: float | None) -> str:
    """ "How well it predicts which of two posts does better: 81 of 100"."""
    return f"how well it predicts which of two posts does better: {pairs_of_100(pairwise_accuracy)}"


# --- lists ---------------------------------------------------------------------------------


class _Event(Protocol):
    ts: float
    component: str
    level: str
    message: str


@dataclass(frozen=True)
class GroupedEvent:
    """Events with the same message, said once with how often and when last."""

    component: str
    level: str  # the worst level among them
    message: str
    count: int
    last: float


def group_events(events: Iterable[_Event]) -> list[GroupedEvent]:
    """Repeated problems once each, with a count; in the order of their latest occurrence."""
    groups: dict[tuple[str, str], list[_Event]] = {}
    for event in events:
        groups.setdefault((event.component, event.message), []).append(event)
    grouped = [
        GroupedEvent(
            component,
            "error" if any(e.level == "error" for e in same) else same[0].level,
            message,
            len(same),
            max(e.ts for e in same),
        )
        for (component, message), same in groups.items()
    ]
    return sorted(grouped, key=lambda g: -g.last)


class _Device(Protocol):
    trusts_box: bool
    tls_not_trusted: int  # refusals before it trusted the box's certificate
    tls_pinned: int  # refusals by an app although the phone trusts it


TLS_NOT_TRUSTED = (
    "A phone reached the box but does not trust its certificate yet, so nothing was captured "
    "from it: install the certificate on that phone (Set up a phone, below)."
)
TLS_PINNING = (
    "The Instagram app refuses any proxy, so nothing is captured from it: open instagram.com "
    "in the phone's web browser instead."
)
TLS_EITHER = (
    "Some connections to Instagram were refused: either a phone does not trust the box's "
    "certificate yet (install it: Set up a phone, below), or it was the Instagram app, which "
    "refuses any proxy (open instagram.com in the phone's web browser instead)."
)


def tls_note(devices: Iterable[_Device]) -> str:
    """What the refused TLS connections mean, from the causes the proxy recorded per device:
    a phone that does not trust the certificate yet, or an app that pins (both may be true);
    both sentences when no device says which."""
    seen = list(devices)
    untrusted = any(d.tls_not_trusted and not d.trusts_box for d in seen)
    pinned = any(d.tls_pinned for d in seen)
    if untrusted and pinned:
        return TLS_NOT_TRUSTED + " " + TLS_PINNING
    if untrusted:
        return TLS_NOT_TRUSTED
    if pinned:
        return TLS_PINNING
    return TLS_EITHER


def install(app: Flask) -> None:
    for name, function in (
        ("number", number),
        ("percent", percent),
        ("signed", signed),
        ("ago", ago),
        ("duration", duration),
        ("until", until),
        ("hours", hours),
        ("likes", lambda score: likes_text(likes_per_1000(score))),
        ("likes_text", likes_text),
        ("edits_in_words", edits_in_words),
        ("pairs_of_100", pairs_of_100),
        ("rate_likes", lambda rate: likes_text(None if rate is None else rate * 1000)),
        ("group_events", group_events),
        ("srcset", srcset),  # thumbnails.srcset: the widths the box draws
        ("edit_name", edit_name),
    ):
        app.jinja_env.filters[name] = function
    app.jinja_env.globals["score_change"] = score_change
    app.jinja_env.globals["tls_note"] = tls_note
    app.jinja_env.globals["change_text"] = change_text
