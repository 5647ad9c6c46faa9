"""sound_of_story.audio: the one layout (channels first) and the one resampler (resampy default, torchaudio option)."""

from __future__ import annotations

import numpy as np
import pytest
import resampy
import torch
import torchaudio.functional

from sound_of_story.audio import channels_first, decoded_audio, prepare_waveform, resample, to_mono
from sound_of_story.audio.resampling import TORCHAUDIO_KAISER_BEST


def chirp(rate: int, seconds: float = 0.5, channels: int = 2) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * (200 * (c + 1) * t + 300 * t**2)) for c in range(channels)]).astype(
        np.float32
    )


def test_resample_is_resampy_or_torchaudio_along_the_last_axis():
    stereo = chirp(44_100)
    ours = resample(stereo, 44_100, 16_000)
    assert ours.shape == (2, int(stereo.shape[1] * 16_000 / 44_100)) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, resampy.resample(stereo, 44_100, 16_000, axis=-1, filter="kaiser_best"))
    np.testing.assert_array_equal(ours[1], resample(stereo[1], 44_100, 16_000))  # per channel
    fast = resample(stereo, 44_100, 16_000, method="torchaudio")
    expected = torchaudio.functional.resample(torch.from_numpy(stereo), 44_100, 16_000, **TORCHAUDIO_KAISER_BEST)[
        ..., : ours.shape[1]
    ]
    np.testing.assert_array_equal(fast, expected.numpy())
    assert np.abs(fast - ours)[:, 200:-200].max() < 1e-3  # two windowed sincs of the same design
    assert resample(stereo, 16_000, 16_000) is stereo
    with pytest.raises(ValueError, match="resampler must be one of"):
        resample(stereo, 44_100, 16_000, method="scipy")
    with pytest.raises(ValueError, match="too few to resample"):
        resample(stereo[:, :2], 44_100, 16_000)


def test_layout_is_channels_first_and_errors_name_the_clip():
    stereo = chirp(16_000)
    assert channels_first(stereo[0]).shape == (1, 8000)
    np.testing.assert_array_equal(to_mono(stereo), stereo.mean(axis=0))
    np.testing.assert_array_equal(channels_first(torch.from_numpy(stereo)), stereo)
    for bad, message in (
        (stereo.T, r"clip\.wav of shape \(8000, 2\) looks like \(samples, channels\)"),
        ((stereo * 32767).astype(np.int16), "integer array"),
        (np.full((2, 10), np.nan, np.float32), "NaN or inf"),
        (np.zeros((1, 0), np.float32), "is empty"),
        (np.zeros((2, 3, 4), np.float32), "must have shape"),
    ):
        with pytest.raises(ValueError, match=message):
            channels_first(bad, "clip.wav")


def test_prepare_waveform_takes_datasets_values_and_averages_before_resampling():
    stereo = chirp(48_000)
    expected = resampy.resample(stereo.mean(axis=0), 48_000, 16_000)
    np.testing.assert_array_equal(prepare_waveform({"array": stereo, "sampling_rate": 48_000}), expected)
    np.testing.assert_array_equal(prepare_waveform(stereo, 48_000), expected)
    assert decoded_audio({"array": stereo, "sampling_rate": 48_000})[1] == 48_000
    with pytest.raises(ValueError, match="contradicts"):
        prepare_waveform({"array": stereo, "sampling_rate": 48_000}, 44_100)
    with pytest.raises(ValueError, match="sampling_rate is required"):
        prepare_waveform(stereo)
