"""`models/vNNNN/model.json`: what a trained version was built from, as one record.

Written once by the trainer, read by the registry whenever the version is loaded: the frozen
part it was trained on (backbone, weights setting, input size, seed and the fingerprint of the
frozen weights), the objective, and the keras version. A file that lacks a field or has one of
the wrong type is refused with the field's name, so a version written by other code never loads
as something it is not.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from instaflyd.model.errors import ModelLoadError

MANIFEST_FILE = "model.json"


@dataclass(frozen=True)
class VersionManifest:
    version: int
    backbone: str
    input_size: int
    weights: str  # the model.weights setting it was trained with: imagenet | none | a path
    fingerprint: str  # sha1 of the frozen weights' values
    seed: int  # what rebuilds random weights
    objective: str
    keras: str
    created: float

    def write(self, folder: Path) -> None:
        text = json.dumps(asdict(self), indent=2) + "\n"
        (folder / MANIFEST_FILE).write_text(text, encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> VersionManifest:
        """The manifest in `folder`; ModelLoadError saying why when it cannot be used."""
        try:
            raw = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{folder}: cannot read {MANIFEST_FILE}: {exc}") from exc
        if not isinstance(raw, dict):
            raise ModelLoadError(f"{folder}: {MANIFEST_FILE} is not a JSON object")
        return cls(**{name: _field(folder, raw, name, kind) for name, kind in _FIELDS.items()})


_FIELDS: dict[str, type] = {
    "version": int,
    "backbone": str,
    "input_size": int,
    "weights": str,
    "fingerprint": str,
    "seed": int,
    "objective": str,
    "keras": str,
    "created": float,
}


def _field(folder: Path, raw: dict[str, Any], name: str, kind: type) -> Any:
    value = raw.get(name)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ModelLoadError(
            f"{folder}: {MANIFEST_FILE} has no usable {name!r} ({kind.__name__} expected)"
        )
    return value
