"""KAD against a brute-force double loop (kadtk's definition), the clip-level statistics behind the FAD/KAD
bootstrap against explicit resampled sets, Tukey outliers, and the rank bootstrap of the retrieval metrics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sound_of_story.metrics.bootstrap import bootstrap_index_blocks
from sound_of_story.metrics.fad.clip_bootstrap import ClipSetStatistics, bootstrap_set_distances, tukey_outliers
from sound_of_story.metrics.fad.frechet import fad_from_embeddings
from sound_of_story.metrics.fad.kad import kernel_audio_distance, median_pairwise_distance
from sound_of_story.metrics.retrieval import (
    bootstrap_rank_metrics,
    mean_rank_metrics,
    paired_rank_difference,
    rank_metrics,
)


def brute_force_kad(x: np.ndarray, y: np.ndarray, exclude=lambda i, j: i == j) -> float:
    """kadtk: bandwidth = lower median of y's pairwise distances, gamma = 1 / (2 bw^2 + 1e-8), x 100."""
    distances = sorted(float(np.sqrt(((a - b) ** 2).sum())) for a, b in itertools.combinations(y, 2))
    gamma = 1.0 / (2.0 * distances[(len(distances) - 1) // 2] ** 2 + 1e-8)
    k = lambda a, b: np.exp(-gamma * ((a - b) ** 2).sum())  # noqa: E731
    xx = np.mean([k(x[i], x[j]) for i in range(len(x)) for j in range(len(x)) if i != j])
    yy = np.mean([k(y[i], y[j]) for i in range(len(y)) for j in range(len(y)) if not exclude(i, j)])
    xy = np.mean([k(a, b) for a in x for b in y])
    return 100.0 * (xx + yy - 2.0 * xy)


def test_kad_equals_the_brute_force_definition():
    rng = np.random.default_rng(0)
    reference, generated = rng.standard_normal((31, 6)), rng.standard_normal((24, 6)) * 1.2 + 0.4
    # Both float64, in other orders: squared distances from |a|^2 + |b|^2 - 2 a.b lose ~u (|a|^2 + |b|^2) ~ 1e-15 to
    # cancellation, the three means are of kernel values in (0, 1], and KAD/100 (~0.02) cancels means ~0.5: ~1e-13
    # relative at worst, where 1e-10 and the 1e-9 below sit far above and far below any wrong pair or bandwidth.
    assert kernel_audio_distance(generated, reference) == pytest.approx(
        brute_force_kad(reference, generated), rel=1e-10
    )
    assert kernel_audio_distance(generated, reference, bandwidth=2.5) > 0
    # the lower middle value of an even count (torch.median's rule): 276 distances -> sorted[137]
    distances = sorted(np.linalg.norm(a - b) for a, b in itertools.combinations(generated, 2))
    assert median_pairwise_distance(generated) == pytest.approx(distances[137])
    # unbiased: two samples of one distribution score near 0, on both sides of it
    same = [kernel_audio_distance(rng.standard_normal((60, 4)), rng.standard_normal((60, 4))) for _ in range(20)]
    assert abs(np.mean(same)) < 0.5 and min(same) < 0 < max(same)
    with pytest.raises(ValueError, match="bandwidth must be positive"):
        kernel_audio_distance(np.ones((5, 3)), reference[:, :3])
    with pytest.raises(ValueError, match="different embedding dimensions"):
        kernel_audio_distance(generated, reference[:, :4])


def test_clip_statistics_equal_the_explicitly_resampled_set():
    rng = np.random.default_rng(1)
    clips = [rng.standard_normal((n, 5)) + 0.2 * i for i, n in enumerate((4, 6, 3, 5))]
    reference = rng.standard_normal((40, 5))
    stats = ClipSetStatistics(clips, reference)
    weights = np.array([2, 0, 1, 3])
    frames = np.concatenate([clips[c] for c in range(4) for _ in range(weights[c])])
    origin = np.concatenate([np.arange(len(clips[c])) + 100 * c for c in range(4) for _ in range(weights[c])])
    fad, kad = stats.distances(weights)
    assert fad == pytest.approx(fad_from_embeddings(frames, reference), rel=1e-9)
    # KAD of the resampled set: two copies of one frame are not a pair (bandwidth of the full set)
    full_bandwidth = median_pairwise_distance(np.concatenate(clips))
    gamma = 1.0 / (2.0 * full_bandwidth**2 + 1e-8)
    k = lambda a, b: np.exp(-gamma * ((a - b) ** 2).sum())  # noqa: E731
    yy = np.mean(
        [k(frames[i], frames[j]) for i in range(len(frames)) for j in range(len(frames)) if origin[i] != origin[j]]
    )
    xx = np.mean([k(reference[i], reference[j]) for i in range(40) for j in range(40) if i != j])
    xy = np.mean([k(a, b) for a in frames for b in reference])
    assert kad == pytest.approx(100 * (xx + yy - 2 * xy), rel=1e-9)
    # all weights 1: the plain distances
    fad_all, kad_all = stats.distances(np.ones(4))
    assert fad_all == pytest.approx(fad_from_embeddings(np.concatenate(clips), reference), rel=1e-9)
    assert kad_all == pytest.approx(kernel_audio_distance(np.concatenate(clips), reference), rel=1e-9)
    intervals = bootstrap_set_distances(clips, reference, resamples=300)
    assert intervals["kad"][0] <= kad_all <= intervals["kad"][1] and intervals["fad"][0] < intervals["fad"][1]


def test_tukey_outliers_name_the_far_clips():
    assert tukey_outliers(["a", "b", "c", "d", "e"], np.array([1.0, 1.1, 0.9, 1.05, 9.0])) == ["e"]
    assert tukey_outliers(["a", "b"], np.array([1.0, 50.0])) == []  # too few clips to tell


def test_rank_bootstrap_matches_a_direct_resampling():
    rng = np.random.default_rng(2)
    ranks = rng.integers(1, 30, size=50)
    intervals = bootstrap_rank_metrics(ranks, resamples=400, seed=5)
    (indices,) = list(bootstrap_index_blocks(50, 400, seed=5))
    direct = np.array([rank_metrics(ranks[row])["MnR"] for row in indices])
    assert intervals["MnR"] == pytest.approx(tuple(np.quantile(direct, [0.025, 0.975])))
    point = rank_metrics(ranks)
    for key in ("R@1", "R@5", "R@10", "MdR", "MnR"):
        assert intervals[key][0] <= point[key] <= intervals[key][1]
    runs = rng.integers(1, 30, size=(5, 50))
    assert mean_rank_metrics(runs)["R@5"] == pytest.approx(np.mean([rank_metrics(r)["R@5"] for r in runs]))
    same = paired_rank_difference(ranks, ranks, resamples=100)
    assert all(v["difference"] == 0 and v["ci"] == (0.0, 0.0) for v in same.values())
    better = paired_rank_difference(np.maximum(ranks - 5, 1), ranks, resamples=200)
    assert better["MnR"]["difference"] < 0 and better["MnR"]["ci"][1] < 0  # paired: clearly better on the same queries
