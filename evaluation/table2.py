"""Table 2 end to end: load models and the SoS test split, rank, write ``table2.md``/``table2.json`` and matrices.

``sound-of-story evaluate retrieval --model M --dataset D`` calls :func:`run_table2`. Outputs in ``out``:

- ``table2.json``: ``{model: {direction: {"R@1", "R@5", "R@10", "MdR", "MnR", "num_queries"[, "ci"]}}}``;
- ``table2.md``: the same as a markdown table (95% intervals in brackets);
- ``<model>_<direction>.npy``: each similarity matrix, rows the queries, ground truth on the diagonal,
  so ``evaluate retrieval --similarity <file>`` reproduces the figures; the random baseline writes one
  matrix per run (``random-run<k>_<direction>.npy``), its figures are the mean over the runs;
- ``comparison.json`` (with ``--compare``): the paired differences with their intervals.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sound_of_story.modeling import MODEL_KINDS, ModelKind, load_retrieval_model

from .retrieval import (
    DIRECTION_PAIR,
    DIRECTIONS,
    PAIR_DIRECTIONS,
    RANDOM_BASELINE_RUNS,
    compare_ranks,
    encode_stories,
    figures_from_ranks,
    random_similarity_matrices,
    similarity_matrices,
    similarity_ranks,
)

STORIES_CONFIG = "stories"
RANDOM_NAME = "random"
FIGURE_KEYS = ("R@1", "R@5", "R@10", "MdR", "MnR")


@dataclass
class Table2:
    """What :func:`run_table2` measured; ``figures`` is what ``table2.json`` holds."""

    figures: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    comparison: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    num_stories: int = 0


def model_directions(model: Any, processor: Any) -> list[str]:
    """The directions a model can be evaluated in: audio-video needs video features and a processor taking frames."""
    from .retrieval import _call_parameters

    pairs = []
    if hasattr(model, "get_video_features") and "frames" in _call_parameters(processor):
        pairs.append("audio-video")
    if hasattr(model, "get_text_features"):
        pairs.append("audio-text")
    return [d for d in DIRECTIONS if DIRECTION_PAIR[d] in pairs]


def load_stories_split(dataset: str, split: str = "test") -> Any:
    """One split of a SoS dataset's ``stories`` config (folder or Hub id)."""
    from datasets import load_dataset

    path = Path(dataset)
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"--dataset {dataset!r} is a file; pass the dataset folder (with README.md and Parquet shards) or a Hub id"
        )
    if path.is_dir() and not (path / "README.md").is_file() and not any(path.glob("**/*.parquet")):
        raise FileNotFoundError(f"{dataset!r} holds no dataset (no README.md, no Parquet files)")
    try:
        splits = load_dataset(dataset, STORIES_CONFIG)
    except ValueError as err:
        raise ValueError(f"cannot load the {STORIES_CONFIG!r} config of {dataset!r}: {err}") from None
    if split not in splits:
        raise ValueError(f"{dataset!r} has no split {split!r}; it has {sorted(splits)}")
    stories = splits[split]
    if len(stories) == 0:
        raise ValueError(f"split {split!r} of {dataset!r} is empty: nothing to evaluate")
    return stories


def safe_name(name: str) -> str:
    """A file-name-safe label of a model (Hub ids keep their owner, ``/`` becomes ``--``)."""
    label = name.rstrip("/").replace("/", "--") if not Path(name).exists() else Path(name).resolve().name
    return re.sub(r"[^A-Za-z0-9._+-]", "_", label) or "model"


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def _save_matrix(path: Path, matrix: np.ndarray) -> Path:
    from sound_of_story.core.atomic_files import atomic_path

    with atomic_path(path) as tmp:
        np.save(tmp, matrix, allow_pickle=False)
    return path


