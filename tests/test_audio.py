"""sound_of_story.audio: the one layout (channels first) and the one resampler (numpy arrays and tensors, 4 methods)."""

from __future__ import annotations

import numpy as np
import pytest
import resampy
import torch
import torchaudio.functional
from scipy import signal

from sound_of_story.audio import (
    channels_first,
    check_resampler,
    decoded_audio,
    prepare_waveform,
    resample,
    resampled_length,
    to_mono,
)
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
    with pytest.raises(ValueError, match="too few to resample"):
        resample(stereo[:, :2], 44_100, 16_000)


def test_polyphase_is_scipy_resample_poly_with_the_reduced_ratio():
    """The builder's method: exactly what its callers computed before (gcd-reduced ratio, scipy's length)."""
    stereo = chirp(44_100, seconds=0.2001)  # 8824 samples: ceil and floor lengths differ at 16 kHz
    ours = resample(stereo, 44_100, 16_000, method="polyphase")
    np.testing.assert_array_equal(ours, signal.resample_poly(stereo, 160, 441, axis=-1))
    assert ours.dtype == np.float32 and ours.shape == (2, resampled_length(8824, 44_100, 16_000, "polyphase"))
    assert ours.shape[1] == -(-8824 * 160 // 441) == 3202 and resampled_length(8824, 44_100, 16_000) == 3201
    speech = chirp(22_050, channels=1)[0].astype(np.float64)  # the sample clips' espeak speech: float64 stays
    np.testing.assert_array_equal(
        resample(speech, 22_050, 44_100, method="polyphase"), signal.resample_poly(speech, 44_100, 22_050)
    )
    assert resample(speech, 22_050, 44_100, method="polyphase").dtype == np.float64


def test_tensors_keep_dtype_and_device_and_torchaudio_hann_is_torchaudios_default():
    stereo = chirp(44_100)
    tensor = torch.from_numpy(stereo)
    hann = resample(tensor, 44_100, 22_050, method="torchaudio_hann")
    assert isinstance(hann, torch.Tensor) and hann.dtype == torch.float32
    torch.testing.assert_close(hann, torchaudio.functional.resample(tensor, 44_100, 22_050), rtol=0, atol=0)
    assert hann.shape[-1] == resampled_length(stereo.shape[1], 44_100, 22_050, "torchaudio_hann")
    double = tensor.double()
    for method in ("resampy", "torchaudio", "polyphase"):  # every method takes tensors, with the numpy values
        out = resample(double, 44_100, 16_000, method=method)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.device == double.device
        np.testing.assert_allclose(
            out.numpy(), resample(stereo.astype(np.float64), 44_100, 16_000, method=method), rtol=0, atol=0
        )
    np.testing.assert_array_equal(
        resample(stereo, 44_100, 22_050, method="torchaudio_hann"), hann.numpy()
    )  # numpy in, numpy out: the same values
    if torch.cuda.is_available():  # on a GPU machine: resampled there, and left there
        on_gpu = resample(tensor.cuda().half(), 44_100, 22_050, method="torchaudio_hann")
        assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.float16


def test_bad_resample_arguments_name_the_argument():
    stereo = chirp(16_000)
    with pytest.raises(
        ValueError,
        match=r"method must be one of \('resampy', 'torchaudio', 'torchaudio_hann', 'polyphase'\), got 'scipy'",
    ):
        resample(stereo, 44_100, 16_000, method="scipy")
    with pytest.raises(ValueError, match=r"resampler must be one of \('resampy', 'torchaudio'\), got 'polyphase'"):
        check_resampler("polyphase")  # the embedders' choices: filters that keep VGGish's log-mels
    for rates, name in (
        ((0, 16_000), "source_rate"),
        ((44_100, -8000), "target_rate"),
        ((44_100.5, 16_000), "source_rate"),
    ):
        with pytest.raises(
            ValueError, match=f"{name} must be a positive whole number of Hz, got {rates[name == 'target_rate']}"
        ):
            resample(stereo, *rates)
    with pytest.raises(ValueError, match="float samples, got dtype int16"):
        resample((stereo * 32767).astype(np.int16), 16_000, 8000, method="polyphase")
    with pytest.raises(ValueError, match="float samples, got dtype torch.int16"):
        resample(torch.from_numpy((stereo * 32767).astype(np.int16)), 16_000, 8000, method="torchaudio_hann")


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
