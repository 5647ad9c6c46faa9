"""Evaluation of the SoS tasks: retrieval ranks (paper Table 2) and FAD (paper Table 3).

- :mod:`sound_of_story.metrics.retrieval`: R@1/5/10 (percent), median and mean rank, both
  directions, from a similarity matrix (numpy only, imported here).
- :mod:`sound_of_story.metrics.fad`: VGGish (torchvggish-compatible) and CLAP embedders,
  Fréchet distance, FAD-infinity, per-clip FAD (imports torch; import it explicitly).

Each also ships as an `evaluate` module with a module card, in the folders
``sos_retrieval/`` and ``fad/`` next to this file: load them by their absolute installed path,
``evaluate.load(evaluate_module_path("fad"))``. (A relative path such as ``"metrics/fad"`` is looked up as a Hub
repository, and its script run, wherever the current folder has no such subfolder.)
"""

from pathlib import Path

from .retrieval import (
    DEFAULT_KS,
    TIE_RULES,
    rank_metrics,
    retrieval_metrics,
    retrieval_ranks,
    similarity_from_embeddings,
)

EVALUATE_MODULES = ("sos_retrieval", "fad")


def evaluate_module_path(name: str) -> str:
    """Absolute path of one of our evaluate module folders, for ``evaluate.load``."""
    if name not in EVALUATE_MODULES:
        raise ValueError(f"unknown evaluate module {name!r}; available: {', '.join(EVALUATE_MODULES)}")
    return str(Path(__file__).resolve().parent / name)


__all__ = [
    "DEFAULT_KS",
    "EVALUATE_MODULES",
    "TIE_RULES",
    "evaluate_module_path",
    "rank_metrics",
    "retrieval_metrics",
    "retrieval_ranks",
    "similarity_from_embeddings",
]
