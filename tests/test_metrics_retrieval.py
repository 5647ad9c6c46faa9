"""Retrieval ranks: against a brute-force loop, torchmetrics, and through the evaluate module."""

from __future__ import annotations

import statistics
from pathlib import Path

import evaluate
import numpy as np
import pytest
import torch
from torchmetrics.retrieval import RetrievalRecall

from sound_of_story.metrics import (
    evaluate_module_path,
    rank_metrics,
    retrieval_metrics,
    retrieval_ranks,
    similarity_from_embeddings,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def brute_force(similarity: np.ndarray, ground_truth, tie_rule: str, ks=(1, 5, 10)) -> dict:
    """Independent reference: a plain loop over candidates, statistics from the standard library."""
    ranks = []
    for query, row in enumerate(similarity.tolist()):
        correct = int(ground_truth[query])
        rank = 1
        for candidate, score in enumerate(row):
            if candidate == correct:
                continue
            if score > row[correct] or (tie_rule == "pessimistic" and score == row[correct]):
                rank += 1
        ranks.append(rank)
    out = {f"R@{k}": 100.0 * sum(r <= k for r in ranks) / len(ranks) for k in ks}
    out["MdR"] = float(statistics.median(ranks))
    out["MnR"] = statistics.fmean(ranks)
    out["num_queries"] = len(ranks)
    return out


def assert_metrics_equal(ours: dict, reference: dict) -> None:
    assert ours.keys() == reference.keys()
    for key in reference:
        assert ours[key] == pytest.approx(reference[key], rel=1e-12, abs=1e-12), key


def torchmetrics_recall(similarity: np.ndarray, ground_truth, k: int) -> float:
    """torchmetrics' RetrievalRecall in percent; scores made positive because it ignores scores <= 0."""
    num_queries, num_candidates = similarity.shape
    target = np.zeros_like(similarity, dtype=bool)
    target[np.arange(num_queries), ground_truth] = True
    indexes = np.repeat(np.arange(num_queries), num_candidates)
    metric = RetrievalRecall(top_k=k)
    value = metric(
        torch.sigmoid(torch.from_numpy(similarity).flatten()),
        torch.from_numpy(target.flatten()),
        indexes=torch.from_numpy(indexes),
    )
    return 100.0 * float(value)


@pytest.mark.parametrize("tie_rule", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("size", [7, 50])
def test_square_matrix_without_ties_matches_brute_force_both_directions(size, tie_rule):
    similarity = np.random.default_rng(size).standard_normal((size, size))
    results = retrieval_metrics(similarity, tie_rule=tie_rule)
    assert_metrics_equal(results["query_to_candidate"], brute_force(similarity, range(size), tie_rule))
    assert_metrics_equal(results["candidate_to_query"], brute_force(similarity.T, range(size), tie_rule))


@pytest.mark.parametrize("tie_rule", ["pessimistic", "optimistic"])
def test_ties_follow_the_tie_rule(tie_rule):
    rng = np.random.default_rng(3)
    similarity = rng.integers(0, 4, size=(40, 40)).astype(float)  # scores in {0,1,2,3}: ties everywhere
    results = retrieval_metrics(similarity, tie_rule=tie_rule)
    assert_metrics_equal(results["query_to_candidate"], brute_force(similarity, range(40), tie_rule))
    assert_metrics_equal(results["candidate_to_query"], brute_force(similarity.T, range(40), tie_rule))


def test_pessimistic_ranks_are_never_better_than_optimistic_and_differ_with_ties():
    similarity = np.random.default_rng(4).integers(0, 3, size=(30, 30)).astype(float)
    pessimistic = retrieval_ranks(similarity, tie_rule="pessimistic")
    optimistic = retrieval_ranks(similarity, tie_rule="optimistic")
    assert (pessimistic >= optimistic).all() and (pessimistic > optimistic).any()


def test_all_equal_scores_are_the_worst_case_when_pessimistic():
    similarity = np.ones((12, 12))
    pessimistic = retrieval_metrics(similarity)["query_to_candidate"]
    assert (
        pessimistic["R@1"] == 0.0
        and pessimistic["R@10"] == 0.0
        and pessimistic["MdR"] == 12.0
        and pessimistic["MnR"] == 12.0
    )
    optimistic = retrieval_metrics(similarity, tie_rule="optimistic")["query_to_candidate"]
    assert optimistic["R@1"] == 100.0 and optimistic["MnR"] == 1.0


@pytest.mark.parametrize("k", [1, 5, 10])
def test_recall_matches_torchmetrics_without_ties(k):
    rng = np.random.default_rng(10 + k)
    similarity = rng.standard_normal((60, 60)) * 0.2 + np.eye(60) * 0.3  # informative, so R@K is not trivial
    ours = retrieval_metrics(similarity)["query_to_candidate"][f"R@{k}"]
    assert 0.0 < ours < 100.0
    # torchmetrics averages the 60 hits in float32: the count is exact, the mean rounded to 2**-24 relative, 6e-6 of
    # a percentage; 1e-4 is far below one query's 1.67 points.
    assert ours == pytest.approx(torchmetrics_recall(similarity, np.arange(60), k), abs=1e-4)


def test_torchmetrics_lies_between_the_tie_rules_with_ties():
    similarity = np.random.default_rng(5).integers(0, 5, size=(50, 50)).astype(float)
    for k in (1, 5, 10):
        reference = torchmetrics_recall(similarity, np.arange(50), k)
        low = retrieval_metrics(similarity, tie_rule="pessimistic")["query_to_candidate"][f"R@{k}"]
        high = retrieval_metrics(similarity, tie_rule="optimistic")["query_to_candidate"][f"R@{k}"]
        assert low - 1e-4 <= reference <= high + 1e-4  # float32 rounding, as above
    assert low < high


def test_rectangular_matrix_with_ground_truth_indices():
    rng = np.random.default_rng(6)
    similarity = rng.standard_normal((30, 80))
    ground_truth = rng.integers(0, 80, size=30)
    results = retrieval_metrics(similarity, ground_truth)
    assert list(results) == ["query_to_candidate"]  # not one-to-one: one direction only
    assert_metrics_equal(results["query_to_candidate"], brute_force(similarity, ground_truth, "pessimistic"))
    with pytest.raises(ValueError, match="one-to-one"):
        retrieval_metrics(similarity, ground_truth, both_directions=True)


def test_permutation_ground_truth_gives_the_reverse_direction():
    rng = np.random.default_rng(7)
    similarity = rng.standard_normal((20, 20))
    permutation = rng.permutation(20)
    results = retrieval_metrics(similarity, permutation, direction_names=("text_to_audio", "audio_to_text"))
    inverse = np.argsort(permutation)  # candidate j's correct query
    assert_metrics_equal(results["text_to_audio"], brute_force(similarity, permutation, "pessimistic"))
    assert_metrics_equal(results["audio_to_text"], brute_force(similarity.T, inverse, "pessimistic"))
    assert list(retrieval_metrics(similarity, permutation, both_directions=False)) == ["query_to_candidate"]


def test_custom_ks_and_torch_input():
    similarity = torch.randn(25, 25, generator=torch.Generator().manual_seed(0))
    results = retrieval_metrics(similarity, ks=(2, 3))
    assert_metrics_equal(
        results["query_to_candidate"], brute_force(similarity.double().numpy(), range(25), "pessimistic", ks=(2, 3))
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_a_clear_error(bad):
    similarity = np.random.default_rng(8).standard_normal((5, 5))
    similarity[2, 3] = bad
    with pytest.raises(ValueError, match=r"NaN or inf.*\[2, 3\]"):
        retrieval_metrics(similarity)


def test_input_errors_are_clear():
    with pytest.raises(ValueError, match="square"):
        retrieval_metrics(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"lie in \[0, 3\]"):
        retrieval_metrics(np.zeros((2, 4)), [0, 4])
    with pytest.raises(ValueError, match="one candidate index per query"):
        retrieval_metrics(np.zeros((2, 4)), [0, 1, 2])
    with pytest.raises(ValueError, match="tie_rule"):
        retrieval_metrics(np.zeros((2, 2)), tie_rule="random")
    with pytest.raises(ValueError, match="ks"):
        rank_metrics([1, 2], ks=(0,))


def test_cosine_similarity_from_embeddings():
    rng = np.random.default_rng(9)
    queries, candidates = rng.standard_normal((6, 4)), rng.standard_normal((5, 4))
    expected = [[q @ c / np.linalg.norm(q) / np.linalg.norm(c) for c in candidates] for q in queries]
    np.testing.assert_allclose(similarity_from_embeddings(queries, candidates), expected, rtol=1e-12)
    np.testing.assert_allclose(
        similarity_from_embeddings(queries, candidates, metric="dot"), queries @ candidates.T, rtol=1e-12
    )
    with pytest.raises(ValueError, match="all zeros"):
        similarity_from_embeddings(np.zeros((1, 4)), candidates)


@pytest.fixture(scope="module")
def retrieval_module():
    return evaluate.load(evaluate_module_path("sos_retrieval"))  # absolute path


def test_evaluate_module_loads_from_the_repo_root_offline(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    module = evaluate.load("metrics/sos_retrieval")
    similarity = np.random.default_rng(11).standard_normal((9, 9))
    assert module.compute(predictions=similarity.tolist(), references=list(range(9))) == retrieval_metrics(similarity)


def test_evaluate_module_similarity_rows_match_the_function(retrieval_module):
    rng = np.random.default_rng(12)
    similarity = rng.integers(0, 6, size=(15, 15)).astype(float)
    permutation = rng.permutation(15)
    for tie_rule in ("pessimistic", "optimistic"):
        out = retrieval_module.compute(
            predictions=similarity.tolist(), references=permutation.tolist(), tie_rule=tie_rule, ks=(1, 3)
        )
        assert out == retrieval_metrics(similarity, permutation, tie_rule=tie_rule, ks=(1, 3))
    # streamed in batches, rectangular, one direction
    rectangular = rng.standard_normal((10, 30))
    indices = rng.integers(0, 30, size=10)
    retrieval_module.add_batch(predictions=rectangular[:4].tolist(), references=indices[:4].tolist())
    retrieval_module.add_batch(predictions=rectangular[4:].tolist(), references=indices[4:].tolist())
    assert retrieval_module.compute() == retrieval_metrics(rectangular, indices)


def test_evaluate_module_embedding_inputs_match_the_function(retrieval_module):
    rng = np.random.default_rng(13)
    audio, video = rng.standard_normal((12, 8)), rng.standard_normal((12, 8))
    out = retrieval_module.compute(
        predictions=audio.tolist(), references=video.tolist(), direction_names=("audio_to_video", "video_to_audio")
    )
    expected = retrieval_metrics(
        similarity_from_embeddings(audio, video), direction_names=("audio_to_video", "video_to_audio")
    )
    assert out.keys() == expected.keys()
    for direction in expected:
        assert_metrics_equal(out[direction], expected[direction])


def test_evaluate_module_rejects_nan(retrieval_module):
    rows = np.eye(3)
    rows[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        retrieval_module.compute(predictions=rows.tolist(), references=[0, 1, 2])
