"""Table 2 from a model and a dataset: encode the stories, rank them, report R@1/5/10, MdR, MnR.

The evaluation protocol follows the paper's section 4.1.2 as ``SoSRetrievalProcessor`` implements it: 40 frames per
story, the audio window of the "information-rich area" (read here as the most energetic window; its 10.24 s is AST's
input length, this package's choice), 77 text tokens.
The same code runs the SoS model and the Table 2 baselines (``Wav2CLIPBaselineModel``,
``ClapRetrievalBaseline``): every model here has ``get_audio_features``, ``get_video_features`` /
``get_text_features`` and ``similarity``; the SoS model's similarity is the chunked multi-grained one.

Typical use (the training scripts call the same two functions for validation)::

    embeddings = encode_stories(model, processor, dataset["test"], pair="audio-video", cache_dir="~/.cache/sos-eval")
    figures = retrieval_figures(model, embeddings, bootstrap=1000)
    figures["A2V"]["R@1"], figures["A2V"]["ci"]["R@1"]

Embeddings are cached per story under ``cache_dir``: the key covers the model's weights and
configuration, the processor's settings, the pair and the story's raw content (audio bytes,
frame bytes or text), so a rerun, a second direction or a re-ordered dataset encodes nothing
twice, and a changed story or checkpoint never reads a stale entry.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from tqdm.auto import tqdm

from sound_of_story.core.hashing import json_sha256, model_fingerprint
from sound_of_story.metrics.retrieval import (
    DEFAULT_KS,
    bootstrap_rank_metrics,
    mean_rank_metrics,
    paired_rank_difference,
    retrieval_ranks,
)
from sound_of_story.modeling import SoSAudioFeatures, SoSTextFeatures, SoSVideoFeatures

Pair = Literal["audio-video", "audio-text"]
Direction = Literal["A2V", "V2A", "A2T", "T2A"]
PAIRS: tuple[str, ...] = get_args(Pair)
DIRECTIONS: tuple[str, ...] = get_args(Direction)
# Each pair's similarity matrix has audio rows; the first direction reads it as it is, the second transposed.
PAIR_DIRECTIONS: dict[str, tuple[str, str]] = {"audio-video": ("A2V", "V2A"), "audio-text": ("A2T", "T2A")}
DIRECTION_PAIR: dict[str, str] = {d: pair for pair, ds in PAIR_DIRECTIONS.items() for d in ds}
# The columns a pair reads from a SoS "stories" row.
PAIR_COLUMNS: dict[str, tuple[str, str]] = {"audio-video": ("audio", "frames"), "audio-text": ("audio", "text")}
# Which processor outputs feed which feature function.
AUDIO_INPUTS = ("input_values", "input_features", "is_longer")
VIDEO_INPUTS = ("pixel_values", "frame_mask")
TEXT_INPUTS = ("input_ids", "attention_mask")
# The paper's random baseline is the mean of five random retrievals (the runs whose matrices Table 2 saves).
RANDOM_BASELINE_RUNS = 5
# `random_baseline_figures` averages this many draws: with five, a 25-story R@1 came out 8% where its expectation
# is 100 / 25 = 4%, and its interval showed five draws' luck; with 400 it is close to the expectation's (+-0.4 points).
RANDOM_BASELINE_DRAWS = 400
# Bump when the encoding protocol or the cache entry layout changes.
CACHE_VERSION = 1


@dataclass
class RetrievalEmbeddings:
    """Every story's features for one pair, in dataset order, on the CPU.

    Attributes:
        pair: ``"audio-video"`` or ``"audio-text"``.
        ids: the story ids (row ``i`` of every tensor is story ``ids[i]``).
        audio: the audio grains (``SoSAudioFeatures``).
        other: the video grains (``SoSVideoFeatures``) or text grains (``SoSTextFeatures``).
        key: what the cache keys these embeddings by (model, processor settings, pair).
        cache_hits: how many stories were read from the cache rather than encoded.
    """

    pair: str
    ids: list[str]
    audio: SoSAudioFeatures
    other: SoSVideoFeatures | SoSTextFeatures
    key: str = ""
    cache_hits: int = 0

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class RetrievalSimilarities:
    """The similarity matrix of each direction, rows the queries, the ground truth on the diagonal."""

    matrices: dict[str, np.ndarray] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- fingerprints


def processor_fingerprint(processor: Any) -> str:
    """SHA-256 of what a processor turns a story into: its sub-processors' settings, the tokenizer's
    vocabulary and the SoS settings (frames, text length, audio window)."""
    parts: dict[str, Any] = {"class": type(processor).__name__}
    for name in ("num_frames", "max_text_length", "audio_window_seconds"):
        parts[name] = getattr(processor, name, None)
    for name in ("image_processor", "feature_extractor"):
        sub = getattr(processor, name, None)
        parts[name] = None if sub is None else sub.to_json_string()
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is not None:
        parts["tokenizer"] = [
            type(tokenizer).__name__,
            sorted(tokenizer.get_vocab().items()),
            tokenizer.model_max_length,
        ]
    return json_sha256(parts)


def _raw_value_digest(digest: Any, value: Any) -> None:
    """Feed an undecoded Arrow value (audio/image struct of bytes and path, text, list of images) to a hash."""
    if isinstance(value, Mapping):
        data = value.get("bytes")
        if data is not None:
            digest.update(b"bytes:")
            digest.update(data)
        else:  # a file reference: its path, size and modification time
            path = value.get("path") or ""
            stat = os.stat(path) if path and os.path.exists(path) else None
            digest.update(f"path:{path}:{stat.st_size if stat else -1}:{stat.st_mtime_ns if stat else -1}".encode())
    elif isinstance(value, (list, tuple)):
        digest.update(f"list:{len(value)}".encode())
        for item in value:
            _raw_value_digest(digest, item)
    else:
        digest.update(f"{type(value).__name__}:{value}".encode())


def story_keys(dataset: Any, pair: Pair, batch_size: int = 64) -> list[str]:
    """Content hash of each story's columns of ``pair``, read without decoding audio or images."""
    columns = PAIR_COLUMNS[pair]
    raw = dataset.select_columns(list(columns)).with_format("arrow")
    keys = []
    for start in range(0, len(raw), batch_size):
        table = raw[start : start + batch_size]
        values = {c: table.column(c).to_pylist() for c in columns}
        for row in range(table.num_rows):
            digest = hashlib.sha256(pair.encode())
            for c in columns:
                digest.update(f"|{c}|".encode())
                _raw_value_digest(digest, values[c][row])
            keys.append(digest.hexdigest())
    return keys


