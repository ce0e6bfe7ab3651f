"""Where an enhanced photo goes: `<stem>.instafly.jpg` and its sidecar `<stem>.instafly.json`.

A name that is taken (by either file) gets a numeric suffix, `<stem>-2.instafly.jpg` and so on:
Instafly never overwrites a file. A stem too long for the file system (names are limited to
NAME_MAX bytes, 255 on Linux: a 251-byte photo name leaves no room for `.instafly.json`) is
shortened, at a character boundary, until the longest of the names fits; the numeric suffix keeps
two shortened names apart. Both files are written atomically through `instaflyd.fsutil`, the JPEG
first, so a sidecar always describes a complete photo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from instaflyd.fsutil import atomic_write_bytes, atomic_write_text

SUFFIX = ".instafly"
NAME_MAX = 255  # bytes in one file name (Linux, and most file systems)
_LONGEST_EXTENSION = f"{SUFFIX}.json"


def output_paths(output_dir: Path, stem: str) -> tuple[Path, Path]:
    """The first free (photo, sidecar) pair of names for `stem` in `output_dir`."""
    number = 1
    while True:
        tail = "" if number == 1 else f"-{number}"
        name = fitting_stem(stem, NAME_MAX - len(tail) - len(_LONGEST_EXTENSION)) + tail
        photo = output_dir / f"{name}{SUFFIX}.jpg"
        sidecar = output_dir / f"{name}{SUFFIX}.json"
        if not photo.exists() and not sidecar.exists():
            return photo, sidecar
        number += 1


def fitting_stem(stem: str, max_bytes: int) -> str:
    """`stem`, cut at a character boundary to at most `max_bytes` bytes of UTF-8."""
    encoded = stem.encode("utf-8", "surrogateescape")
    if len(encoded) <= max_bytes:
        return stem
    return encoded[:max_bytes].decode("utf-8", "ignore").rstrip() or "photo"


def write_outputs(photo: Path, jpeg: bytes, sidecar: Path, record: dict[str, Any]) -> None:
    """Write the photo, then the sidecar that describes it."""
    atomic_write_bytes(photo, jpeg)
    write_sidecar(sidecar, record)


def write_sidecar(sidecar: Path, record: dict[str, Any]) -> None:
    atomic_write_text(sidecar, json.dumps(record, indent=2) + "\n")
