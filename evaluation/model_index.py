"""Evaluation results into a model card's ``model-index`` (huggingface_hub ``EvalResult``).

An existing card (e.g. the README.md that training wrote next to the weights) keeps its text and
metadata; only its ``eval_results`` are replaced by the new ones. A missing card is made with
``sound_of_story.cards.build_model_card``. The card is written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from huggingface_hub import EvalResult, ModelCard

RETRIEVAL_TASK = ("audio-retrieval", "Cross-modal retrieval")
GENERATION_TASK = ("text-to-audio", "Background sound generation")
RETRIEVAL_FIGURES = ("R@1", "R@5", "R@10", "MdR", "MnR")


def retrieval_eval_results(figures: dict[str, dict[str, Any]], dataset: str, split: str) -> list[EvalResult]:
    """One ``EvalResult`` per direction and figure of one model's Table 2 row (``{direction: {figure: value}}``)."""
    return [
        EvalResult(
            task_type=RETRIEVAL_TASK[0],
            task_name=RETRIEVAL_TASK[1],
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split=split,
            metric_type=f"{direction}_{key}".lower().replace("@", "_at_"),
            metric_name=f"{direction} {key}",
            metric_value=float(values[key]),
        )  # fmt: skip
        for direction, values in figures.items()
        for key in RETRIEVAL_FIGURES
    ]


def generation_eval_results(row: dict[str, Any], dataset: str, split: str) -> list[EvalResult]:
    """FAD (and FAD-inf, KAD when computed) of one pipeline's Table 3 row, named with the embedder and, for a
    spectrogram pipeline, the Griffin-Lim method that made its audio (the number depends on both)."""
    names = {"FAD": "fad", "FAD-inf": "fad_inf", "KAD": "kad"}
    griffin_lim = row.get("settings", {}).get("Griffin-Lim", {}).get("value")
    made_with = row["embedder"] + (f"; Griffin-Lim {griffin_lim.split(':')[0]}" if griffin_lim else "")
    return [
        EvalResult(
            task_type=GENERATION_TASK[0],
            task_name=GENERATION_TASK[1],
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split=split,
            metric_type=metric,
            metric_name=f"{key} ({made_with})",
            metric_value=float(row[key]),
        )  # fmt: skip
        for key, metric in names.items()
        if row.get(key) is not None
    ]


def write_eval_card(
    path: str | Path,
    eval_results: list[EvalResult],
    *,
    model_name: str,
    library_name: Literal["transformers", "diffusers"],
    dataset: str,
) -> Path:
    """Write ``eval_results`` as the ``model-index`` of the card at ``path`` (a README.md), creating it if needed."""
    from sound_of_story.cards import build_model_card, public_eval_results
    from sound_of_story.core.atomic_files import atomic_path

    path = Path(path)
    if path.is_dir():
        path = path / "README.md"
    if path.is_file():
        card = ModelCard.load(path)
        card.data.eval_results = public_eval_results(eval_results)  # as build_model_card does: no local dataset path
        card.data.model_name = card.data.model_name or model_name
    else:
        card = build_model_card(
            library_name=library_name,
            base_models=[],
            dataset=dataset,
            eval_results=eval_results,
            model_name=model_name,
        )
    with atomic_path(path) as tmp:
        card.save(tmp)
    return path


__all__ = ["generation_eval_results", "retrieval_eval_results", "write_eval_card"]