def format_table2(figures: dict[str, dict[str, dict[str, Any]]], num_stories: int) -> str:
    """Markdown of Table 2: one row per model and direction; 95% intervals in brackets when present."""
    lines = [
        f"# Table 2: retrieval on {num_stories} test stories",
        "",
        "R@K in percent (higher is better), MdR / MnR 1-based ranks (lower is better); ties count against the query.",
        "",
        "| model | direction | " + " | ".join(FIGURE_KEYS) + " |",
        "|---|---|" + "---|" * len(FIGURE_KEYS),
    ]
    for model, directions in figures.items():
        for direction, values in directions.items():
            cells = []
            for key in FIGURE_KEYS:
                cell = f"{values[key]:.2f}"
                if "ci" in values:
                    low, high = values["ci"][key]
                    cell += f" [{low:.2f}, {high:.2f}]"
                cells.append(cell)
            lines.append(f"| {model} | {direction} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_table2(
    models: Sequence[str],
    dataset: str,
    *,
    split: str = "test",
    out: str | Path | None = None,
    directions: Sequence[str] | None = None,
    random_baseline: bool = False,
    compare: bool = False,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    batch_size: int = 8,
    cache_dir: str | Path | None = None,
    chunk_size: int | None = None,
    device: str | None = None,
    progress: bool = True,
) -> Table2:
    """Table 2 for ``models`` (and the random baseline) on one split of a SoS dataset.

    With ``compare``, the first model is compared with each other one on the directions they share
    (paired bootstrap over the same queries). Raises ``ValueError`` / ``FileNotFoundError`` on bad
    input (unknown model type, model/direction mismatch, missing columns, empty or unknown split).
    """
    if not models and not random_baseline:
        raise ValueError("give at least one model (--model) or --baseline random")
    if compare and len(models) < 2:
        raise ValueError("--compare needs a second model")
    if directions is not None:
        unknown = [d for d in directions if d not in DIRECTIONS]
        if unknown:
            raise ValueError(f"unknown direction(s) {unknown}; choose from {DIRECTIONS}")
    stories = load_stories_split(dataset, split)
    out_dir = Path(out) if out is not None else None
    table = Table2(num_stories=len(stories))
    all_ranks: dict[str, dict[str, np.ndarray]] = {}
    names = _unique([safe_name(m) for m in models])
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    for name, model_id in zip(names, models):
        model, processor, kind = load_retrieval_model(model_id, device=device)
        possible = model_directions(model, processor)
        wanted = [d for d in (directions or possible)]
        impossible = [d for d in wanted if d not in possible]
        if impossible:
            raise ValueError(f"{model_id!r} ({kind}) cannot be evaluated in {impossible}: it supports {possible}")
        pairs = list(dict.fromkeys(DIRECTION_PAIR[d] for d in wanted))
        embeddings = [
            encode_stories(
                model, processor, stories, pair=pair, batch_size=batch_size, cache_dir=cache_dir, progress=progress
            )
            for pair in pairs
        ]  # type: ignore[arg-type]
        matrices = similarity_matrices(model, embeddings, wanted, chunk_size=chunk_size, progress=progress).matrices  # type: ignore[arg-type]
        ranks = similarity_ranks(matrices)
        all_ranks[name] = ranks
        table.figures[name] = {
            d: figures_from_ranks(ranks[d], bootstrap=bootstrap, confidence=confidence, seed=seed) for d in wanted
        }
        if out_dir is not None:
            table.files += [_save_matrix(out_dir / f"{name}_{d}.npy", matrices[d]) for d in wanted]
        del model
    if random_baseline:
        wanted = list(directions or DIRECTIONS)
        runs = random_similarity_matrices(len(stories), wanted, runs=RANDOM_BASELINE_RUNS, seed=seed)  # type: ignore[arg-type]
        ranks = {d: np.stack([similarity_ranks({d: run[d]})[d] for run in runs]) for d in wanted}
        table.figures[RANDOM_NAME] = {
            d: figures_from_ranks(ranks[d], bootstrap=bootstrap, confidence=confidence, seed=seed) for d in wanted
        }
        if out_dir is not None:
            for k, run in enumerate(runs):
                table.files += [_save_matrix(out_dir / f"{RANDOM_NAME}-run{k}_{d}.npy", run[d]) for d in wanted]
    if compare:
        first = names[0]
        for other in names[1:]:
            table.comparison[f"{first} - {other}"] = compare_ranks(
                all_ranks[first], all_ranks[other], bootstrap=bootstrap or 1000, confidence=confidence, seed=seed
            )
    if out_dir is not None:
        from sound_of_story.core.atomic_files import atomic_path, write_json_atomic

        write_json_atomic(out_dir / "table2.json", _json_ready(table.figures))
        with atomic_path(out_dir / "table2.md") as tmp:
            tmp.write_text(format_table2(table.figures, table.num_stories), encoding="utf-8")
        table.files += [out_dir / "table2.json", out_dir / "table2.md"]
        if table.comparison:
            write_json_atomic(out_dir / "comparison.json", _json_ready(table.comparison))
            table.files.append(out_dir / "comparison.json")
    return table


def _json_ready(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else list(v)))


__all__ = [
    "MODEL_KINDS",
    "PAIR_DIRECTIONS",
    "ModelKind",
    "Table2",
    "format_table2",
    "load_retrieval_model",
    "load_stories_split",
    "model_directions",
    "run_table2",
]
