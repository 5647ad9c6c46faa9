"""The demo's scene-category score: a classifier fitted on real slices names the category of each scene span."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfilt

from sound_of_story.app.scene_sound import (
    CategoryClassifier,
    fit_on_slices,
    log_mel,
    recognition_rate,
    slice_spans,
    span_features,
    span_hits,
)

RATE = 16_000
CATEGORIES = ("rumble", "hiss", "hum")


def _sound(category: str, seconds: float, seed: int) -> np.ndarray:
    """Three kinds of background with different energy distributions: low-passed noise, high-passed noise, a tone."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    noise = rng.standard_normal(n)
    if category == "rumble":
        return sosfilt(butter(4, 400, "lowpass", fs=RATE, output="sos"), noise)
    if category == "hiss":
        return sosfilt(butter(4, 4000, "highpass", fs=RATE, output="sos"), noise)
    t = np.arange(n) / RATE
    return np.sin(2 * np.pi * (900 + 40 * rng.standard_normal()) * t) + 0.05 * noise


def _slice(categories: list[str], seed: int, gain: float = 0.1) -> tuple[np.ndarray, int, list]:
    """A slice of 3 s scenes one after another, with its spans."""
    parts = [_sound(c, 3.0, seed * 10 + k) for k, c in enumerate(categories)]
    audio = np.concatenate([p / np.abs(p).max() for p in parts]) * gain
    spans = [(c, 3.0 * k, 3.0 * (k + 1)) for k, c in enumerate(categories)]
    return audio.astype(np.float32)[None], RATE, spans


def _training_slices() -> list[tuple[np.ndarray, int, list]]:
    orders = [["rumble", "hiss", "hum"], ["hum", "rumble", "hiss"], ["hiss", "hum", "rumble"]]
    return [_slice(orders[k % 3], seed=k) for k in range(6)]


def test_slice_spans_are_in_slice_time_and_drop_short_spans():
    scenes = [("rain", 0.0, 4.0), ("sea", 4.0, 4.5), ("fire", 4.5, 12.0)]
    assert slice_spans(scenes, 2.0, 10.0) == [("rain", 0.0, 2.0), ("fire", 2.5, 8.0)]
    assert slice_spans(scenes, 2.0, 10.0, min_s=0.4) == [("rain", 0.0, 2.0), ("sea", 2.0, 2.5), ("fire", 2.5, 8.0)]
    assert slice_spans(scenes, 12.0, 20.0) == []


def test_features_ignore_the_level_so_peak_normalised_audio_is_judged_by_its_shape():
    audio, rate, _ = _slice(["rumble", "hiss"], seed=3, gain=0.01)
    quiet = span_features(log_mel(audio, rate), 0.0, 3.0)
    loud = span_features(log_mel(audio * 90, rate), 0.0, 3.0)
    # log(g^2 m) - log(m): the gain cancels in every feature, up to the float32 mel powers (relative 6e-8 each,
    # summed over 1024-point frames: a few 1e-6 after the log)
    np.testing.assert_allclose(loud, quiet, atol=1e-4)
    assert not np.allclose(span_features(log_mel(audio, rate), 3.0, 6.0), quiet, atol=0.5)


def test_held_out_spans_are_recognised_and_a_planted_wrong_category_is_a_miss():
    classifier = fit_on_slices(_training_slices(), CATEGORIES)
    audio, rate, spans = _slice(["hiss", "rumble", "hum"], seed=99)
    assert span_hits(classifier, log_mel(audio, rate), spans) == [True, True, True]
    planted = [("hum", *spans[0][1:]), *spans[1:]]  # the first scene labelled with another category
    assert span_hits(classifier, log_mel(audio, rate), planted) == [False, True, True]
    # Audio of one kind everywhere (a generator that ignores its scenes) is right about one span in three at most.
    flat, _, _ = _slice(["rumble", "rumble", "rumble"], seed=98)
    assert span_hits(classifier, log_mel(flat, rate), spans) == [False, True, False]


def test_recognition_rate_pools_spans_and_resamples_whole_slices():
    hits = [[True, True, False], [False], [True, False]]
    rate = recognition_rate(hits, bootstrap=2000, seed=0)
    assert rate["value"] == pytest.approx(100 * 3 / 6) and (rate["spans"], rate["slices"]) == (6, 3)
    assert 0.0 <= rate["ci_low"] <= rate["value"] <= rate["ci_high"] <= 100.0
    # A slice resampled carries all its spans: the lowest replicate is the slice [False] drawn three times (0 %),
    # the highest the first slice drawn three times (66.7 %); spans drawn one by one could reach 100 %.
    assert rate["ci_high"] <= 100 * 2 / 3 + 1e-9
    assert recognition_rate([[True] * 4, [True] * 2], bootstrap=100) == {
        "value": 100.0, "ci_low": 100.0, "ci_high": 100.0, "spans": 6, "slices": 2,
    }  # fmt: skip
    with pytest.raises(ValueError, match="no span"):
        recognition_rate([[], []], bootstrap=10)


def test_classifier_rejects_unknown_labels():
    with pytest.raises(ValueError, match="not among the categories"):
        CategoryClassifier.fit(np.zeros((2, 3)), ["rumble", "thunder"], CATEGORIES)


def test_band_profile_ignores_loudness_and_agreement_tells_a_shape_from_another():
    from sound_of_story.app.scene_sound import band_profile, profile_agreement

    clips = [_slice(["rumble", "hiss"], seed=k) for k in range(3)]
    profiles = [band_profile(log_mel(a, r)) for a, r, _ in clips]
    louder = [band_profile(log_mel(a * 50, r)) for a, r, _ in clips]
    np.testing.assert_allclose(louder, profiles, atol=1e-3)  # dB of float32 mel powers: see the features' test
    assert abs(np.mean(profiles[0])) < 1e-9  # relative to the clip's mean over bands
    same = profile_agreement(louder, profiles)
    assert same["correlation"] == pytest.approx(1.0) and same["mean_abs_db"] < 1e-3
    hiss = [band_profile(log_mel(a, r)) for a, r, _ in (_slice(["hiss", "hiss"], seed=k) for k in range(3))]
    other = profile_agreement(hiss, profiles)
    assert other["correlation"] < 0.9 and other["mean_abs_db"] > 3.0
