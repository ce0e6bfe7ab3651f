"""`model.json` as one record: written and read back whole, a damaged file refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instaflyd.model.errors import ModelLoadError
from instaflyd.model.manifest import MANIFEST_FILE, VersionManifest

MANIFEST = VersionManifest(
    version=3, backbone="vgg16", input_size=64, weights="none", fingerprint="ab" * 20, seed=7,
    objective="pairwise", keras="3.6.0", created=1_700_000_000.5,
)  # fmt: skip


def test_a_manifest_reads_back_as_written(tmp_path: Path) -> None:
    MANIFEST.write(tmp_path)
    assert json.loads((tmp_path / MANIFEST_FILE).read_text())["weights"] == "none"
    assert VersionManifest.read(tmp_path) == MANIFEST


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": None}, r"no usable 'seed' \(int expected\)"),
        ({"input_size": "64"}, r"no usable 'input_size'"),
        ({"input_size": True}, r"no usable 'input_size'"),
        ({"created": 1_700_000_000}, None),  # a whole number of seconds is a time too
    ],
)
def test_a_damaged_field_is_refused_by_its_name(
    tmp_path: Path, change: dict[str, object], message: str | None
) -> None:
    MANIFEST.write(tmp_path)
    path = tmp_path / MANIFEST_FILE
    path.write_text(json.dumps(json.loads(path.read_text()) | change))
    if message is None:
        assert VersionManifest.read(tmp_path).created == 1_700_000_000.0
        return
    with pytest.raises(ModelLoadError, match=message):
        VersionManifest.read(tmp_path)


def test_a_missing_or_unreadable_file_is_refused_saying_so(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=f"cannot read {MANIFEST_FILE}"):
        VersionManifest.read(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text("[1, 2]")
    with pytest.raises(ModelLoadError, match="not a JSON object"):
        VersionManifest.read(tmp_path)
