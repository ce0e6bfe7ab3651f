"""The cheaper edit search: a smaller copy searched, the stop rule, the score before reused.

- With `enhance.search_size` below the model's input size the gradient steps see the smaller
  copy, while the scores recorded (before and after) are still the model's at its own size, and
  the written photo scores at least as well as the original there.
- The stop rule (`patience`, `min_gain`) ends the search when the gain per step runs out, and
  the search never takes more than `steps`.
- When the search runs at the model's size, the score before is the one its first step
  computed: one forward pass fewer, equal to a separate pass within 1e-5.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from support_enhance import BrightColourfulScorer, TinyCnnScorer, encode, photo_like

from instaflyd.config import Config, build_config
from instaflyd.enhance.edits import EditSearch, converged
from instaflyd.enhance.pipeline import enhance_file, model_copy, score_pixels


class Recording:
    """Wraps a scorer; notes the size of every call, traced (inside the compiled gradient step)
    or eager (a forward pass of its own)."""

    def __init__(self, scorer: object, input_size: int) -> None:
        self.scorer = scorer
        self.input_size = input_size
        self.version = None
        self.traced: list[int] = []
        self.eager: list[int] = []

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        (self.eager if tf.executing_eagerly() else self.traced).append(int(images.shape[1]))
        return self.scorer(images)


def config_with(input_size: int = 64, **enhance: object) -> Config:
    return build_config({"model": {"input_size": input_size}, "enhance": {"steps": 20, **enhance}})


def write_photo(path: Path, height: int = 150, width: int = 200, black: bool = False) -> Path:
    pixels = photo_like(height, width, seed=4)
    if black:
        pixels[: height // 3] = 0  # a black band: the search's clamp at black is exercised
    path.write_bytes(encode(Image.fromarray(pixels), "JPEG", quality=95))
    return path


def model_score_of(scorer: object, path: Path, size: int) -> float:
    with Image.open(path) as image:
        return score_pixels(scorer, model_copy(image.convert("RGB"), size))


def test_the_search_sees_the_smaller_copy_and_the_scores_stay_at_the_models_size(
    tmp_path: Path,
) -> None:
    photo = write_photo(tmp_path / "field.jpg")
    scorer = Recording(BrightColourfulScorer(64), 64)

    result = enhance_file(photo, tmp_path / "out", scorer, config_with(search_size=32))

    assert set(scorer.traced) == {32}  # the gradient step saw only the 32 px copy
    assert scorer.eager == [64, 64]  # before and after, each at the model's 64 px
    assert result.score_before == pytest.approx(model_score_of(scorer.scorer, photo, 64))
    assert result.score_after == pytest.approx(model_score_of(scorer.scorer, result.output, 64))
    assert result.score_after > result.score_before + 0.02, result


@pytest.mark.parametrize("search_size", [32, 48])
def test_a_cnn_searched_small_still_scores_the_written_photo_higher_at_full_size(
    tmp_path: Path, search_size: int
) -> None:
    photo = write_photo(tmp_path / "street.jpg", 120, 160)
    scorer = Recording(TinyCnnScorer(None, seed=5), 64)

    result = enhance_file(photo, tmp_path, scorer, config_with(search_size=search_size, patience=4))

    assert set(scorer.traced) == {search_size}
    assert result.score_before == pytest.approx(model_score_of(scorer.scorer, photo, 64), abs=1e-5)
    assert result.score_after >= result.score_before, result
    assert any(abs(value) > 0.001 for value in result.params.values())


def test_a_search_size_above_the_models_is_the_models() -> None:
    scorer = Recording(BrightColourfulScorer(64), 64)
    from instaflyd.enhance.pipeline import search_size

    assert search_size(config_with(search_size=224), scorer) == 64
    assert search_size(config_with(search_size=None), scorer) == 64
    assert search_size(config_with(search_size=48), scorer) == 48


def test_the_stop_rule_compares_the_last_steps_gain_with_the_whole_gain() -> None:
    # best objective after each step; the search started at 0.0
    assert not converged([1.0, 2.0], 0.0, patience=2, min_gain=0.05)  # too few steps to judge
    assert not converged([1.0, 2.0, 3.0], 0.0, patience=2, min_gain=0.05)  # 2 of 3 gained lately
    assert converged([1.0, 2.0, 2.0, 2.05], 0.0, patience=2, min_gain=0.05)  # 0.05 of 2.05
    assert not converged([1.0, 2.0, 2.0, 2.05], 0.0, patience=1, min_gain=0.01)  # 0.05 > 0.0205
    assert converged([1.0, 2.0, 2.0, 2.0, 2.0, 2.0], 0.0, patience=4, min_gain=0.0)


def test_the_search_stops_by_the_rule_and_never_goes_past_the_cap() -> None:
    scorer = BrightColourfulScorer(48)
    small = model_copy(photo_like(48, 48, seed=2), 48)
    search = EditSearch(scorer)
    seen: list[int] = []

    # A step that gains less than everything gained so far ends a 1-step patience at once.
    stopped = search.run(small, 30, lambda done, planned, score: seen.append(done), patience=1,
                         min_gain=1.0)  # fmt: skip
    # No gain is small enough for min_gain 0 while the score still climbs: the cap ends it.
    capped = search.run(small, 7, patience=50, min_gain=0.0)
    # The old rule: 4 steps of patience.
    old = search.run(small, 50, patience=4, min_gain=0.05)

    assert (stopped.steps, seen) == (2, [1, 2])
    assert capped.steps == 7
    assert 5 <= old.steps <= 50
    assert capped.score > stopped.score > stopped.score_before


def test_enhance_file_takes_the_stop_rule_from_the_config(tmp_path: Path) -> None:
    photo = write_photo(tmp_path / "lake.jpg")
    scorer = BrightColourfulScorer(64)
    quick = enhance_file(photo, tmp_path, scorer, config_with(patience=1, min_gain=1.0))
    capped = enhance_file(photo, tmp_path, scorer, config_with(patience=50, min_gain=0.0, steps=9))
    assert (quick.steps, capped.steps) == (2, 9)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: BrightColourfulScorer(64), id="analytic"),
        pytest.param(lambda: TinyCnnScorer(None, seed=8), id="cnn"),
    ],
)
def test_the_score_before_comes_from_the_searchs_first_step(
    tmp_path: Path, make: Callable[[], object]
) -> None:
    photo = write_photo(tmp_path / "night.jpg", black=True)
    scorer = Recording(make(), 64)

    result = enhance_file(photo, tmp_path, scorer, config_with(search_size=None))

    assert scorer.eager == [64]  # the written photo only: "before" was not a pass of its own
    assert set(scorer.traced) == {64}
    separate = model_score_of(scorer.scorer, photo, 64)
    assert result.score_before == pytest.approx(separate, abs=1e-5)
    assert np.isfinite(result.score_after)
