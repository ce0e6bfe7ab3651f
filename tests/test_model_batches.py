"""Batches sized by memory, not by count: the frozen part's activations and the tail's inputs
stay within their budgets at any input size (at 320 px a fixed 16 images took ~1 GB)."""

from __future__ import annotations

import pytest

from instaflyd.model.backbone import (
    FEATURE_CHANNELS,
    FROZEN_BATCH_BYTES,
    TAIL_BATCH_BYTES,
    frozen_batch,
    rows_per_pass,
)

pytestmark = pytest.mark.slow  # imports TensorFlow


def test_frozen_batches_shrink_with_the_input_size() -> None:
    assert [frozen_batch(size) for size in (32, 64, 128, 224, 320, 640)] == [16, 16, 16, 5, 2, 1]
    for size in (64, 128, 224, 320):  # within the budget (one image at least, whatever its size)
        assert frozen_batch(size) * size * size * 64 * 4 <= FROZEN_BATCH_BYTES


def test_tail_passes_take_at_most_their_budget_of_features() -> None:
    per_row = {size: (size // 16) ** 2 * FEATURE_CHANNELS for size in (64, 320, 1024)}
    assert {size: rows_per_pass(n) for size, n in per_row.items()} == {64: 256, 320: 40, 1024: 4}
    assert all(rows_per_pass(n) * n * 4 <= TAIL_BATCH_BYTES for n in per_row.values())
