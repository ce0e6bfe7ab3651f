"""Where an enhanced photo goes, `<stem>.instafly.jpg`, and its sidecar, `<stem>.instafly.json`.

A name that is taken (by either file) gets a numeric suffix, `<stem>-2.instafly.jpg` and so on:
Instafly never overwrites a file. A stem too long for the file system (names are limited to
NAME_MAX bytes, 255 on Linux: a 251-byte photo name leaves no room for `.instafly.json`) is
shortened, at a character boundary, until the longest of the names fits; the numeric suffix keeps
two shortened names apart. Both files are written atomically through `instaflyd.fsutil`, the JPEG
first, so a sidecar always describes a complete photo.

The sidecar is one record, `Sidecar`, written here (`write_sidecar`) whoever ends the job (the
enhancement, a rejection, a job given up on) or notes a copy of a photo already queued
(`watch/duplicates.py`, status "duplicate"), and read back here (`read_sidecar`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from instaflyd.fsutil import atomic_write_bytes, atomic_write_text

SUFFIX = ".instafly"
NAME_MAX = 255  # bytes in one file name (Linux, and most file systems)
MAX_SIDECAR_BYTES = 64 * 1024  # ours are < 1 kB; a larger file in the output folder is not ours
_LONGEST_EXTENSION = f"{SUFFIX}.json"

SidecarStatus = Literal["done", "rejected", "failed", "duplicate"]
SIDECAR_STATUSES: tuple[SidecarStatus, ...] = ("done", "rejected", "failed", "duplicate")


@dataclass(frozen=True)
class Enhancement:
    """What an enhanced photo's sidecar says about how it was made."""

    output: str
    score_before: float
    score_after: float
    params: dict[str, float]
    seconds: float
    mode: str
    model_version: int | None
    steps: int
    width: int
    height: int
    instafly_version: str


@dataclass(frozen=True)
class Duplicate:
    """A copy of a photo already queued (the queue enhances each content once): which photo it
    is the same as, that photo's job and its state when the copy was noticed, a sentence for
    people, and `output` with the scores when the first one's result was copied for it."""

    same_as: str
    job: int
    state: str
    note: str
    output: str | None = None
    score_before: float | None = None
    score_after: float | None = None


@dataclass(frozen=True)
class Sidecar:
    """`<stem>.instafly.json`: how a photo's job ended. `enhancement` only when it is done;
    `reason` only when it failed or was rejected; `duplicate` only for a copy of a queued photo."""

    status: SidecarStatus
    input: str
    reason: str | None = None
    enhancement: Enhancement | None = field(default=None)
    duplicate: Duplicate | None = field(default=None)

    def as_json(self) -> dict[str, Any]:
        """The file's JSON: flat, the enhancement's (or the duplicate's) fields beside the
        status (as since 0.1)."""
        record: dict[str, Any] = {"status": self.status, "input": self.input}
        if self.duplicate is not None:
            d = self.duplicate
            record |= {"same_as": d.same_as, "job": d.job, "state": d.state, "note": d.note}
            if d.output is not None:
                record |= {
                    "output": d.output,
                    "score_before": d.score_before,
                    "score_after": d.score_after,
                }
        if self.enhancement is not None:
            e = self.enhancement
            record |= {
                "output": e.output,
                "score_before": e.score_before,
                "score_after": e.score_after,
                "params": e.params,
                "seconds": e.seconds,
                "mode": e.mode,
                "model_version": e.model_version,
                "steps": e.steps,
                "width": e.width,
                "height": e.height,
                "instafly_version": e.instafly_version,
            }
        if self.reason is not None:
            record["reason"] = self.reason
        return record


class UnreadableSidecar(ValueError):
    """The file is not a sidecar Instafly wrote (or no longer reads)."""


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


def write_outputs(photo: Path, jpeg: bytes, sidecar: Path, record: Sidecar) -> None:
    """Write the photo, then the sidecar that describes it."""
    atomic_write_bytes(photo, jpeg)
    write_sidecar(sidecar, record)


def write_sidecar(sidecar: Path, record: Sidecar) -> None:
    atomic_write_text(sidecar, json.dumps(record.as_json(), indent=2) + "\n")


def read_sidecar(path: Path) -> Sidecar:
    """The sidecar at `path`; UnreadableSidecar if it is not one (OSError if it cannot be read)."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_SIDECAR_BYTES + 1)
    if len(data) > MAX_SIDECAR_BYTES:
        raise UnreadableSidecar(f"{path.name}: larger than {MAX_SIDECAR_BYTES} bytes")
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise UnreadableSidecar(f"{path.name}: not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise UnreadableSidecar(f"{path.name}: not a JSON object")
    status, source = raw.get("status"), raw.get("input")
    if status not in SIDECAR_STATUSES or not isinstance(source, str):
        raise UnreadableSidecar(f"{path.name}: no status and input of a job")
    if status == "duplicate":
        return Sidecar(status, source, duplicate=_duplicate(raw, path))
    reason = raw.get("reason")
    return Sidecar(
        status=status,
        input=source,
        reason=reason if isinstance(reason, str) else None,
        enhancement=_enhancement(raw) if status == "done" else None,
    )


def _duplicate(raw: dict[str, Any], path: Path) -> Duplicate:
    same_as, job, state, note = (raw.get(key) for key in ("same_as", "job", "state", "note"))
    if not (isinstance(same_as, str) and type(job) is int and isinstance(state, str)):
        raise UnreadableSidecar(f"{path.name}: a duplicate's note without the photo it matches")
    output, before, after = (raw.get(key) for key in ("output", "score_before", "score_after"))
    return Duplicate(
        same_as=same_as,
        job=job,
        state=state,
        note=note if isinstance(note, str) else "",
        output=output if isinstance(output, str) else None,
        score_before=_finite(before),
        score_after=_finite(after),
    )


def _finite(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _enhancement(raw: dict[str, Any]) -> Enhancement | None:
    params = raw.get("params")
    version = raw.get("model_version")
    try:
        return Enhancement(
            output=str(raw["output"]),
            score_before=float(raw["score_before"]),
            score_after=float(raw["score_after"]),
            params={
                str(key): float(value)
                for key, value in (params.items() if isinstance(params, dict) else ())
                if isinstance(value, int | float) and math.isfinite(value)
            },
            seconds=float(raw.get("seconds") or 0.0),
            mode=str(raw.get("mode") or ""),
            model_version=version if isinstance(version, int) else None,
            steps=int(raw.get("steps") or 0),
            width=int(raw.get("width") or 0),
            height=int(raw.get("height") or 0),
            instafly_version=str(raw.get("instafly_version") or ""),
        )
    except (KeyError, TypeError, ValueError):
        return None
