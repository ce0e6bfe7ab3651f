"""Enhance one photo file, start to finish: the entry point of `instaflyd enhance` and the worker.

    result = enhance_file(path, output_dir, scorer, config)

reads the photo upright in RGB (`io`), shrinks a copy to the search size (`enhance.search_size`,
at most the model's input size), finds edits (`edits`) that raise the model's score of that copy
(or, in `pixels` mode, a pixel change of a copy at the model's input size), applies them to the
full-resolution original, writes `<stem>.instafly.jpg` and its sidecar `<stem>.instafly.json`
(`instaflyd.jobs.outputs`), and scores the written JPEG. The scores recorded and shown are
always the model's at its own input size: when the search ran at that size, the score before is
the one its first step computed (the unedited copy); otherwise it is one more forward pass. An
input that cannot be used raises `RejectedImage`.
The compiled gradient steps are kept for the last scorer used, so a worker that enhances many
photos with the same model compiles them once; `warm_up` compiles them before the first photo
(an enhancer started when an upload begins does it while the photo is on its way).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import tensorflow as tf
from PIL import Image

from instaflyd import __version__
from instaflyd.config import Config
from instaflyd.enhance import filters
from instaflyd.enhance.edits import EditSearch, Progress
from instaflyd.enhance.io import RejectedImage, encode_jpeg, open_image
from instaflyd.enhance.pixels import PixelAscent, add_change, settings
from instaflyd.imaging import open_image as open_image_file
from instaflyd.jobs import outputs
from instaflyd.model.inputs import square_copy
from instaflyd.model.scoring import Scorer

Mode = Literal["edits", "pixels"]
Method = TypeVar("Method", EditSearch, PixelAscent)

__all__ = [
    "EnhanceResult",
    "RejectedImage",
    "compiled_for",
    "enhance_file",
    "forget_compiled",
    "model_copy",
    "score_pixels",
    "search_size",
    "warm_up",
]


@dataclass(frozen=True)
class EnhanceResult:
    input: Path
    output: Path
    sidecar: Path
    mode: Mode
    score_before: float
    score_after: float
    params: dict[str, float]
    model_version: int | None
    steps: int  # gradient steps actually taken
    seconds: float
    width: int
    height: int

    def as_json(self) -> dict[str, Any]:
        """The entry `enhance --json` prints for this photo."""
        return {
            "input": str(self.input),
            "output": str(self.output),
            "score_before": self.score_before,
            "score_after": self.score_after,
            "params": self.params,
            "seconds": self.seconds,
        }

    def sidecar_record(self) -> outputs.Sidecar:
        """What `<stem>.instafly.json` says about the photo."""
        return outputs.Sidecar(
            "done",
            str(self.input),
            enhancement=outputs.Enhancement(
                output=str(self.output),
                score_before=self.score_before,
                score_after=self.score_after,
                params=self.params,
                seconds=self.seconds,
                mode=self.mode,
                model_version=self.model_version,
                steps=self.steps,
                width=self.width,
                height=self.height,
                instafly_version=__version__,
            ),
        )


def enhance_file(
    path: Path,
    output_dir: Path | None,
    scorer: Scorer,
    config: Config,
    mode: Mode | None = None,
    steps: int | None = None,
    progress: Progress | None = None,
    *,
    names: tuple[Path, Path] | None = None,
) -> EnhanceResult:
    """Enhance `path` into `output_dir` (default: beside it); RejectedImage if it is unusable.

    `names` is the (photo, sidecar) pair the caller reserved (the worker records it before
    anything is written); without it, the first free pair in `output_dir`."""
    started = time.monotonic()
    mode = mode or config.enhance.mode
    steps = steps or config.enhance.steps
    if mode not in ("edits", "pixels"):
        raise ValueError(f"unknown enhancement mode {mode!r}; use edits or pixels")
    photo = open_image(
        path, max_pixels=config.enhance.max_pixels, max_file_mb=config.enhance.max_file_mb
    )
    small = model_copy(photo.pixels, scorer.input_size)
    score_before: float | None = None
    if mode == "edits":
        size = search_size(config, scorer)
        searched = small if size == scorer.input_size else model_copy(photo.pixels, size)
        found = compiled_for(EditSearch, scorer).run(
            searched,
            steps,
            progress,
            patience=config.enhance.patience,
            min_gain=config.enhance.min_gain,
            learning_rate=config.enhance.learning_rate,
        )
        if size == scorer.input_size:  # its first step scored the unedited copy
            score_before = found.score_before
        enhanced = filters.apply_full(photo.pixels, found.raw)
        params, taken = filters.describe(found.raw), found.steps
    else:  # pixels
        dreamed = compiled_for(PixelAscent, scorer).ascend(
            small, steps, original=small, progress=progress
        )
        enhanced = add_change(photo.pixels, small[0].numpy(), dreamed[0].numpy())
        params, taken = settings(), steps
    jpeg = encode_jpeg(
        enhanced,
        quality=config.enhance.jpeg_quality,
        exif=photo.exif,
        icc_profile=photo.icc_profile,
    )
    # Scored as the file will be read; its own output, as large as the photo it came from.
    with open_image_file(jpeg, config.enhance.max_pixels) as encoded:
        written = encoded.convert("RGB")
    photo_path, sidecar_path = names or outputs.output_paths(output_dir or path.parent, path.stem)
    result = EnhanceResult(
        input=path,
        output=photo_path,
        sidecar=sidecar_path,
        mode=mode,
        score_before=score_pixels(scorer, small) if score_before is None else score_before,
        score_after=score_pixels(scorer, model_copy(written, scorer.input_size)),
        params=params,
        model_version=scorer.version,
        steps=taken,
        seconds=round(time.monotonic() - started, 3),
        width=photo.width,
        height=photo.height,
    )
    outputs.write_outputs(photo_path, jpeg, sidecar_path, result.sidecar_record())
    return result


def search_size(config: Config, scorer: Scorer) -> int:
    """The side of the copy the edits are searched on: `enhance.search_size`, at most the
    model's input size (the model's when it is null)."""
    wanted = config.enhance.search_size
    return scorer.input_size if wanted is None else min(wanted, scorer.input_size)


def model_copy(pixels: np.ndarray | Image.Image, size: int) -> tf.Tensor:
    """(H, W, 3) uint8 or an RGB image -> (1, size, size, 3) float32 in 0..255, resized exactly
    as the model's training and `instaflyd score` inputs are."""
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    return tf.constant(square_copy(image, size).astype(np.float32)[None])


