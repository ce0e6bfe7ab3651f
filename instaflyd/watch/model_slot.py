"""The worker's model: loaded when there is work, replaced by a newer promoted version, freed when
the worker has been idle for `watch.idle_unload_seconds` (VGG16 holds hundreds of megabytes)."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

from instaflyd.config import Config
from instaflyd.model.scoring import Scorer

log = logging.getLogger("instafly.watch.model")


class ModelSlot:
    """At most one loaded Scorer, with the time it was last used."""

    def __init__(
        self,
        config: Config,
        loader: Callable[[Config], Scorer],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._loader = loader
        self._clock = clock
        self._scorer: Scorer | None = None
        self._last_used = 0.0

    @property
    def version(self) -> int | None:
        """The loaded model's version; None when nothing is loaded."""
        return self._scorer.version if self._scorer is not None else None

    def scorer(self, wanted_version: int) -> Scorer:
        """The model of `wanted_version` (the current one), loading it if needed.

        Raises what the loader raises (NoModelError when the model cannot be found).
        """
        if self._scorer is not None and self._scorer.version != wanted_version:
            self.unload(f"version {wanted_version} was promoted")
        if self._scorer is None:
            started = self._clock()
            self._scorer = self._loader(self.config)
            log.info(
                "loaded model version %s in %.1f s", self._scorer.version, self._clock() - started
            )
        self._last_used = self._clock()
        return self._scorer

    def unload(self, why: str) -> bool:
        """Free the model's memory; False when nothing was loaded."""
        if self._scorer is None:
            return False
        version, self._scorer = self._scorer.version, None
        import keras  # loaded already: a model was in memory

        from instaflyd.enhance.pipeline import forget_compiled

        forget_compiled()  # the compiled gradient steps hold the model too
        keras.backend.clear_session()
        gc.collect()
        log.info("unloaded model version %s: %s", version, why)
        return True

    def unload_if_idle(self) -> bool:
        idle = self._clock() - self._last_used
        if self._scorer is None or idle < self.config.watch.idle_unload_seconds:
            return False
        return self.unload(f"idle for {idle:.0f} s")
