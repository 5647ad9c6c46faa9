"""Is a clip's sound recognised as its scene's category? The demo's score of what generated sound holds.

The sample clips' scenes have known categories (rain, sea, fire, ...), each with its own synthesised background
sound. A classifier of the category is fitted on the real training slices' audio, one example per scene span, and
then asked about each span of a generated slice: a hit when it names the category of the real scene at that time.
Its accuracy on the real held-out slices is the ceiling; a uniform guess over the categories is chance.

The features are the demo's choice: log-mel bands at 16 kHz (32 bands over 125-7500 Hz, the band VGGish hears),
and per band the mean level relative to the span's overall level (the energy distribution, not the loudness, since
generated audio is peak-normalised), its spread over time and its mean frame-to-frame change. The classifier is a
multinomial logistic regression (L2 penalty 0.01 on standardised features, L-BFGS), fitted in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

FEATURE_RATE = 16_000
FEATURE_BANDS = 32
FEATURE_BAND_HZ = (125.0, 7500.0)
FEATURE_HOP = 256
MIN_SPAN_S = 1.0  # shorter scene spans are not scored (too few frames to tell)
L2_PENALTY = 1e-2
DYNAMIC_RANGE = 1e-8  # power: 80 dB


def log_mel(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The mono log-mel bands ``(FEATURE_BANDS, frames)`` of ``audio`` ``(channels, samples)`` or ``(samples,)``, with
    a floor ``DYNAMIC_RANGE`` below the clip's loudest band (so that the level of the clip changes no feature)."""
    import torchaudio

    from sound_of_story.audio import resample

    mono = np.asarray(audio, dtype=np.float32)
    mono = mono.mean(axis=0) if mono.ndim == 2 else mono
    if sample_rate != FEATURE_RATE:
        mono = resample(mono, sample_rate, FEATURE_RATE, method="torchaudio")
    mel = torchaudio.transforms.MelSpectrogram(
        FEATURE_RATE, n_fft=1024, hop_length=FEATURE_HOP, n_mels=FEATURE_BANDS, f_min=FEATURE_BAND_HZ[0],
        f_max=FEATURE_BAND_HZ[1], power=2.0,
    )(torch.from_numpy(np.ascontiguousarray(mono)))  # fmt: skip
    mel = mel.double()
    return torch.log(mel + DYNAMIC_RANGE * mel.max().clamp_min(1e-30)).numpy()


