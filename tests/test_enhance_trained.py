"""Enhancement with a small trained model: the real `load_scorer` and the real commands.

The generated training set's like rate follows brightness (see support_model), so the trained
model prefers brighter photos, and the edits it asks for brighten a dull one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli, write_config
from PIL import Image
from support_enhance import encode, photo_like
from support_model import TINY_MODEL, tiny_config

from instaflyd import cli
from instaflyd.config import Config
from instaflyd.enhance.pipeline import enhance_file
from instaflyd.model.scoring import load_scorer

JSON_KEYS = ["input", "output", "score_before", "score_after", "params", "seconds"]


@pytest.fixture
def trained(trained_data_dir: Path) -> Config:
    """The session's tiny model v1 (read only: outputs go to each test's own folder)."""
    return tiny_config(trained_data_dir)


@pytest.fixture
def config_file(tmp_path: Path, trained: Config) -> Path:
    """A config file for the commands: the tiny model's settings and its data dir."""
    return write_config(
        tmp_path / "instafly.yaml", {**TINY_MODEL, "data_dir": str(trained.data_dir)}
    )


def dull_photo(path: Path, height: int = 180, width: int = 240, seed: int = 9) -> Path:
    """A darkish photo, so that there is room to brighten it."""
    pixels = (photo_like(height, width, seed) * 0.6).astype(np.uint8)
    path.write_bytes(encode(Image.fromarray(pixels), "JPEG", quality=95))
    return path


def mean_brightness(path: Path) -> float:
    with Image.open(path) as image:
        return float(np.asarray(image.convert("L")).mean())


@pytest.mark.slow
def test_the_enhance_command_raises_the_score(tmp_path: Path, config_file: Path) -> None:
    photo = dull_photo(tmp_path / "dull.jpg")

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
    assert sidecar["score_after"] == entry["score_after"]


@pytest.mark.slow
def test_score_and_enhance_agree_on_a_photo_and_its_result(
    tmp_path: Path, config_file: Path
) -> None:
    """`score` and `enhance` see a photo the same way (one resize rule), so their numbers match."""
    photo = dull_photo(tmp_path / "dull.jpg", height=900, width=1200)
    [entry] = json.loads(
        run_cli("enhance", photo, "-o", tmp_path, "--json", config=config_file).stdout
    )
    scored = json.loads(
        run_cli("score", photo, entry["output"], "--json", config=config_file).stdout
    )
    assert [s["score"] for s in scored] == pytest.approx(
        [entry["score_before"], entry["score_after"]], abs=1e-4
    )


@pytest.mark.parametrize("mode", ["edits", "pixels"])
def test_both_modes_raise_the_score(tmp_path: Path, trained: Config, mode: str) -> None:
    scorer = load_scorer(trained)
    result = enhance_file(dull_photo(tmp_path / "dull.jpg"), None, scorer, trained, mode, 20)
    assert result.score_after > result.score_before, result
    assert result.model_version == 1
    with Image.open(result.output) as out:
        assert out.size == (240, 180)


def test_json_lists_each_photo_and_the_bad_one_is_reported(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = dull_photo(tmp_path / "a.jpg", 90, 120)
    also = tmp_path / "b.png"
    also.write_bytes(encode(Image.open(dull_photo(tmp_path / "b.jpg", 50, 70, seed=3)), "PNG"))
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    out = tmp_path / "out"

    code = cli.main(
        ["--config", str(config_file), "enhance", str(good), str(bad), str(also), "-o", str(out),
         "--steps", "8", "--json"]
    )  # fmt: skip

    captured = capsys.readouterr()
    assert code == 1
    assert captured.err == f"instaflyd: {bad}: not an image: the file is a text document\n"
    entries = json.loads(captured.out)
    assert [list(entry) for entry in entries] == [JSON_KEYS] * 2
    assert [(e["input"], e["output"]) for e in entries] == [
        (str(good), str(out / "a.instafly.jpg")),
        (str(also), str(out / "b.instafly.jpg")),
    ]
    assert all(e["score_after"] > e["score_before"] for e in entries)
    assert sorted(p.name for p in out.iterdir()) == [
        "a.instafly.jpg", "a.instafly.json", "b.instafly.jpg", "b.instafly.json"
    ]  # fmt: skip


def test_enhance_prints_one_line_per_photo(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = dull_photo(tmp_path / "a.jpg", 90, 120)
    args = ["--config", str(config_file), "enhance", str(photo), "--mode", "pixels"]
    assert cli.main([*args, "--steps", "9"]) == 0
    sidecar = json.loads((tmp_path / "a.instafly.json").read_text())
    assert capsys.readouterr().out == (
        f"{photo} -> {tmp_path / 'a.instafly.jpg'}: score {sidecar['score_before']:.4f}"
        f" -> {sidecar['score_after']:.4f} in {sidecar['seconds']:.1f} s\n"
    )
    assert (sidecar["mode"], sidecar["steps"], sidecar["model_version"]) == ("pixels", 9, 1)


def test_generate_grows_a_picture_the_model_likes(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "dream.jpg"
    args = ["--config", str(config_file), "generate", "-o", str(target), "--steps", "9"]
    assert cli.main([*args, "--seed", "2"]) == 0
    line = capsys.readouterr().out
    found = re.fullmatch(
        rf"{re.escape(str(target))}: 64x64, score (\S+) \(noise\) -> (\S+)\n", line
    )
    assert found is not None, line
    assert float(found[2]) > float(found[1])
    with Image.open(target) as image:
        assert (image.format, image.size) == ("JPEG", (64, 64))
