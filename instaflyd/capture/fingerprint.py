"""The shape of a document that was not understood: key paths and field names, never a value.

A fingerprint lets a user report a format Instafly does not read, and a developer add it, without
either of them seeing private data. It is built from the key paths that led to the objects that
looked like posts or users (`data.xdt_new_feed.items[].media_v2: display_url,shortcode`). Keys
can be data too (maps keyed by an id or a username), so a key is kept only when it looks like a
field name (letters, digits and underscores, digits written as `#`) and equals no value of the
document; anything else becomes `*`.
"""

from __future__ import annotations

import re
from typing import Any

Json = Any

MAX_LINES = 12
MAX_KEY = 64
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIGITS = re.compile(r"[0-9]+")


def shape_fingerprint(document: Json, paths: list[tuple[list[str], list[str]]]) -> str:
    """One line per distinct path (`a.b[].c: hint,hint`), sorted, at most MAX_LINES (then
    `...`); `paths`
    are (keys from the root, "[]" for a list item; the field names found there)."""
    values = _scalar_values(document)
    lines = {_line([_safe_key(key, values) for key in keys], hints) for keys, hints in paths}
    ordered = sorted(lines)
    if len(ordered) > MAX_LINES:
        ordered = [*ordered[:MAX_LINES], "..."]
    return "\n".join(ordered)


def _line(keys: list[str], hints: list[str]) -> str:
    path = "".join(key if key == "[]" else "." + key for key in keys).lstrip(".") or "$"
    return f"{path}: {','.join(hints)}"


def _safe_key(key: str, values: set[str]) -> str:
    if key == "[]":
        return key
    if len(key) > MAX_KEY or not _FIELD_NAME.fullmatch(key) or key.lower() in values:
        return "*"
    key = _DIGITS.sub("#", key)
    return "*" if key.lower() in values else key


def _scalar_values(document: Json) -> set[str]:
    """Every string and number of the document, lower-cased, to check keys against."""
    values: set[str] = set()
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            values.add(str(value).lower())
    return values
