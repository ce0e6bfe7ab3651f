"""What the rest of Instafly needs from a trained model: a differentiable score of RGB images.

`enhance` and `watch` depend only on this module. A `Scorer` takes a batch of RGB images as
float32 in [0, 255] at `input_size` x `input_size` (any preprocessing, such as VGG16's mean
subtraction, happens inside) and returns one predicted insta-bae score per image: the predicted
log(likes / followers), higher is better. It is differentiable with respect to the pixels.
The product's scorer (VGG16's convolutions, a global average pool and a small head) takes other
square sizes too, with the same weights: the edit search uses that to search on a smaller copy
(`enhance.search_size`); a scorer that takes only `input_size` needs that setting null.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from instaflyd.model.errors import NoModelError

if TYPE_CHECKING:
    import numpy as np
    import tensorflow as tf

    from instaflyd.config import Config


class Scorer(Protocol):
    version: int | None  # the model version, None for a scorer that is not a trained model
    input_size: int

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        """(N, input_size, input_size, 3) float32 RGB in [0, 255] -> (N,) float32 scores."""
        ...


def score_files(
    scorer: Scorer, paths: Sequence[Path], batch: int = 16, max_pixels: int | None = None
) -> np.ndarray:
    """The scores of image files, (N,) float32, decoding `batch` of them at a time; raises
    instaflyd.model.inputs.ImageReadError for a file that is not a readable image or has more
    than `max_pixels` (by default what capture accepts)."""
    import numpy as np

    from instaflyd.imaging import CAPTURED_MAX_PIXELS
    from instaflyd.model.inputs import load_images

    limit = max_pixels or CAPTURED_MAX_PIXELS

    return np.concatenate(
        [
            np.asarray(scorer(load_images(paths[start : start + batch], scorer.input_size, limit)))
            for start in range(0, len(paths), batch)
        ]
    )


MODEL_FALLBACK = "model.fallback"  # the repairs list's id while an older version stands in


def load_scorer(config: Config) -> Scorer:
    """The current (newest promoted) model as a Scorer; NoModelError when there is none.

    The error's message says what training still waits for (how many labelled posts, ...);
    TensorFlow is imported only when there is a model to load. A current version whose files
    are damaged (a truncated weights file) is passed over for the newest promoted version that
    loads, and that is said: an event, a log line and a repairs card.
    """
    from instaflyd import repairs
    from instaflyd.policy.training import training_plan
    from instaflyd.store import Database
    from instaflyd.store.events import record_event
    from instaflyd.store.versions import promoted_version_numbers
    from instaflyd.weights.status import weights_status

    with Database(config.db_path) as db:
        versions = promoted_version_numbers(db.conn)
        if not versions:
            weights = weights_status(config)
            status = training_plan(
                config, db.conn, weights_ok=weights.ok, weights_message=weights.message
            )
            hint = "; run 'instaflyd train'" if status.due else ""
            raise NoModelError(f"no model yet: {status.reason}{hint}")
        from instaflyd.model.errors import ModelLoadError
        from instaflyd.model.registry import load_version

        failures: list[str] = []
        for version in versions:
            try:
                scorer = load_version(config, version)
            except ModelLoadError as exc:
                if len(versions) == 1:
                    raise  # nothing to fall back on: its own reason
                failures.append(f"v{version}: {exc}")
                continue
            if not failures:
                repairs.resolve(MODEL_FALLBACK)
                return scorer
            message = (
                f"Model version {versions[0]} cannot be loaded ({failures[0]}); photos are"
                f" enhanced with version {version}, the newest promoted version that loads."
            )
            record_event(db, "worker", "warning", "model_fallback", message, echo=True)
            repairs.report(
                MODEL_FALLBACK,
                "warning",
                message,
                "Train a new version (Model, Train now) to replace the damaged one; a backup"
                " restore also brings its files back.",
                title="An older model stands in for a damaged one",
            )
            return scorer
    raise ModelLoadError("no promoted model version can be loaded: " + "; ".join(failures)[:1000])
