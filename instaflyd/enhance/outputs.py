"""Where an enhanced photo goes: `<stem>.instafly.jpg` and its sidecar `<stem>.instafly.json`.

A name that is taken (by either file) gets a numeric suffix, `<stem>-2.instafly.jpg` and so on:
Instafly never overwrites a file. Both files are written atomically through `instaflyd.fsutil`,
the JPEG first, so a sidecar always describes a complete photo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from instaflyd.fsutil import atomic_write_bytes, atomic_write_text

SUFFIX = ".instafly"


def output_paths(output_dir: Path, stem: str) -> tuple[Path, Path]:
    """The first free (photo, sidecar) pair of names for `stem` in `output_dir`."""
    number = 1
    while True:
        name = stem if number == 1 else f"{stem}-{number}"
        photo = output_dir / f"{name}{SUFFIX}.jpg"
        sidecar = output_dir / f"{name}{SUFFIX}.json"
        if not photo.exists() and not sidecar.exists():
            return photo, sidecar
        number += 1


def write_outputs(photo: Path, jpeg: bytes, sidecar: Path, record: dict[str, Any]) -> None:
    """Write the photo, then the sidecar that describes it."""
    atomic_write_bytes(photo, jpeg)
    write_sidecar(sidecar, record)


def write_sidecar(sidecar: Path, record: dict[str, Any]) -> None:
    atomic_write_text(sidecar, json.dumps(record, indent=2) + "\n")
