"""WaveformWindowFeatureExtractor: audio windows as the raw waveforms of a fixed length, for the baselines whose
models compute their spectrograms themselves (the original Wav2CLIP and Microsoft CLAP)."""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers import BatchFeature, SequenceFeatureExtractor


def repeat_to_length(waveform: np.ndarray, length: int) -> np.ndarray:
    """msclap's rule for a clip of at most `length` samples: repeated whole as often as needed, then cut to `length`;
    a longer clip keeps its first `length` samples."""
    if len(waveform) == 0:
        raise ValueError("an audio window is empty")
    if len(waveform) >= length:
        return waveform[:length]
    return np.tile(waveform, -(-length // len(waveform)))[:length]


class WaveformWindowFeatureExtractor(SequenceFeatureExtractor):
    r"""Mono windows at `sampling_rate` -> `input_values` `(batch, window_samples)` float32 waveforms.

    The processor resamples each story and picks its window; this makes every window exactly
    `round(window_seconds * sampling_rate)` samples long: a shorter one (a story shorter than the window) is
    repeated and cut, as msclap's `load_audio_into_tensor` does, rather than padded with silence, whose log
    spectrogram (-16 for Wav2CLIP's log(x + 1e-7)) would dominate the standardisation.

    Args:
        sampling_rate (`int`, *optional*, defaults to 16000): the model's rate.
        window_seconds (`float`, *optional*, defaults to 10.0): the window the model takes.
        feature_size, padding_value: as `SequenceFeatureExtractor` (1 and 0.0; nothing is padded).
    """

    model_input_names = ["input_values"]

    def __init__(
        self,
        sampling_rate: int = 16000,
        window_seconds: float = 10.0,
        feature_size: int = 1,
        padding_value: float = 0.0,
        **kwargs: Any,
    ):
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)
        if not window_seconds > 0:
            raise ValueError(f"window_seconds must be > 0, got {window_seconds}")
        self.window_seconds = float(window_seconds)

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sampling_rate))

    def __call__(
        self, raw_audio: Any, sampling_rate: int | None = None, return_tensors: str | None = None, **_: Any
    ) -> BatchFeature:
        """One mono window (a 1-D array) or a list of them, at `self.sampling_rate`."""
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise ValueError(
                f"the audio is at {sampling_rate} Hz but this feature extractor takes {self.sampling_rate} Hz: "
                "resample it first (the processor does)"
            )
        single = not isinstance(raw_audio, (list, tuple)) and getattr(raw_audio, "ndim", None) == 1
        clips = [raw_audio] if single else list(raw_audio)
        windows = []
        for clip in clips:
            clip = np.asarray(clip, dtype=np.float32)
            if clip.ndim != 1:
                raise ValueError(f"each audio window must be mono (samples,), got shape {clip.shape}")
            windows.append(repeat_to_length(clip, self.window_samples))
        return BatchFeature({"input_values": np.stack(windows)}, tensor_type=return_tensors)


__all__ = ["WaveformWindowFeatureExtractor", "repeat_to_length"]
