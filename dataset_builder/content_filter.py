"""Low-content filter for generation slices (paper section 4.2.2: "mean frequency below 78 Hz").

The paper does not define its "mean frequency"; the likeliest reading (see the reference
notes) is the popular pydub recipe: mono samples from pydub, one ``rfft`` over the slice, and
the magnitude-weighted mean of the bin frequencies (a spectral centroid). That is the default
measure; ``centroid_power`` (power-weighted), ``zcr`` (half the zero-crossing rate) and
``rms`` (pydub's RMS in int16 units, where 78 is about -52.5 dBFS) are options.

Digital silence is always dropped, whatever the measure: its centroid is undefined (NaN), and
``NaN < 78`` is false, which would keep it. Stereo is mixed to mono with pydub first:
``get_array_of_samples()`` on stereo interleaves L and R and shifts every frequency.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

MEASURES = ("centroid_mag", "centroid_power", "zcr", "rms")


@dataclasses.dataclass(frozen=True)
class ContentFilterParams:
    measure: str = "centroid_mag"
    threshold: float = 78.0  # Hz for the frequency measures, int16 RMS units for "rms"

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise ValueError(f"content measure must be one of {', '.join(MEASURES)}, got {self.measure!r}")


@dataclasses.dataclass(frozen=True)
class ContentDecision:
    keep: bool
    value: float  # the measure's value (0.0 for digital silence)
    reason: str | None  # why the slice is dropped, None when kept


def to_audio_segment(audio: np.ndarray, sample_rate: int):
    """A pydub AudioSegment (16-bit PCM) of a (channels, samples) float array in [-1, 1]."""
    with warnings.catch_warnings():  # pydub imports audioop, deprecated (not removed) on 3.11
        warnings.simplefilter("ignore", DeprecationWarning)
        from pydub import AudioSegment

    audio = np.atleast_2d(np.asarray(audio, dtype=np.float64))
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    return AudioSegment(pcm.T.tobytes(), frame_rate=int(sample_rate), sample_width=2, channels=audio.shape[0])


def measure_content(segment, measure: str = "centroid_mag") -> float:
    """The chosen measure of a pydub segment, on its mono mix. Digital silence gives 0.0."""
    mono = segment.set_channels(1) if segment.channels > 1 else segment
    samples = np.asarray(mono.get_array_of_samples(), dtype=np.float64)
    if measure == "rms":
        return float(mono.rms)
    if samples.size == 0 or not np.any(samples):
        return 0.0
    if measure == "zcr":
        crossings = np.count_nonzero(np.signbit(samples[1:]) != np.signbit(samples[:-1]))
        return float(crossings / 2 / (samples.size / mono.frame_rate))
    spectrum = np.abs(np.fft.rfft(samples))
    weights = spectrum if measure == "centroid_mag" else spectrum**2
    freqs = np.fft.rfftfreq(samples.size, d=1.0 / mono.frame_rate)
    total = weights.sum()
    return float((freqs * weights).sum() / total) if total > 0 else 0.0


def check_content(
    audio: np.ndarray, sample_rate: int, params: ContentFilterParams = ContentFilterParams()
) -> ContentDecision:
    """Keep or drop a slice, with the reason recorded when it is dropped."""
    segment = to_audio_segment(audio, sample_rate)
    if not any(segment.get_array_of_samples()):
        return ContentDecision(False, 0.0, "digital silence")
    value = measure_content(segment, params.measure)
    if value < params.threshold:
        unit = "" if params.measure == "rms" else " Hz"
        return ContentDecision(False, value, f"{params.measure} {value:.1f}{unit} below {params.threshold:g}{unit}")
    return ContentDecision(True, value, None)
