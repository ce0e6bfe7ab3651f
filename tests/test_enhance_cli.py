"""`instaflyd enhance` and `generate` without a model, and the progress bar.

The commands with a trained model are in test_enhance_trained.py.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from helpers import run_cli
from PIL import Image
from support_enhance import encode, photo_like

from instaflyd.enhance.progress import terminal_progress
from instaflyd.model import scoring


def no_model_message(config_file: Path) -> str:
    from instaflyd.config import load_config

    with pytest.raises(scoring.NoModelError) as caught:
        scoring.load_scorer(load_config(config_file))
    return str(caught.value)


@pytest.mark.slow
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
