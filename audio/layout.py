"""The package's one audio layout: float32 ``(channels, samples)``, channels first.

That is the layout of torch/torchaudio/torchcodec (``AudioSamples.data``) and of what
``datasets`` decodes. soundfile returns ``(samples, channels)``: read files with
:func:`read_audio_file`, which transposes. Mono audio may also be a bare ``(samples,)`` array.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .resampling import DEFAULT_RESAMPLER, Resampler, resample


def channels_first(audio: Any, name: str = "audio") -> np.ndarray:
    """``audio`` as a float32 ``(channels, samples)`` array; a 1-D array becomes one channel.

    Raises ``ValueError`` for integer samples (scale them to [-1, 1] first), NaN/inf, empty audio,
    other ranks, and for 2-D arrays with more channels than samples, which are almost surely
    ``(samples, channels)`` (pass ``array.T``).
    """
    if hasattr(audio, "detach"):  # torch tensor, without importing torch
        audio = audio.detach().cpu().numpy()
    array = np.asarray(audio)
    if array.dtype.kind in "iu":
        raise ValueError(
            f"{name} is an integer array ({array.dtype}); pass float samples in [-1, 1] (e.g. int16 / 32768)"
        )
    if array.dtype.kind != "f":
        raise ValueError(f"{name} must hold float samples, got dtype {array.dtype}")
    if array.ndim == 1:
        array = array[None]
    elif array.ndim != 2:
        raise ValueError(f"{name} must have shape (samples,) or (channels, samples), got {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if array.shape[0] > array.shape[1]:
        raise ValueError(
            f"{name} of shape {array.shape} looks like (samples, channels); pass (channels, samples), e.g. array.T"
        )
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf samples")
    return array


def to_mono(audio: Any, name: str = "audio") -> np.ndarray:
    """The mean of the channels of ``(channels, samples)`` (or ``(samples,)``) audio: float32 ``(samples,)``."""
    array = channels_first(audio, name)
    return array[0] if array.shape[0] == 1 else array.mean(axis=0)


def decoded_audio(audio: Any, sampling_rate: int | None = None) -> tuple[Any, int]:
    """Split a decoded clip into its samples and rate.

    Accepts a ``datasets`` audio value (``["array"]`` and ``["sampling_rate"]``, also the torchcodec
    decoder ``datasets`` 5 returns), torchcodec ``AudioSamples`` (``.data``, ``.sample_rate``), or a
    bare array with ``sampling_rate``; a rate carried by ``audio`` must agree with ``sampling_rate``.
    """
    carried = None
    if isinstance(audio, Mapping) or (hasattr(audio, "__getitem__") and hasattr(audio, "get_all_samples")):
        array, carried = audio["array"], audio["sampling_rate"]
    elif hasattr(audio, "data") and hasattr(audio, "sample_rate"):
        array, carried = audio.data, audio.sample_rate
    else:
        array = audio
    if carried is not None and sampling_rate is not None and int(carried) != int(sampling_rate):
        raise ValueError(f"sampling_rate={sampling_rate} contradicts the audio's own sampling rate {carried}")
    rate = carried if carried is not None else sampling_rate
    if rate is None:
        raise ValueError("sampling_rate is required for a bare audio array")
    return array, int(rate)


def prepare_waveform(
    audio: Any,
    sampling_rate: int | None = None,
    target_sampling_rate: int = 16_000,
    *,
    resampler: Resampler = DEFAULT_RESAMPLER,
    name: str = "audio",
) -> np.ndarray:
    """One clip as a mono float32 ``(samples,)`` waveform at ``target_sampling_rate``.

    The channels are averaged first, then the mono signal is resampled (torchvggish's order).

    Args:
        audio: anything :func:`decoded_audio` accepts, in the ``(channels, samples)`` layout.
        sampling_rate: the rate of a bare array.
        target_sampling_rate: output rate (16 kHz, the rate of VGGish and AST, by default).
        resampler: one of ``RESAMPLERS`` (``"resampy"``, torchvggish's, by default), see
            :func:`~sound_of_story.audio.resample`.
        name: how errors name the clip.
    """
    array, rate = decoded_audio(audio, sampling_rate)
    return resample(to_mono(array, name), rate, target_sampling_rate, method=resampler)


def read_audio_file(source: str | Path | bytes, name: str | None = None) -> tuple[np.ndarray, int]:
    """Decode an audio file (path or its bytes) with libsndfile: float32 ``(channels, samples)`` and its rate.

    Integer PCM is scaled to [-1, 1) (int16 / 32768); float files keep their values.
    """
    import soundfile as sf

    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    data = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        samples, rate = sf.read(data, dtype="float32", always_2d=True)
    except sf.LibsndfileError as err:
        raise ValueError(f"cannot decode audio file {label!r} with libsndfile: {err}") from None
    if samples.shape[0] == 0:
        raise ValueError(f"audio file {label!r} holds no samples")
    return np.ascontiguousarray(samples.T), int(rate)
