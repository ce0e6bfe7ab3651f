"""The one call the worker makes into enhancement: enhance one photo into planned output paths.

STAND-IN until `instaflyd.enhance` lands: it re-encodes the photo unchanged. Replaced by a thin
adapter over the real enhancement.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from instaflyd.config import Config
from instaflyd.fsutil import atomic_write_text, atomic_writer
from instaflyd.model.scoring import Scorer


class InputRejected(Exception):
    """The file cannot be enhanced; the message says why, in words a person understands."""


@dataclass(frozen=True)
class Enhanced:
    output: Path
    sidecar: Path
    score_before: float | None
    score_after: float | None


def plan_outputs(
    source: Path, output_dir: Path, taken: Callable[[Path], bool]
) -> tuple[Path, Path]:
    """The first free `<stem>.instafly[-N].jpg` and its sidecar in `output_dir`."""
    number = 1
    while True:
        suffix = "" if number == 1 else f"-{number}"
        output = output_dir / f"{source.stem}.instafly{suffix}.jpg"
        sidecar = output.with_suffix(".json")
        if not (output.exists() or sidecar.exists() or taken(output) or taken(sidecar)):
            return output, sidecar
        number += 1


def enhance_photo(
    source: Path, output: Path, sidecar: Path, scorer: Scorer, config: Config
) -> Enhanced:
    from PIL import Image, UnidentifiedImageError

    started = time.monotonic()
    try:
        with Image.open(source) as image:
            image.load()
            rgb = image.convert("RGB")
    except UnidentifiedImageError as exc:
        raise InputRejected("not an image") from exc
    with atomic_writer(output) as handle:
        rgb.save(handle, "JPEG", quality=config.enhance.jpeg_quality)
    atomic_write_text(
        sidecar,
        json.dumps(
            {
                "status": "done",
                "input": str(source),
                "output": str(output),
                "model_version": scorer.version,
                "seconds": time.monotonic() - started,
            }
        ),
    )
    return Enhanced(output, sidecar, None, None)


def write_rejection(source: Path, sidecar: Path, reason: str) -> None:
    atomic_write_text(
        sidecar, json.dumps({"status": "rejected", "input": str(source), "reason": reason})
    )
