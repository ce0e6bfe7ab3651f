"""The `edits` mode: find the photo edits that raise the model's score of a small copy.

Gradient ascent (Adam) on the raw edit parameters of `filters`, maximising

    score(edited small copy) - penalty * sum(tanh(raw)^2)

The penalty keeps edits modest: its weight is `PENALTY` times the size of the score's gradient at
the unedited photo, so the trade-off is the same whatever units the model's score has (along the
first gradient, the optimum lies about half-way to the edits' limits). The search stops early when
the last `patience` steps together gained less than `min_gain` of what was gained so far (the
`enhance` section's `patience`, `min_gain` and `learning_rate`; `PATIENCE`, `MIN_GAIN` and
`LEARNING_RATE` are the values before they were settings), and returns the best parameters it
saw. The gradient step is compiled once per scorer and copy size, and reused for every photo.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from instaflyd.enhance import filters
from instaflyd.model.scoring import Scorer

Progress = Callable[[int, int, float], None]  # (steps done, steps planned, current score)

LEARNING_RATE = 0.1
PENALTY = 0.5
PATIENCE = 4
MIN_GAIN = 0.05


@dataclass(frozen=True)
class FoundEdits:
    raw: np.ndarray  # raw parameters; filters.describe() gives the edit values
    score_before: float  # the small copy's score, unedited
    score: float  # the small copy's score with the edits
    steps: int  # gradient steps taken


class EditSearch:
    """Gradient ascent on the edit parameters for one scorer; `run` once per photo."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.raw = tf.Variable(filters.identity(), name="edits")
        self.optimizer = keras.optimizers.Adam(LEARNING_RATE)
        self.optimizer.build([self.raw])
        self._fresh_state = [variable.numpy() for variable in self.optimizer.variables]
        self._step = tf.function(self.gradient_ascent_step)

    def compute_loss(self, small: tf.Tensor, penalty: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(objective, score) of the current parameters on the small copy."""
        score = self.scorer(filters.apply_small(small, self.raw))[0]
        return score - penalty * tf.reduce_sum(tf.square(tf.tanh(self.raw))), score

    def gradient_ascent_step(
        self, small: tf.Tensor, penalty: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """One Adam step; returns the parameters before it, their objective, score and gradient."""
        before = tf.identity(self.raw)
        with tf.GradientTape() as tape:
            objective, score = self.compute_loss(small, penalty)
        gradient = tape.gradient(objective, self.raw)
        self.optimizer.apply_gradients([(-gradient, self.raw)])
        return before, objective, score, gradient

    def run(
        self,
        small: tf.Tensor,
        steps: int,
        progress: Progress | None = None,
        *,
        patience: int = PATIENCE,
        min_gain: float = MIN_GAIN,
        learning_rate: float = LEARNING_RATE,
    ) -> FoundEdits:
        """Search from the identity for at most `steps` steps on a (1, S, S, 3) copy in 0..255;
        stop early by `converged(history, first, patience, min_gain)`."""
        self._reset()
        self.optimizer.learning_rate = learning_rate  # a variable: no new trace
        penalty = tf.constant(0.0)  # its gradient is zero at the identity anyway
        best_raw, best, first, score_before, best_score = None, -np.inf, 0.0, 0.0, 0.0
        history: list[float] = []
        for step in range(steps):
            raw, objective_t, score_t, gradient = self._step(small, penalty)
            objective, score = float(objective_t), float(score_t)
            if step == 0:
                first, score_before = objective, score
                sensitivity = float(tf.norm(gradient))
                if sensitivity == 0.0:  # the score does not depend on these edits
                    return FoundEdits(raw.numpy(), score_before, score_before, 1)
                penalty = tf.constant(PENALTY * sensitivity)
            if objective > best:
                best_raw, best, best_score = raw.numpy(), objective, score
            history.append(best)
            if progress is not None:
                progress(step + 1, steps, score)
            if converged(history, first, patience, min_gain):
                break
        assert best_raw is not None
        return FoundEdits(best_raw, score_before, best_score, len(history))

    def _reset(self) -> None:
        self.raw.assign(filters.identity())
        for variable, value in zip(self.optimizer.variables, self._fresh_state, strict=True):
            variable.assign(value)


def converged(history: list[float], first: float, patience: int, min_gain: float) -> bool:
    """True when the last `patience` steps gained at most `min_gain` of the total gain.

    `history` is the best objective after each step, `first` the objective at the identity."""
    if len(history) <= patience:
        return False
    recent = history[-1] - history[-1 - patience]
    return recent <= min_gain * (history[-1] - first)
