"""The `enhance` section's search settings: search size, stop rule, step size; bad values are
named with their allowed range."""

from __future__ import annotations

from pathlib import Path

import pytest

from instaflyd.config import ConfigError, build_config, load_config


def test_the_defaults_search_a_smaller_copy_and_stop_after_two_steps_without_gain() -> None:
    enhance = build_config({}).enhance
    assert (enhance.search_size, enhance.patience, enhance.min_gain, enhance.learning_rate) == (
        160,
        2,
        0.05,
        0.1,
    )


def test_the_old_search_is_one_setting_away() -> None:
    old = {"search_size": None, "patience": 4, "min_gain": 0.05, "learning_rate": 0.1}
    enhance = build_config({"enhance": old}).enhance
    assert (enhance.search_size, enhance.patience) == (None, 4)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("search_size: 16", "search_size: must be from 32 to 1024 (got 16)"),
        ("search_size: 4096", "search_size: must be from 32 to 1024 (got 4096)"),
        ("search_size: big", "search_size: must be a whole number (got 'big')"),
        ("patience: 0", "patience: must be from 1 to 1000 (got 0)"),
        ("min_gain: 2", "min_gain: must be from 0 to 1 (got 2)"),
        ("learning_rate: 0", "learning_rate: must be greater than 0 and at most 10 (got 0)"),
    ],
)
def test_bad_search_settings_name_the_allowed_range(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "instafly.yaml"
    path.write_text(f"enhance:\n  {text}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [f"{path} line 2: enhance -> {expected}"]