def score_pixels(scorer: Scorer, small: tf.Tensor) -> float:
    """The scorer's score of one (1, S, S, 3) copy."""
    return float(scorer(small)[0])


_cache: dict[type, tuple[Scorer, Any]] = {}


def compiled_for(kind: type[Method], scorer: Scorer) -> Method:
    """The `kind` (EditSearch or PixelAscent) for this scorer, built once per scorer."""
    cached = _cache.get(kind)
    if cached is None or cached[0] is not scorer:
        cached = _cache[kind] = (scorer, kind(scorer))
    return cached[1]


def warm_up(scorer: Scorer, mode: Mode, size: int | None = None) -> float:
    """Trace and run `mode`'s gradient step once on a grey copy (of `size`, the search size;
    by default the model's input size), so the first photo does not wait for the
    compilation; returns the seconds it took."""
    started = time.monotonic()
    grey = tf.fill((1, scorer.input_size, scorer.input_size, 3), 128.0)
    if mode == "edits":
        side = size or scorer.input_size
        compiled_for(EditSearch, scorer).run(tf.fill((1, side, side, 3), 128.0), 1)
    else:
        compiled_for(PixelAscent, scorer).ascend(grey, 1, original=grey)
    score_pixels(scorer, grey)
    return time.monotonic() - started


def forget_compiled() -> None:
    """Drop the compiled steps and the scorer they hold, so that its memory can be freed."""
    _cache.clear()
