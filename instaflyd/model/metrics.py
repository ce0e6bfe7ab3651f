"""Validation metrics: squared error, Spearman rank correlation, within-owner pairwise accuracy.

Pairwise accuracy is the metric of Ding et al. 2019 ("Intrinsic Image Popularity Assessment"):
of two posts by the same owner, how often the model ranks the more popular one higher
(76.65% for their model on Instagram pairs, 72.4% for people). Ties between posts with the same
like rate are not pairs; a tie in the predictions counts as half right.

Metrics that cannot be computed (no pairs, constant values) are None, never NaN, so they can go
into JSON as they are.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def mse(predictions: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean((np.asarray(predictions) - np.asarray(targets)) ** 2))


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 0, ties sharing their average rank."""
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    positions = np.empty(len(values), dtype=np.float64)
    positions[order] = np.arange(len(values))
    _, group, sizes = np.unique(values, return_inverse=True, return_counts=True)
    return (np.bincount(group, weights=positions) / sizes)[group]


def spearman(predictions: np.ndarray, targets: np.ndarray) -> float | None:
    """Spearman's rank correlation; None when either side is constant or has under 2 values."""
    if len(predictions) < 2:
        return None
    a, b = ranks(predictions), ranks(targets)
    a, b = a - a.mean(), b - b.mean()
    norm = math.sqrt(float(np.sum(a * a) * np.sum(b * b)))
    return float(np.sum(a * b) / norm) if norm > 0 else None


def pairwise_accuracy(
    predictions: np.ndarray, targets: np.ndarray, owners: np.ndarray
) -> float | None:
    """Share of same-owner pairs with different targets that the predictions order rightly."""
    predictions, targets, owners = map(np.asarray, (predictions, targets, owners))
    right = pairs = 0.0
    for owner in np.unique(owners):
        mine = owners == owner
        truth = np.sign(targets[mine][:, None] - targets[mine][None, :])
        guess = np.sign(predictions[mine][:, None] - predictions[mine][None, :])
        counted = truth > 0  # each unordered pair with different targets, once
        pairs += counted.sum()
        right += (guess[counted] > 0).sum() + 0.5 * (guess[counted] == 0).sum()
    return float(right / pairs) if pairs else None


def validation_metrics(
    predictions: np.ndarray, targets: np.ndarray, owners: np.ndarray
) -> dict[str, Any]:
    """The metrics every objective reports, under the names the store and `train --json` use."""
    return {
        "val_mse": mse(predictions, targets),
        "val_srcc": spearman(predictions, targets),
        "val_pairwise_accuracy": pairwise_accuracy(predictions, targets, owners),
        "val_samples": len(targets),
    }
