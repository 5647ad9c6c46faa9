"""Cross-modal retrieval ranks: R@K (percent), median rank and mean rank, both directions.

The input is a similarity matrix ``(num_queries, num_candidates)``: row i scores every
candidate for query i, higher is more similar. The ground truth is one correct candidate per
query: the diagonal by default (paired data, as in the SoS paper's Table 2), or given as
indices. The rank of a query is the 1-based position of its correct candidate once the row
is sorted by decreasing similarity.

Ties: with ``tie_rule="pessimistic"`` (the default) every other candidate scoring *at least*
as high as the correct one is ranked before it, so ties count against the query and a
degenerate model (all scores equal) gets the worst rank, never R@1 = 100. With
``"optimistic"`` only strictly higher scores count. Sort-based implementations (torchmetrics,
``argsort``) break ties arbitrarily and land in between.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .bootstrap import bootstrap_index_blocks, check_bootstrap_arguments, percentile_interval

TIE_RULES = ("pessimistic", "optimistic")
DEFAULT_KS = (1, 5, 10)
DIRECTION_NAMES = ("query_to_candidate", "candidate_to_query")
_ROW_BLOCK = 1024  # rows compared at once: bounds memory to _ROW_BLOCK x num_candidates booleans


def _as_float_matrix(similarity, name: str = "similarity") -> np.ndarray:
    if hasattr(similarity, "detach"):  # torch tensor, without importing torch
        similarity = similarity.detach().cpu().double().numpy()
    matrix = np.asarray(similarity, dtype=np.float64)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise ValueError(
            f"{name} must be a non-empty 2-D (num_queries, num_candidates) matrix, got shape {matrix.shape}"
        )
    bad = ~np.isfinite(matrix)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN or inf value(s), first at [{row}, {col}] = {matrix[row, col]}"
        )
    return matrix


def _ground_truth(ground_truth, shape: tuple[int, int]) -> np.ndarray:
    num_queries, num_candidates = shape
    if ground_truth is None:
        if num_queries != num_candidates:
            raise ValueError(
                f"the similarity matrix is {num_queries} x {num_candidates}; without ground_truth the diagonal is used, which needs a square matrix"
            )
        return np.arange(num_queries)
    if hasattr(ground_truth, "detach"):
        ground_truth = ground_truth.detach().cpu().numpy()
    indices = np.asarray(ground_truth)
    if indices.shape != (num_queries,):
        raise ValueError(
            f"ground_truth must hold one candidate index per query, shape ({num_queries},), got {indices.shape}"
        )
    if indices.dtype.kind not in "iu":
        if indices.dtype.kind != "f" or not np.all(indices == np.round(indices)):
            raise ValueError(f"ground_truth must hold integer candidate indices, got dtype {indices.dtype}")
        indices = indices.astype(np.int64)
    if indices.min() < 0 or indices.max() >= num_candidates:
        raise ValueError(
            f"ground_truth indices must lie in [0, {num_candidates - 1}], got min {indices.min()} and max {indices.max()}"
        )
    return indices.astype(np.int64)


def _is_one_to_one(indices: np.ndarray, num_candidates: int) -> bool:
    return indices.shape[0] == num_candidates and np.array_equal(np.sort(indices), np.arange(num_candidates))


def retrieval_ranks(similarity, ground_truth=None, *, tie_rule: str = "pessimistic") -> np.ndarray:
    """1-based rank of each query's correct candidate, shape ``(num_queries,)``, int64.

    ``pessimistic``: ``#{c : s[c] >= s[gt]}`` (the correct candidate included);
    ``optimistic``: ``1 + #{c : s[c] > s[gt]}``.
    """
    if tie_rule not in TIE_RULES:
        raise ValueError(f"tie_rule must be one of {TIE_RULES}, got {tie_rule!r}")
    matrix = _as_float_matrix(similarity)
    indices = _ground_truth(ground_truth, matrix.shape)
    ranks = np.empty(matrix.shape[0], dtype=np.int64)
    for start in range(0, matrix.shape[0], _ROW_BLOCK):
        block = matrix[start : start + _ROW_BLOCK]
        correct = block[np.arange(block.shape[0]), indices[start : start + _ROW_BLOCK]][:, None]
        if tie_rule == "pessimistic":
            ranks[start : start + block.shape[0]] = (block >= correct).sum(axis=1)
        else:
            ranks[start : start + block.shape[0]] = 1 + (block > correct).sum(axis=1)
    return ranks


def rank_metrics(ranks, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """``R@k`` (percent of queries ranked within the top k), ``MdR`` (median rank), ``MnR`` (mean rank)."""
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0 or (ranks < 1).any():
        raise ValueError("ranks must be a non-empty 1-D array of 1-based ranks")
    ks = list(ks)
    if any(int(k) != k or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks}")
    metrics = {f"R@{int(k)}": float(100.0 * np.mean(ranks <= k)) for k in ks}
    metrics["MdR"] = float(np.median(ranks))
    metrics["MnR"] = float(np.mean(ranks))
    metrics["num_queries"] = int(ranks.size)
    return metrics


def retrieval_metrics(
    similarity,
    ground_truth=None,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    tie_rule: str = "pessimistic",
    both_directions: bool | None = None,
    direction_names: tuple[str, str] = DIRECTION_NAMES,
) -> dict[str, dict[str, float]]:
    """Rank metrics of a similarity matrix, per retrieval direction.

    Args:
        similarity: ``(num_queries, num_candidates)`` array-like or torch tensor, finite.
        ground_truth: index of the correct candidate of each query; ``None`` = the diagonal.
        ks: the K of R@K.
        tie_rule: ``"pessimistic"`` (default) or ``"optimistic"``, see the module docstring.
        both_directions: also rank queries for each candidate (the transposed matrix), which
            needs a one-to-one ground truth (square matrix, indices a permutation). ``None``
            (default): both directions exactly when the ground truth is one-to-one.
        direction_names: keys of the two directions, e.g. ``("text_to_audio", "audio_to_text")``
            for a text x audio matrix.

    Returns:
        ``{direction_name: {"R@1": ..., "R@5": ..., "R@10": ..., "MdR": ..., "MnR": ..., "num_queries": ...}}``
        with R@K in percent (0-100, higher is better) and ranks 1-based (lower is better).
    """
    if len(direction_names) != 2 or direction_names[0] == direction_names[1]:
        raise ValueError(f"direction_names must be two different names, got {direction_names!r}")
    matrix = _as_float_matrix(similarity)
    indices = _ground_truth(ground_truth, matrix.shape)
    one_to_one = _is_one_to_one(indices, matrix.shape[1])
    if both_directions and not one_to_one:
        raise ValueError(
            "the reverse direction needs a one-to-one ground truth (a square matrix whose ground_truth is a permutation); pass both_directions=False"
        )
    results = {direction_names[0]: rank_metrics(retrieval_ranks(matrix, indices, tie_rule=tie_rule), ks)}
    if both_directions or (both_directions is None and one_to_one):
        inverse = np.empty_like(indices)
        inverse[indices] = np.arange(indices.shape[0])
        results[direction_names[1]] = rank_metrics(retrieval_ranks(matrix.T, inverse, tie_rule=tie_rule), ks)
    return results


def similarity_from_embeddings(queries, candidates, *, metric: str = "cosine") -> np.ndarray:
    """``(num_queries, num_candidates)`` similarity of two embedding sets, float64.

    ``metric="cosine"`` L2-normalises both sides first (a zero vector is an error);
    ``"dot"`` uses the raw inner product.
    """
    queries = _as_float_matrix(queries, "query embeddings")
    candidates = _as_float_matrix(candidates, "candidate embeddings")
    if queries.shape[1] != candidates.shape[1]:
        raise ValueError(
            f"query and candidate embeddings differ in dimension: {queries.shape[1]} and {candidates.shape[1]}"
        )
    if metric == "cosine":
        for name, emb in (("query", queries), ("candidate", candidates)):
            zero = np.flatnonzero(np.linalg.norm(emb, axis=1) == 0)
            if zero.size:
                raise ValueError(f"{name} embedding {zero[0]} is all zeros; cosine similarity is undefined")
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        candidates = candidates / np.linalg.norm(candidates, axis=1, keepdims=True)
    elif metric != "dot":
        raise ValueError(f"metric must be 'cosine' or 'dot', got {metric!r}")
    return queries @ candidates.T


def _as_rank_runs(ranks) -> np.ndarray:
    """``(runs, num_queries)`` int64 from one rank array or several runs of the same queries."""
    runs = np.asarray(ranks)
    if runs.ndim == 1:
        runs = runs[None]
    if runs.ndim != 2 or runs.size == 0 or (runs < 1).any():
        raise ValueError(f"ranks must be 1-based, shape (num_queries,) or (runs, num_queries), got shape {runs.shape}")
    return runs.astype(np.int64, copy=False)


def _figures_of_resamples(runs: np.ndarray, indices: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Each figure for every resample (rows of ``indices``), averaged over the runs."""
    picked = runs[:, indices]  # (runs, resamples, num_queries)
    figures = {f"R@{int(k)}": 100.0 * (picked <= k).mean(axis=2).mean(axis=0) for k in ks}
    figures["MdR"] = np.median(picked, axis=2).mean(axis=0)
    figures["MnR"] = picked.mean(axis=2).mean(axis=0)
    return figures


