"""Enhancement with a small trained model: the real `load_scorer`, the real command.

The generated training set's like rate follows brightness (see support_model), so the trained
model prefers brighter photos and the edits it asks for should brighten.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli, write_config
from PIL import Image
from support_enhance import encode, photo_like

from instaflyd.config import Config
from instaflyd.enhance import enhance_file
from instaflyd.model.scoring import load_scorer

# Skipped only until the model (issue 4, tests/support_model.py) is merged into this branch.
support_model = pytest.importorskip("support_model", reason="the trained model has not landed")

JSON_KEYS = ["input", "output", "score_before", "score_after", "params", "seconds"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Config:
    config = support_model.tiny_config(tmp_path_factory.mktemp("trained"))
    support_model.train_tiny_model(config)
    return config


def dull_photo(path: Path) -> Path:
    """A darkish photo, so that there is room to brighten it."""
    pixels = (photo_like(180, 240, seed=9) * 0.6).astype(np.uint8)
    path.write_bytes(encode(Image.fromarray(pixels), "JPEG", quality=95))
    return path


def mean_brightness(path: Path) -> float:
    with Image.open(path) as image:
        return float(np.asarray(image.convert("L")).mean())


def test_the_enhance_command_raises_a_trained_models_score(tmp_path: Path, trained: Config) -> None:
    photo = dull_photo(tmp_path / "dull.jpg")
    config_file = write_config(
        tmp_path / "instafly.yaml", {**support_model.TINY_MODEL, "data_dir": str(trained.data_dir)}
    )

    result = run_cli("enhance", photo, "-o", tmp_path / "out", "--json", config=config_file)

    assert result.returncode == 0, result.stderr
    assert "score:" not in result.stderr  # no progress bar when not on a terminal
    [entry] = json.loads(result.stdout)
    assert list(entry) == JSON_KEYS
    assert entry["output"] == str(tmp_path / "out" / "dull.instafly.jpg")
    assert entry["score_after"] > entry["score_before"]
    with Image.open(entry["output"]) as out:
        assert out.size == (240, 180)
    assert mean_brightness(Path(entry["output"])) > mean_brightness(photo) + 2
    sidecar = json.loads((tmp_path / "out" / "dull.instafly.json").read_text())
    assert (sidecar["status"], sidecar["model_version"], sidecar["mode"]) == ("done", 1, "edits")


@pytest.mark.parametrize("mode", ["edits", "pixels"])
def test_both_modes_raise_a_trained_models_score(
    tmp_path: Path, trained: Config, mode: str
) -> None:
    scorer = load_scorer(trained)
    result = enhance_file(dull_photo(tmp_path / "dull.jpg"), None, scorer, trained, mode, 20)
    assert result.score_after > result.score_before, result
    assert result.model_version == 1
    with Image.open(result.output) as out:
        assert out.size == (240, 180)
