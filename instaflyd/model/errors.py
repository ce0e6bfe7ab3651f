"""Why there is no model to score with: raised by the registry and by `scoring.load_scorer`.

A module of its own (no TensorFlow) so that the registry, which loads versions, and scoring,
which offers the current one, do not import each other.
"""

from __future__ import annotations


class NoModelError(Exception):
    """No model has been promoted yet; the message says what is missing (e.g. posts needed)."""


class ModelLoadError(NoModelError):
    """A version's files are missing or do not match the weights they need."""