def mean_rank_metrics(ranks, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """``rank_metrics`` averaged over runs of the same queries (the paper's random baseline is a mean of five)."""
    runs = _as_rank_runs(ranks)
    per_run = [rank_metrics(run, ks) for run in runs]
    metrics = {key: float(np.mean([m[key] for m in per_run])) for key in per_run[0] if key != "num_queries"}
    metrics["num_queries"] = int(runs.shape[1])
    return metrics


def bootstrap_rank_metrics(
    ranks, *, ks: Sequence[int] = DEFAULT_KS, resamples: int = 1000, confidence: float = 0.95, seed: int | None = 0
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of every figure of ``mean_rank_metrics``, resampling the queries.

    ``ranks`` is ``(num_queries,)`` or ``(runs, num_queries)``; one resample of the queries is
    shared by all runs. Returns ``{"R@1": (low, high), ..., "MdR": ..., "MnR": ...}``.
    """
    runs = _as_rank_runs(ranks)
    check_bootstrap_arguments(runs.shape[1], resamples, confidence)
    replicates: dict[str, list[np.ndarray]] = {}
    for indices in bootstrap_index_blocks(runs.shape[1], resamples, seed):
        for key, values in _figures_of_resamples(runs, indices, ks).items():
            replicates.setdefault(key, []).append(values)
    return {key: percentile_interval(np.concatenate(values), confidence) for key, values in replicates.items()}


def paired_rank_difference(
    ranks_a,
    ranks_b,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> dict[str, dict[str, float | tuple[float, float]]]:
    """Figures of ``ranks_a`` minus those of ``ranks_b`` on the same queries, with a paired bootstrap interval.

    Both rank sets are resampled with the same query indices, so the interval reflects how
    the two systems differ on the same queries, not the spread of either alone.
    Returns ``{"R@1": {"difference": d, "ci": (low, high)}, ...}``.
    """
    runs_a, runs_b = _as_rank_runs(ranks_a), _as_rank_runs(ranks_b)
    if runs_a.shape[1] != runs_b.shape[1]:
        raise ValueError(
            f"a paired comparison needs the same queries: {runs_a.shape[1]} and {runs_b.shape[1]} queries"
        )
    check_bootstrap_arguments(runs_a.shape[1], resamples, confidence)
    point_a, point_b = mean_rank_metrics(runs_a, ks), mean_rank_metrics(runs_b, ks)
    replicates: dict[str, list[np.ndarray]] = {}
    for indices in bootstrap_index_blocks(runs_a.shape[1], resamples, seed):
        figures_a, figures_b = _figures_of_resamples(runs_a, indices, ks), _figures_of_resamples(runs_b, indices, ks)
        for key in figures_a:
            replicates.setdefault(key, []).append(figures_a[key] - figures_b[key])
    return {
        key: {"difference": point_a[key] - point_b[key], "ci": percentile_interval(np.concatenate(values), confidence)}
        for key, values in replicates.items()
    }
