"""`edits` and `pixels` raise the score at the photo's full size; outputs never overwrite."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms
from support_enhance import (
    BrightColourfulScorer,
    TinyCnnScorer,
    assert_upright,
    encode,
    marked,
    photo_like,
)

from instaflyd.config import Config, build_config
from instaflyd.enhance import filters
from instaflyd.enhance.edits import EditSearch
from instaflyd.enhance.noise import generate_file
from instaflyd.enhance.pipeline import compiled_for, enhance_file, model_copy, score_pixels

EDIT_KEYS = set(filters.EDIT_NAMES)


@pytest.fixture(scope="module")
def config() -> Config:
    return build_config({"model": {"input_size": 64}, "enhance": {"steps": 30}})


@pytest.fixture(scope="module")
def analytic() -> BrightColourfulScorer:
    return BrightColourfulScorer(64)


@pytest.fixture(scope="module")
def cnn() -> TinyCnnScorer:
    return TinyCnnScorer(32)


def write_photo(path: Path, height: int = 200, width: int = 300, seed: int = 0) -> Path:
    path.write_bytes(encode(Image.fromarray(photo_like(height, width, seed)), "JPEG", quality=95))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_edits_raise_the_analytic_score_at_full_size(
    tmp_path: Path, config: Config, analytic: BrightColourfulScorer
) -> None:
    photo = write_photo(tmp_path / "beach.jpg")
    original = sha256(photo)
    seen: list[tuple[int, int]] = []

    result = enhance_file(
        photo, None, analytic, config, progress=lambda d, t, s: seen.append((d, t))
    )

    assert result.output == tmp_path / "beach.instafly.jpg"
    assert result.sidecar == tmp_path / "beach.instafly.json"
    assert result.score_after > result.score_before + 0.03, result
    with Image.open(result.output) as out:
        assert (out.format, out.size) == ("JPEG", (300, 200))
    assert set(result.params) == EDIT_KEYS
    assert any(abs(value) > 0.01 for value in result.params.values())
    assert 1 <= result.steps <= 30 and seen[-1] == (result.steps, 30)
    assert sha256(photo) == original  # the original is never modified

    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar == {
        "status": "done",
        "input": str(photo),
        "output": str(result.output),
        "score_before": result.score_before,
        "score_after": result.score_after,
        "params": result.params,
        "seconds": result.seconds,
        "mode": "edits",
        "model_version": None,
        "steps": result.steps,
        "width": 300,
        "height": 200,
        "instafly_version": sidecar["instafly_version"],
    }
    # The reported score is the score of the file that was written.
    with Image.open(result.output) as out:
        written = np.asarray(out.convert("RGB"))
    assert score_pixels(analytic, model_copy(written, 64)) == pytest.approx(result.score_after)


def test_pixels_raise_the_analytic_score_at_full_size(
    tmp_path: Path, config: Config, analytic: BrightColourfulScorer
) -> None:
    photo = write_photo(tmp_path / "city.jpg", 150, 240)
    result = enhance_file(photo, tmp_path / "out", analytic, config, mode="pixels", steps=12)
    assert result.output == tmp_path / "out" / "city.instafly.jpg"
    assert result.score_after > result.score_before + 0.05, result
    assert result.steps == 12 and result.params["octaves"] == 3
    with Image.open(result.output) as out:
        assert out.size == (240, 150)
    assert json.loads(result.sidecar.read_text())["mode"] == "pixels"


@pytest.mark.parametrize("mode", ["edits", "pixels"])
@pytest.mark.slow
def test_both_modes_raise_a_cnn_score(
    tmp_path: Path, config: Config, cnn: TinyCnnScorer, mode: str
) -> None:
    photo = write_photo(tmp_path / "cat.jpg", 120, 90)
    result = enhance_file(photo, tmp_path, cnn, config, mode=mode, steps=20)
    assert result.score_after > result.score_before, result
    assert result.model_version == 7
    with Image.open(result.output) as out:
        assert out.size == (90, 120)


def test_name_clashes_get_a_number_and_nothing_is_overwritten(
    tmp_path: Path, config: Config, analytic: BrightColourfulScorer
) -> None:
    photo = write_photo(tmp_path / "dog.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "dog-2.instafly.json").write_text("somebody else's sidecar")

    first = enhance_file(photo, out, analytic, config, steps=3)
    kept = sha256(first.output), sha256(first.sidecar)
    second = enhance_file(photo, out, analytic, config, steps=3)

    assert (first.output.name, first.sidecar.name) == ("dog.instafly.jpg", "dog.instafly.json")
    assert (second.output.name, second.sidecar.name) == (
        "dog-3.instafly.jpg",
        "dog-3.instafly.json",
    )
    assert (sha256(first.output), sha256(first.sidecar)) == kept
    assert (out / "dog-2.instafly.json").read_text() == "somebody else's sidecar"
    assert not (out / "dog-2.instafly.jpg").exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "dog-2.instafly.json",
        "dog-3.instafly.jpg",
        "dog-3.instafly.json",
        "dog.instafly.jpg",
        "dog.instafly.json",
    ]


def test_rotated_photo_comes_out_upright_with_its_metadata(
    tmp_path: Path, config: Config, analytic: BrightColourfulScorer
) -> None:
    stored = Image.fromarray(marked(120, 80)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "TestCam"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    photo = tmp_path / "portrait.jpg"
    photo.write_bytes(encode(stored, "JPEG", quality=95, exif=exif.tobytes(), icc_profile=icc))

    result = enhance_file(photo, None, analytic, config, steps=2)

    with Image.open(result.output) as out:
        assert out.getexif()[ExifTags.Base.Orientation] == 1
        assert out.getexif()[ExifTags.Base.Make] == "TestCam"
        assert out.info["icc_profile"] == icc
        # Two small edit steps: the markers keep their colours within a generous margin.
        assert_upright(np.asarray(out.convert("RGB")), 120, 80, tolerance=40)


def test_the_gradient_step_is_compiled_once_per_scorer(
    tmp_path: Path, config: Config, analytic: BrightColourfulScorer
) -> None:
    for seed in (1, 2):
        enhance_file(write_photo(tmp_path / f"p{seed}.jpg", seed=seed), None, analytic, config)
    search = compiled_for(EditSearch, analytic)
    assert search is compiled_for(EditSearch, analytic)
    assert search._step.experimental_get_tracing_count() == 1


@pytest.mark.slow
def test_generate_grows_a_higher_scoring_image_from_noise(
    tmp_path: Path, config: Config, analytic: BrightColourfulScorer
) -> None:
    made = generate_file(tmp_path / "dream.jpg", analytic, config, steps=9, seed=4)
    assert made.score > made.score_start + 0.05
    with Image.open(made.output) as out:
        assert (out.format, out.size) == ("JPEG", (64, 64))
    again = generate_file(tmp_path / "again.jpg", analytic, config, steps=9, seed=4)
    assert again.output.read_bytes() == made.output.read_bytes()  # the seed makes it repeatable


def test_rejected_input_writes_nothing(
    tmp_path: Path, config: Config, analytic: BrightColourfulScorer
) -> None:
    from instaflyd.enhance.pipeline import RejectedImage

    notes = tmp_path / "notes.jpg"
    notes.write_text("not a photo")
    with pytest.raises(RejectedImage, match=r"^not an image: the file is a text document$"):
        enhance_file(notes, None, analytic, config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.jpg"]


def test_jpeg_quality_comes_from_the_config(
    tmp_path: Path, analytic: BrightColourfulScorer
) -> None:
    photo = write_photo(tmp_path / "q.jpg")
    sizes = []
    for quality in (40, 95):
        config = build_config({"model": {"input_size": 64}, "enhance": {"jpeg_quality": quality}})
        result = enhance_file(photo, tmp_path / str(quality), analytic, config, steps=1)
        sizes.append(result.output.stat().st_size)
        with Image.open(io.BytesIO(result.output.read_bytes())) as out:
            assert out.size == (300, 200)
    assert sizes[0] < sizes[1] * 0.6
