"""Bootstrap confidence intervals: resample the items (queries, clips) with replacement, recompute the figure.

Percentile intervals (Efron's): the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
quantiles of the recomputed figure. Draws come from ``numpy.random.default_rng(seed)`` in
blocks, so memory stays bounded by ``block x num_items`` indices.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
_BLOCK_ELEMENTS = 1_000_000  # indices drawn at once (8 MB of int64)


def check_bootstrap_arguments(num_items: int, resamples: int, confidence: float) -> None:
    if resamples < 1:
        raise ValueError(f"the number of bootstrap resamples must be positive, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if num_items < 1:
        raise ValueError("bootstrap needs at least one item to resample")


def bootstrap_index_blocks(num_items: int, resamples: int, seed: int | None = 0) -> Iterator[np.ndarray]:
    """Blocks of resampled item indices, shape ``(block, num_items)``, ``resamples`` rows in all.

    Row r is the r-th resample for every block size: the draws are made row by row from one
    generator, so callers that bootstrap two figures with one seed get paired resamples.
    """
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_ELEMENTS // max(num_items, 1))
    for start in range(0, resamples, block):
        yield rng.integers(0, num_items, size=(min(block, resamples - start), num_items))


def percentile_interval(values: np.ndarray, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap replicates ``values``."""
    values = np.asarray(values, dtype=np.float64)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "bootstrap_index_blocks",
    "check_bootstrap_arguments",
    "percentile_interval",
]