def span_features(bands: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    """The features of the span ``[start_s, end_s)`` of ``bands`` (`log_mel`): per band, the mean level relative to
    the span's overall level, the spread over time and the mean frame-to-frame change (3 x FEATURE_BANDS values)."""
    frames_per_s = FEATURE_RATE / FEATURE_HOP
    first = min(int(start_s * frames_per_s), bands.shape[1] - 2)
    last = max(first + 2, int(end_s * frames_per_s))
    span = bands[:, first:last]
    mean = span.mean(axis=1)
    return np.concatenate([mean - mean.mean(), span.std(axis=1), np.abs(np.diff(span, axis=1)).mean(axis=1)])


def band_profile(bands: np.ndarray) -> np.ndarray:
    """A clip's energy distribution over its `log_mel` ``bands``: each band's mean level in dB relative to the clip's
    mean over bands (so the clip's loudness does not count)."""
    level = bands.mean(axis=1) * (10.0 / np.log(10.0))
    return level - level.mean()


def profile_agreement(profiles: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> dict[str, float]:
    """How the mean `band_profile` of a set of clips follows the reference set's: their Pearson correlation over
    the bands and the mean absolute difference in dB."""
    mean, real = np.mean(profiles, axis=0), np.mean(reference, axis=0)
    return {"correlation": float(np.corrcoef(mean, real)[0, 1]), "mean_abs_db": float(np.abs(mean - real).mean())}


def slice_spans(
    scenes: Sequence[tuple[str, float, float]], start: float, end: float, min_s: float = MIN_SPAN_S
) -> list[tuple[str, float, float]]:
    """The scenes heard in a slice ``[start, end)`` of a story (``scenes`` in story seconds) as ``(category, start,
    end)`` in seconds of the slice, those shorter than ``min_s`` left out."""
    spans = []
    for category, a, b in scenes:
        low, high = max(a, start), min(b, end)
        if high - low >= min_s:
            spans.append((category, low - start, high - start))
    return spans


@dataclass
class CategoryClassifier:
    """A fitted multinomial logistic regression over `span_features`."""

    categories: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, labels: Sequence[str], categories: Sequence[str]) -> CategoryClassifier:
        """Fit on ``features`` ``(examples, dims)`` with their ``labels`` (each one of ``categories``)."""
        categories = tuple(categories)
        unknown = sorted(set(labels) - set(categories))
        if unknown:
            raise ValueError(f"labels not among the categories: {unknown}")
        if len(features) != len(labels) or len(labels) == 0:
            raise ValueError(f"need as many labels as feature rows (got {len(labels)} and {len(features)}), not none")
        mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
        x = torch.tensor((features - mean) / scale, dtype=torch.float64)
        y = torch.tensor([categories.index(label) for label in labels])
        weights = torch.zeros(x.shape[1], len(categories), dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(len(categories), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([weights, bias], max_iter=300, line_search_fn="strong_wolfe")

        def loss() -> torch.Tensor:
            optimizer.zero_grad()
            value = torch.nn.functional.cross_entropy(x @ weights + bias, y) + L2_PENALTY * weights.pow(2).sum()
            value.backward()
            return value

        optimizer.step(loss)
        return cls(categories, mean, scale, weights.detach().numpy(), bias.detach().numpy())

    def predict(self, features: np.ndarray) -> list[str]:
        scores = ((np.atleast_2d(features) - self.mean) / self.scale) @ self.weights + self.bias
        return [self.categories[i] for i in scores.argmax(axis=1)]


def fit_on_slices(
    slices: Sequence[tuple[np.ndarray, int, list[tuple[str, float, float]]]], categories: Sequence[str]
) -> CategoryClassifier:
    """A classifier fitted on real slices: each ``(audio, sample_rate, spans)`` gives one example per span."""
    features, labels = [], []
    for audio, rate, spans in slices:
        bands = log_mel(audio, rate)
        for category, start, end in spans:
            features.append(span_features(bands, start, end))
            labels.append(category)
    return CategoryClassifier.fit(np.array(features), labels, categories)


def span_hits(classifier: CategoryClassifier, bands: np.ndarray, spans: list[tuple[str, float, float]]) -> list[bool]:
    """For each span of a slice, whether the classifier names its category from the slice's `log_mel` ``bands``."""
    if not spans:
        return []
    predicted = classifier.predict(np.array([span_features(bands, start, end) for _, start, end in spans]))
    return [guess == category for guess, (category, _, _) in zip(predicted, spans)]


def recognition_rate(hits_per_slice: Sequence[Sequence[bool]], bootstrap: int, seed: int = 0) -> dict[str, Any]:
    """The share of spans recognised, in %, with a 95% percentile bootstrap interval over slices (a slice's spans
    are resampled together, since they share one generation)."""
    from sound_of_story.metrics.bootstrap import bootstrap_index_blocks, percentile_interval

    hits = np.array([sum(h) for h in hits_per_slice], dtype=np.float64)
    spans = np.array([len(h) for h in hits_per_slice], dtype=np.float64)
    if spans.sum() == 0:
        raise ValueError("no span to score")
    resampled = np.concatenate(
        [
            hits[i].sum(axis=1) / np.maximum(spans[i].sum(axis=1), 1)
            for i in bootstrap_index_blocks(len(hits), bootstrap, seed)
        ]
    )
    low, high = percentile_interval(resampled * 100)
    return {
        "value": float(hits.sum() / spans.sum() * 100),
        "ci_low": low,
        "ci_high": high,
        "spans": int(spans.sum()),
        "slices": len(hits),
    }


__all__ = [
    "CategoryClassifier",
    "band_profile",
    "profile_agreement",
    "fit_on_slices",
    "log_mel",
    "recognition_rate",
    "slice_spans",
    "span_features",
    "span_hits",
]
