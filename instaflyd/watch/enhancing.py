"""STAND-IN for `instaflyd.enhance` until it lands, with the same names: `enhance_file`,
`RejectedImage`, `output_paths`, `write_sidecar`. It re-encodes the photo unchanged."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instaflyd.config import Config
from instaflyd.fsutil import atomic_write_text, atomic_writer
from instaflyd.model.scoring import Scorer


class RejectedImage(Exception):
    """The file cannot be enhanced; the message says why, in words a person understands."""


@dataclass(frozen=True)
class EnhanceResult:
    output: Path
    sidecar: Path
    score_before: float | None
    score_after: float | None


def output_paths(output_dir: Path, stem: str) -> tuple[Path, Path]:
    number = 1
    while True:
        name = stem if number == 1 else f"{stem}-{number}"
        photo = output_dir / f"{name}.instafly.jpg"
        sidecar = output_dir / f"{name}.instafly.json"
        if not photo.exists() and not sidecar.exists():
            return photo, sidecar
        number += 1


def write_sidecar(sidecar: Path, record: dict[str, Any]) -> None:
    atomic_write_text(sidecar, json.dumps(record, indent=2) + "\n")


def enhance_file(path: Path, output_dir: Path, scorer: Scorer, config: Config) -> EnhanceResult:
    from PIL import Image, UnidentifiedImageError

    started = time.monotonic()
    try:
        with Image.open(path) as image:
            image.load()
            rgb = image.convert("RGB")
    except UnidentifiedImageError as exc:
        raise RejectedImage("not an image") from exc
    photo, sidecar = output_paths(output_dir, path.stem)
    with atomic_writer(photo) as handle:
        rgb.save(handle, "JPEG", quality=config.enhance.jpeg_quality)
    write_sidecar(
        sidecar,
        {
            "status": "done",
            "input": str(path),
            "output": str(photo),
            "model_version": scorer.version,
            "seconds": time.monotonic() - started,
        },
    )
    return EnhanceResult(photo, sidecar, None, None)
