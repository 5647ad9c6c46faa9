"""SoS retrieval ranks as an `evaluate` module: a thin wrapper of sound_of_story.metrics.retrieval."""

import datasets
import evaluate
import numpy as np

from sound_of_story.metrics.retrieval import DEFAULT_KS, DIRECTION_NAMES, retrieval_metrics, similarity_from_embeddings

_CITATION = """\
@inproceedings{bae2023soundofstory,
  title     = {Sound of Story: Multi-modal Storytelling with Audio},
  author    = {Bae, Jaeyeon and Jeong, Seokhoon and Kang, Seokun and Han, Namgi and Lee, Jae-Yon and Kim, Hyounghun and Kim, Taehwan},
  booktitle = {Findings of the Association for Computational Linguistics: EMNLP 2023},
  year      = {2023},
  eprint    = {2310.19264},
  archivePrefix = {arXiv}
}
"""

_DESCRIPTION = """\
Cross-modal retrieval metrics of the Sound of Story paper (Table 2): Recall@1/5/10 in percent,
median rank (MdR) and mean rank (MnR), 1-based, for both retrieval directions. Each query has
one correct candidate. Ties count against the query by default (pessimistic rule), so a model
that scores everything equally gets the worst rank.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: either one similarity row per query (list of floats over all candidates,
        higher = more similar), or one query embedding per row.
    references: with similarity rows, the index of each query's correct candidate (int; for
        paired data use list(range(num_queries))); with query embeddings, the matching
        candidate embedding of each row (row i of both is a pair).
    ks (`tuple` of `int`, defaults to (1, 5, 10)): the K of R@K.
    tie_rule (`str`, defaults to "pessimistic"): "pessimistic" or "optimistic".
    both_directions (`bool`, optional): also rank queries per candidate; default: exactly when
        the ground truth is one-to-one (square and a permutation).
    direction_names (`tuple` of two `str`): keys of the two directions, default
        ("query_to_candidate", "candidate_to_query").
    similarity (`str`, defaults to "cosine"): for embedding inputs, "cosine" or "dot".
Returns:
    A dict per direction with "R@1", "R@5", "R@10" (percent, 0-100, higher is better), "MdR"
    and "MnR" (1-based ranks, lower is better) and "num_queries".
Examples:
    >>> sos_retrieval = evaluate.load(evaluate_module_path("sos_retrieval"))  # from sound_of_story.metrics
    >>> out = sos_retrieval.compute(predictions=[[0.9, 0.1, 0.0], [0.2, 0.1, 0.7], [0.3, 0.4, 0.8]], references=[0, 1, 2])
    >>> out["query_to_candidate"]["R@1"], out["query_to_candidate"]["MnR"]
    (66.66666666666666, 1.6666666666666667)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SosRetrieval(evaluate.Metric):
    """R@K, median rank and mean rank of cross-modal retrieval."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value("float64")),
                        "references": datasets.Value("int64"),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value("float64")),
                        "references": datasets.Sequence(datasets.Value("float64")),
                    }
                ),
            ],
            reference_urls=["https://arxiv.org/abs/2310.19264"],
            codebase_urls=["https://github.com/Sosdatasets/SoS_Dataset"],
        )

    def _compute(
        self,
        predictions,
        references,
        ks=DEFAULT_KS,
        tie_rule="pessimistic",
        both_directions=None,
        direction_names=DIRECTION_NAMES,
        similarity="cosine",
    ):
        if len(references) and isinstance(references[0], (list, tuple, np.ndarray)):
            matrix = similarity_from_embeddings(predictions, references, metric=similarity)
            ground_truth = None
        else:
            lengths = {len(row) for row in predictions}
            if len(lengths) != 1:
                raise ValueError(
                    f"every similarity row must score the same candidates; got rows of lengths {sorted(lengths)}"
                )
            matrix = np.asarray(predictions, dtype=np.float64)
            ground_truth = np.asarray(references, dtype=np.int64)
        return retrieval_metrics(
            matrix,
            ground_truth,
            ks=ks,
            tie_rule=tie_rule,
            both_directions=both_directions,
            direction_names=tuple(direction_names),
        )