# --------------------------------------------------------------------------- cache


def _features_to_tensors(prefix: str, features: Any, row: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{name}": value[row].contiguous() for name, value in features.items() if value is not None}


class StoryEmbeddingCache:
    """Per-story feature tensors as safetensors files: ``<directory>/<settings key[:16]>/<story key>.safetensors``.

    Writes are atomic (temporary file, then ``os.replace``); an entry that cannot be read (empty,
    truncated, foreign) counts as a miss and is recomputed.
    """

    def __init__(self, directory: str | Path, key: str) -> None:
        self.directory = Path(directory).expanduser() / key[:16]

    def path(self, story_key: str) -> Path:
        return self.directory / f"{story_key}.safetensors"

    def get(self, story_key: str) -> dict[str, torch.Tensor] | None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.path(story_key)
        if not path.is_file():
            return None
        try:
            tensors = load_file(path)
        except (SafetensorError, OSError, ValueError, RuntimeError):
            return None
        return tensors or None

    def put(self, story_key: str, tensors: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        from sound_of_story.core.atomic_files import atomic_path

        with atomic_path(self.path(story_key)) as tmp:
            save_file(tensors, str(tmp))


# --------------------------------------------------------------------------- encoding


def check_pair(model: Any, processor: Any, dataset: Any, pair: str) -> None:
    """Raise ``ValueError`` when the model, processor or dataset cannot give ``pair``."""
    if pair not in PAIRS:
        raise ValueError(f"pair must be one of {PAIRS}, got {pair!r}")
    needs = "get_video_features" if pair == "audio-video" else "get_text_features"
    if not hasattr(model, needs):
        raise ValueError(f"{type(model).__name__} is not a {pair} model: it has no {needs}")
    if pair == "audio-video" and "frames" not in _call_parameters(processor):
        raise ValueError(
            f"{type(model).__name__} with {type(processor).__name__} cannot encode frames: it is not an audio-video model"
        )
    columns = set(getattr(dataset, "column_names", None) or [])
    missing = [c for c in ("id", *PAIR_COLUMNS[pair]) if c not in columns]
    if missing:
        raise ValueError(
            f"the dataset has no column(s) {missing} for {pair} retrieval; it has {sorted(columns)} (use the SoS 'stories' config)"
        )
    if len(dataset) == 0:
        raise ValueError("the dataset split is empty: nothing to evaluate")


def _call_parameters(processor: Any) -> set[str]:
    import inspect

    return set(inspect.signature(processor.__call__).parameters)


def _features_of_batch(model: Any, processor: Any, rows: dict[str, list], pair: str) -> tuple[Any, Any]:
    other_column = PAIR_COLUMNS[pair][1]
    inputs = processor(audio=list(rows["audio"]), **{other_column: list(rows[other_column])})
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    audio = model.get_audio_features(**{k: inputs[k] for k in AUDIO_INPUTS if k in inputs})
    if pair == "audio-video":
        other = model.get_video_features(**{k: inputs[k] for k in VIDEO_INPUTS if k in inputs})
    else:
        other = model.get_text_features(**{k: inputs[k] for k in TEXT_INPUTS if k in inputs})
    return audio, other


def _stack_features(entries: list[dict[str, torch.Tensor]], prefix: str, cls: type) -> Any:
    names = sorted({k.split(".", 1)[1] for k in entries[0] if k.startswith(prefix + ".")})
    return cls(**{name: torch.stack([e[f"{prefix}.{name}"] for e in entries]) for name in names})


def encode_stories(
    model: Any,
    processor: Any,
    dataset: Any,
    *,
    pair: Pair,
    batch_size: int = 8,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> RetrievalEmbeddings:
    """Encode every story of ``dataset`` (a SoS ``stories`` split) for ``pair`` retrieval.

    Args:
        model: ``SoSRetrievalModel``, ``Wav2CLIPBaselineModel`` or ``ClapRetrievalBaseline`` (any object
            with the retrieval interface); put it on its device first. It is run in eval mode and
            inference mode and left in the mode it had.
        processor: the model's processor (``SoSRetrievalProcessor``; ``ClapBaselineProcessor`` for CLAP),
            used with the evaluation crop (the most energetic 10.24 s window) and its 40 frames, 77 tokens.
        dataset: a ``datasets.Dataset`` with ``id``, ``audio`` and ``frames`` (audio-video) or ``text``
            (audio-text) columns.
        pair: ``"audio-video"`` or ``"audio-text"``.
        batch_size: stories per forward pass.
        cache_dir: per-story embedding cache (see the module docstring); ``None`` = no cache.
        progress: tqdm bar over stories.

    Raises:
        ValueError: the model cannot give ``pair`` (e.g. CLAP for audio-video), the dataset lacks a
            column, the split is empty, or a story has no frames.
    """
    check_pair(model, processor, dataset, pair)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    ids = [str(i) for i in dataset["id"]] if "id" in dataset.column_names else [str(i) for i in range(len(dataset))]
    if pair == "audio-video":
        counts = [len(f) for f in dataset.select_columns(["frames"]).with_format("arrow")["frames"].to_pylist()]
        empty = [ids[i] for i, n in enumerate(counts) if n == 0]
        if empty:
            raise ValueError(f"{len(empty)} stories have no frames for audio-video retrieval: {', '.join(empty[:10])}")
    settings = {
        "version": CACHE_VERSION,
        "pair": pair,
        "model": model_fingerprint(model),
        "processor": processor_fingerprint(processor),
    }
    key = json_sha256(settings)
    cache = StoryEmbeddingCache(cache_dir, key) if cache_dir is not None else None
    story_key_list = story_keys(dataset, pair) if cache is not None else [""] * len(ids)
    entries: list[dict[str, torch.Tensor] | None] = [
        cache.get(k) if cache is not None else None for k in story_key_list
    ]
    hits = sum(e is not None for e in entries)
    misses = [i for i, e in enumerate(entries) if e is None]
    columns = list(PAIR_COLUMNS[pair])
    was_training = model.training
    model.eval()
    try:
        with (
            torch.inference_mode(),
            tqdm(total=len(ids), initial=hits, desc=f"encoding {pair}", unit="story", disable=not progress) as bar,
        ):
            for start in range(0, len(misses), batch_size):
                indices = misses[start : start + batch_size]
                rows = dataset.select(indices).select_columns(columns)[:]
                audio, other = _features_of_batch(model, processor, rows, pair)
                for row, index in enumerate(indices):
                    entry = {**_features_to_tensors("audio", audio, row), **_features_to_tensors("other", other, row)}
                    entry = {
                        k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()
                        for k, v in entry.items()
                    }
                    entries[index] = entry
                    if cache is not None:
                        cache.put(story_key_list[index], entry)
                bar.update(len(indices))
    finally:
        model.train(was_training)
    other_cls = SoSVideoFeatures if pair == "audio-video" else SoSTextFeatures
    return RetrievalEmbeddings(
        pair=pair,
        ids=ids,
        audio=_stack_features(entries, "audio", SoSAudioFeatures),  # type: ignore[arg-type]
        other=_stack_features(entries, "other", other_cls),  # type: ignore[arg-type]
        key=key,
        cache_hits=hits,
    )


# --------------------------------------------------------------------------- ranking


def _as_embedding_list(
    embeddings: RetrievalEmbeddings | Sequence[RetrievalEmbeddings] | Mapping[str, RetrievalEmbeddings],
) -> list[RetrievalEmbeddings]:
    if isinstance(embeddings, RetrievalEmbeddings):
        return [embeddings]
    if isinstance(embeddings, Mapping):
        return list(embeddings.values())
    return list(embeddings)


def _directions(available: Sequence[str], directions: Sequence[str] | None) -> list[str]:
    if directions is None:
        return [d for d in DIRECTIONS if DIRECTION_PAIR[d] in available]
    unknown = [d for d in directions if d not in DIRECTIONS]
    if unknown:
        raise ValueError(f"unknown direction(s) {unknown}; choose from {DIRECTIONS}")
    missing = [d for d in directions if DIRECTION_PAIR[d] not in available]
    if missing:
        raise ValueError(
            f"direction(s) {missing} need {sorted({DIRECTION_PAIR[d] for d in missing})} embeddings; got {sorted(available)}"
        )
    return list(directions)


def _to_device(features: Any, device: torch.device) -> Any:
    return type(features)(**{k: v.to(device) for k, v in features.items() if v is not None})


def similarity_matrices(
    model: Any,
    embeddings: RetrievalEmbeddings | Sequence[RetrievalEmbeddings] | Mapping[str, RetrievalEmbeddings],
    directions: Sequence[Direction] | None = None,
    *,
    chunk_size: int | None = None,
    progress: bool = False,
) -> RetrievalSimilarities:
    """``model.similarity`` of every audio with every video (text), as float64 matrices per direction.

    A2V / A2T are the matrix (audio rows), V2A / T2A its transpose; story i is the ground truth
    of query i. Each pair's matrix is computed once, in ``chunk_size`` blocks (the SoS model's
    bounded-memory multi-grained similarity), on the model's device.
    """
    embedding_list = _as_embedding_list(embeddings)
    by_pair = {e.pair: e for e in embedding_list}
    wanted = _directions(list(by_pair), directions)
    ids = embedding_list[0].ids
    for e in embedding_list[1:]:
        if e.ids != ids:
            raise ValueError(f"the {e.pair} embeddings cover other stories than the {embedding_list[0].pair} ones")
    device = next(model.parameters()).device
    result = RetrievalSimilarities(ids=list(ids))
    with torch.inference_mode():
        for pair in dict.fromkeys(DIRECTION_PAIR[d] for d in wanted):
            e = by_pair[pair]
            sim = model.similarity(
                _to_device(e.audio, device), _to_device(e.other, device), chunk_size=chunk_size, progress=progress
            )
            matrix = sim.detach().to("cpu", torch.float64).numpy()
            forward, backward = PAIR_DIRECTIONS[pair]
            if forward in wanted:
                result.matrices[forward] = matrix
            if backward in wanted:
                result.matrices[backward] = np.ascontiguousarray(matrix.T)
    return result


def figures_from_ranks(
    ranks: np.ndarray,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> dict[str, Any]:
    """``{"R@1", ..., "MdR", "MnR", "num_queries"}`` of ``(num_queries,)`` ranks (or the mean over
    ``(runs, num_queries)``), with ``"ci"`` (``{figure: (low, high)}``) when ``bootstrap > 0``."""
    figures: dict[str, Any] = mean_rank_metrics(ranks, ks)
    if bootstrap > 0:
        figures["ci"] = bootstrap_rank_metrics(ranks, ks=ks, resamples=bootstrap, confidence=confidence, seed=seed)
    return figures


def similarity_ranks(matrices: Mapping[str, np.ndarray], *, tie_rule: str = "pessimistic") -> dict[str, np.ndarray]:
    """1-based rank of each query's own story (the diagonal), per direction."""
    return {direction: retrieval_ranks(matrix, tie_rule=tie_rule) for direction, matrix in matrices.items()}


def retrieval_figures(
    model: Any,
    embeddings: RetrievalEmbeddings | Sequence[RetrievalEmbeddings] | Mapping[str, RetrievalEmbeddings],
    directions: Sequence[Direction] | None = None,
    bootstrap: int = 0,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    tie_rule: str = "pessimistic",
    confidence: float = 0.95,
    seed: int | None = 0,
    chunk_size: int | None = None,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """Table 2's figures of ``model`` on encoded stories.

    Args:
        model: the model that made ``embeddings``.
        embeddings: one ``RetrievalEmbeddings`` or several (one per pair), e.g. from ``encode_stories``.
        directions: any of ``"A2V"``, ``"V2A"``, ``"A2T"``, ``"T2A"``; default: every direction the
            embeddings allow.
        bootstrap: number of bootstrap resamples of the queries for 95% (``confidence``) intervals;
            0 = none.
        ks, tie_rule: see ``sound_of_story.metrics.retrieval``.
        seed: bootstrap seed.
        chunk_size: block size of the similarity (``None``: the model's default).

    Returns:
        ``{direction: {"R@1", "R@5", "R@10", "MdR", "MnR", "num_queries"[, "ci": {figure: (low, high)}]}}``,
        R@K in percent.
    """
    matrices = similarity_matrices(model, embeddings, directions, chunk_size=chunk_size, progress=progress).matrices
    return {
        direction: figures_from_ranks(ranks, ks=ks, bootstrap=bootstrap, confidence=confidence, seed=seed)
        for direction, ranks in similarity_ranks(matrices, tie_rule=tie_rule).items()
    }


def random_similarity_matrices(
    num_stories: int, directions: Sequence[Direction], *, runs: int = RANDOM_BASELINE_RUNS, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """The random baseline's matrices: per run, one uniform random matrix per pair (the second
    direction its transpose, as for a model), seeded ``seed + run``."""
    if num_stories < 1:
        raise ValueError("the random baseline needs at least one story")
    wanted = _directions(list(PAIRS), directions)
    out = []
    for run in range(runs):
        rng = np.random.default_rng(seed + run)
        per_pair = {pair: rng.random((num_stories, num_stories)) for pair in PAIRS}
        out.append(
            {
                d: (
                    per_pair[DIRECTION_PAIR[d]]
                    if d == PAIR_DIRECTIONS[DIRECTION_PAIR[d]][0]
                    else per_pair[DIRECTION_PAIR[d]].T
                )
                for d in wanted
            }
        )
    return out


def random_baseline_figures(
    num_stories: int,
    directions: Sequence[Direction] = DIRECTIONS,
    bootstrap: int = 0,
    *,
    runs: int = RANDOM_BASELINE_DRAWS,
    ks: Sequence[int] = DEFAULT_KS,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """The random baseline: the mean figures of ``runs`` random retrievals over ``num_stories`` (R@1 tends to
    100 / N, MnR to (N + 1) / 2). Bootstrap intervals resample the queries, shared by the runs.

    The ground truth's rank in a row of independent uniform scores is uniform on 1..N, so each run draws the
    ranks directly (the same distribution as ranking `random_similarity_matrices`, at O(N) instead of O(N^2))."""
    if num_stories < 1:
        raise ValueError("the random baseline needs at least one story")
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    wanted = _directions(list(PAIRS), directions)
    rng = np.random.default_rng(seed)
    return {
        d: figures_from_ranks(
            rng.integers(1, num_stories + 1, size=(runs, num_stories)),
            ks=ks,
            bootstrap=bootstrap,
            confidence=confidence,
            seed=seed,
        )
        for d in wanted
    }


def compare_ranks(
    ranks_a: Mapping[str, np.ndarray], ranks_b: Mapping[str, np.ndarray], *, ks: Sequence[int] = DEFAULT_KS,
    bootstrap: int = 1000, confidence: float = 0.95, seed: int | None = 0,
) -> dict[str, dict[str, dict[str, Any]]]:  # fmt: skip
    """Per shared direction, the figures of A minus B with a paired bootstrap interval (same queries)."""
    return {
        d: paired_rank_difference(
            ranks_a[d], ranks_b[d], ks=ks, resamples=max(bootstrap, 1), confidence=confidence, seed=seed
        )
        for d in ranks_a
        if d in ranks_b
    }


__all__ = [
    "DIRECTIONS",
    "PAIRS",
    "PAIR_DIRECTIONS",
    "RANDOM_BASELINE_DRAWS",
    "RANDOM_BASELINE_RUNS",
    "Direction",
    "Pair",
    "RetrievalEmbeddings",
    "RetrievalSimilarities",
    "StoryEmbeddingCache",
    "compare_ranks",
    "encode_stories",
    "figures_from_ranks",
    "processor_fingerprint",
    "random_baseline_figures",
    "random_similarity_matrices",
    "retrieval_figures",
    "similarity_matrices",
    "similarity_ranks",
    "story_keys",
]
