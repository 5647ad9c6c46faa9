"""Bootstrap intervals of FAD and KAD over the generated clips, and per-clip outliers.

A resample draws the generated clips with replacement (a clip's embedding frames stay together)
and recomputes the distance against the fixed reference set. Both distances are computed from
per-clip sufficient statistics, so a resample costs O(clips^2), not O(frames^2):

- FAD: each clip's frame count, frame sum and sum of outer products give the resampled mean and
  unbiased covariance exactly;
- KAD: the kernel sums between every pair of clips and between each clip and the references give
  the resampled unbiased MMD^2 exactly; pairs of two copies of one frame are left out like the
  diagonal (they would add k = 1 and bias KAD upwards); the bandwidth stays the one of the full set.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..bootstrap import bootstrap_index_blocks, check_bootstrap_arguments, percentile_interval
from .frechet import embedding_statistics, frechet_distance
from .kad import (
    KAD_SCALE,
    ROW_BLOCK,
    kernel_sums,
    median_pairwise_distance,
    off_diagonal_kernel_mean,
    rbf_gamma,
    squared_distances,
)


def _clip_pair_kernel_sums(frames: np.ndarray, offsets: np.ndarray, groups: np.ndarray, gamma: float) -> np.ndarray:
    """``S[c, d] = sum of k(f, g)`` over frames f of clip c and g of clip d."""
    num_clips = offsets.size
    sums = np.zeros((num_clips, num_clips))
    for start in range(0, frames.shape[0], ROW_BLOCK):
        block = np.exp(-gamma * squared_distances(frames[start : start + ROW_BLOCK], frames))
        per_clip_columns = np.add.reduceat(block, offsets, axis=1)
        np.add.at(sums, groups[start : start + block.shape[0]], per_clip_columns)
    return sums


class ClipSetStatistics:
    """Per-clip sufficient statistics of the generated clips against fixed references.

    ``distances(weights)`` gives FAD and KAD of the set in which clip c appears ``weights[c]`` times.
    """

    def __init__(
        self,
        clip_embeddings: list[np.ndarray],
        references: np.ndarray,
        *,
        kad: bool = True,
        bandwidth: float | None = None,
    ) -> None:
        clips = [np.asarray(e, dtype=np.float64) for e in clip_embeddings]
        if not clips:
            raise ValueError("no generated clips to score")
        self.counts = np.array([c.shape[0] for c in clips], dtype=np.float64)
        frames = np.concatenate(clips)
        self.sums = np.stack([c.sum(0) for c in clips])
        self.outers = np.stack([c.T @ c for c in clips])
        self.references = np.asarray(references, dtype=np.float64)
        self.mu_ref, self.sigma_ref = embedding_statistics(self.references, "reference embeddings")
        self.kad = kad
        if kad:
            self.gamma = rbf_gamma(median_pairwise_distance(frames) if bandwidth is None else bandwidth)
            offsets = np.concatenate([[0], np.cumsum(self.counts[:-1])]).astype(np.int64)
            groups = np.repeat(np.arange(len(clips)), self.counts.astype(np.int64))
            self.pair_sums = _clip_pair_kernel_sums(frames, offsets, groups, self.gamma)
            self.ref_sums = kernel_sums(frames, self.references, self.gamma, groups, len(clips))
            self.ref_term = off_diagonal_kernel_mean(self.references, self.gamma)

    def distances(self, weights: np.ndarray) -> tuple[float, float | None]:
        weights = np.asarray(weights, dtype=np.float64)
        n = weights @ self.counts
        mu = weights @ self.sums / n
        sigma = (np.tensordot(weights, self.outers, axes=1) - n * np.outer(mu, mu)) / (n - 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # small resamples are rank-deficient; still valid FD inputs
            fad = frechet_distance(mu, sigma, self.mu_ref, self.sigma_ref)
        if not self.kad:
            return fad, None
        # pairs of two copies of one frame (k = 1) are left out, as the diagonal is
        same_frame = weights**2 @ self.counts
        within = (weights @ self.pair_sums @ weights - same_frame) / (n * n - same_frame)
        cross = weights @ self.ref_sums / (n * self.references.shape[0])
        return fad, KAD_SCALE * (self.ref_term + within - 2.0 * cross)


def bootstrap_set_distances(
    clip_embeddings: list[np.ndarray],
    references: np.ndarray,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
    kad: bool = True,
    bandwidth: float | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals ``{"fad": (low, high)[, "kad": (low, high)]}`` over resampled generated clips."""
    check_bootstrap_arguments(len(clip_embeddings), resamples, confidence)
    stats = ClipSetStatistics(clip_embeddings, references, kad=kad, bandwidth=bandwidth)
    values = [
        stats.distances(np.bincount(indices, minlength=len(clip_embeddings)))
        for block in bootstrap_index_blocks(len(clip_embeddings), resamples, seed)
        for indices in block
    ]
    out = {"fad": percentile_interval(np.asarray([v[0] for v in values]), confidence)}
    if kad:
        out["kad"] = percentile_interval(np.asarray([v[1] for v in values]), confidence)
    return out


def tukey_outliers(names: list[str], scores: np.ndarray, k: float = 1.5) -> list[str]:
    """Names whose score lies above the upper Tukey fence ``Q3 + k * IQR`` (per-clip distances: far from the references)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size < 4:
        return []
    q1, q3 = np.quantile(scores, [0.25, 0.75])
    fence = q3 + k * (q3 - q1)
    return [name for name, score in zip(names, scores) if score > fence]


__all__ = ["ClipSetStatistics", "bootstrap_set_distances", "tukey_outliers"]
