"""FAD of a set of generated clips against a set of reference clips, end to end."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .audio_input import AudioInput, clip_name, list_audio_files
from .embedders import RANDOM_WEIGHTS_WARNING, AudioEmbedder
from .embedding_cache import EmbeddingCache
from .frechet import FADInfinityResult, embedding_statistics, fad_infinity, frechet_distance, per_clip_fad


@dataclass
class FADResult:
    """What :func:`compute_fad` measured. ``warning`` is set whenever the weights were random."""

    fad: float
    embedder: str
    random_weights: bool
    num_pred_clips: int
    num_ref_clips: int
    num_pred_embeddings: int
    num_ref_embeddings: int
    fad_infinity: FADInfinityResult | None = None
    per_clip_fad: list[float] | None = None
    pred_clip_names: list[str] | None = None
    warning: str | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict (the evaluate module's and the CLI's output); ``None`` fields left out."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def _as_clip_list(clips: str | Path | Sequence[AudioInput], name: str) -> list[AudioInput]:
    if isinstance(clips, (str, Path)):
        if Path(clips).is_dir():
            return list(list_audio_files(clips))
        if not Path(clips).exists():
            raise FileNotFoundError(f"{name} directory {str(clips)!r} does not exist")
        raise ValueError(
            f"{name} must be a directory of audio files or a sequence of clips (paths or arrays), got the path {str(clips)!r}"
        )
    clips = list(clips)
    if not clips:
        raise ValueError(f"{name} is empty")
    return clips


def compute_fad(
    predictions: str | Path | Sequence[AudioInput],
    references: str | Path | Sequence[AudioInput],
    embedder: AudioEmbedder,
    *,
    sample_rate: int | Sequence[int] | None = None,
    reference_sample_rate: int | Sequence[int] | None = None,
    batch_size: int = 64,
    cache: EmbeddingCache | str | Path | None = None,
    progress: bool = False,
    fad_inf: bool = False,
    fad_inf_steps: int = 25,
    fad_inf_min_n: int = 500,
    seed: int | None = 0,
    per_clip: bool = False,
) -> FADResult:
    """Fréchet Audio Distance between generated ``predictions`` and ``references``.

    Every embedding frame of every clip of a set is pooled (so longer clips weigh more), as in
    Kilgour et al. and every FAD implementation.

    Args:
        predictions, references: a directory of audio files, or a sequence of file paths and/or
            float arrays (mono, or ``(samples, channels)``); the two sets may differ in size.
        embedder: e.g. ``VGGishEmbedder.from_checkpoint(path)`` or a ``ClapEmbedder``.
        sample_rate: rate of the array clips of ``predictions``; ``reference_sample_rate``
            (default: the same) for ``references``. Files use their own rate.
        batch_size, cache, progress: see :meth:`AudioEmbedder.embed`.
        fad_inf: also estimate FAD-infinity (:func:`~sound_of_story.metrics.fad.frechet.fad_infinity`)
            with ``fad_inf_steps`` sample sizes from ``fad_inf_min_n`` frames, draws seeded by ``seed``.
        per_clip: also the FAD of each prediction clip against the reference set.
    """
    pred_clips = _as_clip_list(predictions, "predictions")
    ref_clips = _as_clip_list(references, "references")
    ref_rate = sample_rate if reference_sample_rate is None else reference_sample_rate
    pred_emb = embedder.embed(
        pred_clips, sample_rate, batch_size=batch_size, cache=cache, progress=progress, desc="embedding predictions"
    )
    ref_emb = embedder.embed(
        ref_clips, ref_rate, batch_size=batch_size, cache=cache, progress=progress, desc="embedding references"
    )
    pred_all, ref_all = np.concatenate(pred_emb), np.concatenate(ref_emb)
    mu_ref, sigma_ref = embedding_statistics(ref_all, "reference embeddings")
    mu_pred, sigma_pred = embedding_statistics(pred_all, "prediction embeddings")
    names = [clip_name(c, i) for i, c in enumerate(pred_clips)]
    result = FADResult(
        fad=frechet_distance(mu_pred, sigma_pred, mu_ref, sigma_ref),
        embedder=embedder.description,
        random_weights=embedder.random_weights,
        num_pred_clips=len(pred_clips),
        num_ref_clips=len(ref_clips),
        num_pred_embeddings=int(pred_all.shape[0]),
        num_ref_embeddings=int(ref_all.shape[0]),
        warning=RANDOM_WEIGHTS_WARNING if embedder.random_weights else None,
    )
    if fad_inf:
        result.fad_infinity = fad_infinity(
            pred_all, mu_ref, sigma_ref, steps=fad_inf_steps, min_n=fad_inf_min_n, seed=seed
        )
    if per_clip:
        result.per_clip_fad = per_clip_fad(pred_emb, mu_ref, sigma_ref, names).tolist()
        result.pred_clip_names = names
    if embedder.random_weights:
        warnings.warn(RANDOM_WEIGHTS_WARNING, stacklevel=2)
    return result
