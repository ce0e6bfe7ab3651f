"""Fixtures shared by every test: temp data dirs and configs that never touch the user's files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import write_config


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep $INSTAFLY_CONFIG and ~/.config out of every test."""
    monkeypatch.delenv("INSTAFLY_CONFIG", raising=False)
    monkeypatch.setattr("instaflyd.config.SYSTEM_CONFIG", tmp_path / "no-system-config.yaml")
    monkeypatch.setattr("instaflyd.config.USER_CONFIG", tmp_path / "no-user-config.yaml")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def config_file(tmp_path: Path, data_dir: Path) -> Path:
    """A small config for tests: temp data dir, input size 64, no ImageNet weights."""
    return write_config(
        tmp_path / "instafly.yaml",
        {
            "data_dir": str(data_dir),
            "model": {"input_size": 64, "weights": "none"},
            "watch": {"drop_dir": "drop", "output_dir": "enhanced"},
        },
    )
