"""`instaflyd enhance` and `generate` on the command line: JSON, progress, failures."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from helpers import run_cli
from PIL import Image
from support_enhance import BrightColourfulScorer, encode, photo_like

from instaflyd import cli
from instaflyd.enhance.progress import terminal_progress
from instaflyd.model import scoring


def no_model_message(config_file: Path) -> str:
    from instaflyd.config import load_config

    with pytest.raises(scoring.NoModelError) as caught:
        scoring.load_scorer(load_config(config_file))
    return str(caught.value)


def test_without_a_model_enhance_and_generate_say_why(tmp_path: Path, config_file: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(encode(Image.fromarray(photo_like(60, 80)), "JPEG"))
    expected = f"instaflyd: {no_model_message(config_file)}\n"
    for args in (("enhance", photo), ("generate", "-o", tmp_path / "dream.jpg")):
        result = run_cli(*args, config=config_file)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "instafly.yaml", "photo.jpg"]


def test_steps_must_be_positive(tmp_path: Path, config_file: Path) -> None:
    result = run_cli("enhance", tmp_path / "x.jpg", "--steps", "0", config=config_file)
    assert (result.returncode, result.stderr) == (2, "instaflyd: --steps must be at least 1\n")


@pytest.fixture
def analytic_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until a trained model can be built in a test, the commands get the analytic scorer."""
    monkeypatch.setattr(scoring, "load_scorer", lambda config: BrightColourfulScorer(64))


def test_enhance_json_lists_each_photo_and_reports_the_bad_one(
    tmp_path: Path,
    config_file: Path,
    analytic_model: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = tmp_path / "a.jpg"
    good.write_bytes(encode(Image.fromarray(photo_like(90, 120)), "JPEG"))
    also = tmp_path / "b.png"
    also.write_bytes(encode(Image.fromarray(photo_like(50, 70, seed=3)), "PNG"))
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    out = tmp_path / "out"

    code = cli.main(
        ["--config", str(config_file), "enhance", str(good), str(bad), str(also), "-o", str(out),
         "--steps", "5", "--json"]
    )  # fmt: skip

    captured = capsys.readouterr()
    assert code == 1
    assert captured.err == f"instaflyd: {bad}: not an image: the file is a text document\n"
    entries = json.loads(captured.out)
    assert [list(entry) for entry in entries] == [
        ["input", "output", "score_before", "score_after", "params", "seconds"]
    ] * 2
    assert [(e["input"], e["output"]) for e in entries] == [
        (str(good), str(out / "a.instafly.jpg")),
        (str(also), str(out / "b.instafly.jpg")),
    ]
    assert all(e["score_after"] > e["score_before"] for e in entries)
    assert sorted(p.name for p in out.iterdir()) == [
        "a.instafly.jpg", "a.instafly.json", "b.instafly.jpg", "b.instafly.json"
    ]  # fmt: skip


def test_enhance_prints_one_line_per_photo(
    tmp_path: Path,
    config_file: Path,
    analytic_model: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(encode(Image.fromarray(photo_like(90, 120)), "JPEG"))
    assert cli.main(["--config", str(config_file), "enhance", str(photo), "--mode", "pixels"]) == 0
    sidecar = json.loads((tmp_path / "a.instafly.json").read_text())
    line = capsys.readouterr().out
    assert line == (
        f"{photo} -> {tmp_path / 'a.instafly.jpg'}: score {sidecar['score_before']:.4f}"
        f" -> {sidecar['score_after']:.4f} in {sidecar['seconds']:.1f} s\n"
    )
    assert sidecar["mode"] == "pixels" and sidecar["steps"] == 50


def test_generate_writes_the_file(
    tmp_path: Path,
    config_file: Path,
    analytic_model: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "dream.jpg"
    args = ["--config", str(config_file), "generate", "-o", str(target), "--steps", "6"]
    assert cli.main([*args, "--seed", "2"]) == 0
    assert capsys.readouterr().out.startswith(f"{target}: 64x64, score ")
    with Image.open(target) as image:
        assert (image.format, image.size) == ("JPEG", (64, 64))


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with terminal_progress("photo.jpg") as progress:
        assert progress is None  # pytest's captured stderr is not a terminal

    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with terminal_progress("photo.jpg") as progress:
        assert progress is not None
        for step in range(1, 4):
            progress(step, 10, 0.5 + step / 10)
    drawn = terminal.getvalue()
    assert drawn.startswith("photo.jpg\n")
    assert "3/10" in drawn and "score: 0.8000" in drawn
    assert capsys.readouterr().out == ""  # stdout stays free for --json
