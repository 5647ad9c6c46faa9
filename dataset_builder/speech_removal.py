"""Speech removal: keep a film's background sound, drop its dialogue.

Three backends behind one interface, ``remove_speech(audio, sample_rate, backend=...)``:

* ``center`` (default, no weights): film dialogue is mixed centre-panned, identical in left
  and right. Per STFT bin, the power of the component common to both channels is estimated
  from the time-smoothed cross-spectrum (``Re E[L R*]``, zero for uncorrelated content), and a
  Wiener gain on the mid channel ``(L + R) / 2`` extracts it; it is then subtracted from both
  channels. Side content (``L - R``) and the non-centred part of the mid are kept. This is not
  ``L - R``: the result stays stereo and keeps centred content that is not correlated.
  Mono input has no centre to find, so it falls back to ``vad``.
* ``vad``: silero-vad (its weights ship inside its wheel) finds speech; those spans are
  attenuated with short fades. Works on mono, removes the background under speech too.
* ``checkpoint``: a neural separator, torchaudio's HDemucs architecture, with weights loaded
  from a local checkpoint; everything but the ``vocals`` stem is kept.

``speech_ratio(audio, sample_rate=...)`` is the share of 32 ms silero-vad windows whose speech
probability exceeds 0.5; every story records it before and after removal.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage, signal

BACKENDS = ("center", "vad", "checkpoint")
VAD_SAMPLE_RATE = 16_000
VAD_WINDOW = 512  # samples at 16 kHz: silero-vad's window (32 ms)
HDEMUCS_SOURCES = ("drums", "bass", "other", "vocals")


@dataclasses.dataclass(frozen=True)
class SpeechRemovalParams:
    """Options of every backend; part of the dataset build's cache key."""

    backend: str = "center"
    # center
    n_fft: int = 2048
    hop: int = 512
    smoothing_frames: int = 9  # frames (~0.1 s at 44.1 kHz) over which cross-spectra are averaged
    smoothing_bins: int = 1  # and frequency bins (averaging across bins smears harmonics: off)
    speech_band_hz: tuple[float, float] = (80.0, 16000.0)  # dialogue lives here; outside it nothing is removed
    gain_exponent: float = 8.0  # a near-binary mask: bins where the centre does not dominate are kept
    # vad
    vad_threshold: float = 0.5
    vad_attenuation_db: float = 40.0
    vad_fade_s: float = 0.02
    vad_padding_s: float = 0.1
    # checkpoint
    checkpoint: str | None = None
    segment_s: float = 10.0
    overlap_s: float = 1.0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"separator backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.backend == "checkpoint" and not self.checkpoint:
            raise ValueError(
                "the 'checkpoint' separator needs a local HDemucs checkpoint path (--separator-checkpoint PATH): "
                "a state_dict of torchaudio.models.hdemucs_high with sources drums, bass, other, vocals"
            )


# ----------------------------------------------------------------------------------------
# Speech detection (silero-vad)
# ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _silero_model():
    import torch

    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad  # importing it sets torch to one thread: undo that

    torch.set_num_threads(threads)
    with warnings.catch_warnings():  # its loader uses APIs that importlib and torch deprecate
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_silero_vad(onnx=False)


def _to_vad_input(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    mono = np.asarray(audio, dtype=np.float64)
    mono = mono.mean(axis=0) if mono.ndim == 2 else mono
    g = np.gcd(int(sample_rate), VAD_SAMPLE_RATE)
    return signal.resample_poly(mono, VAD_SAMPLE_RATE // g, int(sample_rate) // g).astype(np.float32)


def speech_probabilities(*audios: np.ndarray, sample_rate: int) -> np.ndarray:
    """silero-vad speech probability of every 32 ms window (16 kHz, 512 samples).

    Several signals of one length run as one batch (faster than one by one): the result is
    ``(len(audios), windows)``; one signal gives ``(windows,)``.
    """
    import torch

    xs = [_to_vad_input(a, sample_rate) for a in audios]
    if len({x.size for x in xs}) != 1:
        raise ValueError(f"signals scored together must have one length, got {[x.size for x in xs]} samples at 16 kHz")
    if xs[0].size < VAD_WINDOW:
        probs = np.zeros((len(xs), 0), dtype=np.float32)
        return probs[0] if len(xs) == 1 else probs
    model = _silero_model()
    model.reset_states()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the model is tiny: more threads only add overhead (silero's own default)
    try:
        with torch.inference_mode():
            probs = model.audio_forward(torch.from_numpy(np.stack(xs)), VAD_SAMPLE_RATE).numpy().astype(np.float32)
    finally:
        torch.set_num_threads(threads)
    return probs[0] if len(xs) == 1 else probs


def speech_ratio(*audios: np.ndarray, sample_rate: int, threshold: float = 0.5):
    """Share of silero-vad windows with speech probability above ``threshold`` (one float per signal)."""
    probs = np.atleast_2d(speech_probabilities(*audios, sample_rate=sample_rate))
    ratios = [float(np.mean(p > threshold)) if p.size else 0.0 for p in probs]
    return ratios[0] if len(audios) == 1 else tuple(ratios)


# ----------------------------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------------------------


def _smooth(x, frames: int, bins: int = 1):
    """Moving average over (frequency, time) of a (bins, frames) tensor, edges averaged over what exists."""
    import torch

    if frames <= 1 and bins <= 1:
        return x
    return torch.nn.functional.avg_pool2d(x[None, None], (bins, frames), stride=1, padding=(bins // 2, frames // 2), count_include_pad=False)[0, 0]


def remove_center(audio: np.ndarray, sample_rate: int, params: SpeechRemovalParams = SpeechRemovalParams()) -> np.ndarray:
    """Subtract the centre-panned (left/right-correlated) component of a stereo mix."""
    import torch

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2 or audio.shape[0] != 2:
        raise ValueError(f"center extraction needs stereo audio of shape (2, samples), got {audio.shape}")
    n = audio.shape[1]
    window = torch.hann_window(params.n_fft)
    with torch.inference_mode():
        spec = torch.stft(torch.from_numpy(audio), params.n_fft, params.hop, window=window, center=True, pad_mode="reflect", return_complex=True)
        left, right = spec[0], spec[1]
        cross = _smooth((left * right.conj()).real, params.smoothing_frames, params.smoothing_bins)
        mid = 0.5 * (left + right)
        mid_power = _smooth(mid.abs().square(), params.smoothing_frames, params.smoothing_bins)
        # L = C + Nl, R = C + Nr with uncorrelated Nl, Nr: Re E[L R*] = |C|^2 is the centre's power.
        gain = (cross.clamp_min(0.0) / mid_power.clamp_min(1e-20)).clamp(0.0, 1.0) ** params.gain_exponent
        freqs = torch.fft.rfftfreq(params.n_fft, 1.0 / sample_rate)
        lo, hi = params.speech_band_hz
        gain[(freqs < lo) | (freqs > hi)] = 0.0
        centre = gain * mid
        restored = torch.istft(torch.stack([left - centre, right - centre]), params.n_fft, params.hop, window=window, center=True, length=n)
    return restored.numpy().astype(np.float32)


def attenuate_speech_spans(audio: np.ndarray, sample_rate: int, params: SpeechRemovalParams = SpeechRemovalParams()) -> np.ndarray:
    """Lower the spans where silero-vad hears speech, with short fades at their edges."""
    audio = np.asarray(audio, dtype=np.float32)
    n = audio.shape[-1]
    probs = speech_probabilities(audio, sample_rate=sample_rate)
    speech = np.repeat(probs > params.vad_threshold, VAD_WINDOW).astype(np.float64)
    # window time (16 kHz) to sample time, then widen by the padding on both sides
    idx = np.minimum((np.arange(n) * VAD_SAMPLE_RATE // sample_rate), max(speech.size - 1, 0))
    mask = speech[idx] if speech.size else np.zeros(n)
    pad = int(params.vad_padding_s * sample_rate)
    if pad:
        mask = ndimage.maximum_filter1d(mask, 2 * pad + 1)
    mask = ndimage.uniform_filter1d(mask, max(int(params.vad_fade_s * sample_rate), 1))  # linear fades
    floor = 10.0 ** (-params.vad_attenuation_db / 20.0)
    gain = 1.0 - (1.0 - floor) * mask
    return (audio * gain.astype(np.float32)).astype(np.float32)


@functools.lru_cache(maxsize=2)
def _load_hdemucs(path: str, mtime: float):
    import torch
    from torchaudio.models import hdemucs_high

    if not Path(path).is_file():
        raise FileNotFoundError(f"separator checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    model = hdemucs_high(sources=list(HDEMUCS_SOURCES))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path} is not an HDemucs (hdemucs_high, sources {HDEMUCS_SOURCES}) state_dict: {err}") from err
    return model.eval()


def separate_with_model(model, audio: np.ndarray, sample_rate: int, params: SpeechRemovalParams = SpeechRemovalParams()) -> np.ndarray:
    """Run an HDemucs-style separator over overlapping segments; keep all stems but vocals.

    ``model(x)`` maps (batch, channels, samples) to (batch, sources, channels, samples); its
    ``sources`` attribute names the stems. Segments are cross-faded linearly in the overlap.
    """
    import torch

    sources = list(getattr(model, "sources", HDEMUCS_SOURCES))
    if "vocals" not in sources:
        raise ValueError(f"the separator has no 'vocals' stem (sources: {sources})")
    keep = [i for i, s in enumerate(sources) if s != "vocals"]
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    if x.ndim == 1:
        x = x[None]
    channels, n = x.shape
    segment = max(int(params.segment_s * sample_rate), 1)
    overlap = min(int(params.overlap_s * sample_rate), segment // 2)
    step = segment - overlap
    out = torch.zeros(channels, n)
    weight = torch.zeros(n)
    ramp = torch.linspace(0.0, 1.0, overlap + 2)[1:-1] if overlap else torch.zeros(0)
    with torch.inference_mode():
        for start in range(0, max(n - overlap, 1), step):
            end = min(start + segment, n)
            chunk = x[:, start:end]
            scale = chunk.std().clamp_min(1e-8)  # the separators are trained on unit-variance input
            stems = model((chunk / scale)[None])[0] * scale
            kept = stems[keep].sum(0)
            w = torch.ones(end - start)
            if start > 0 and overlap:
                w[:overlap] = ramp[: end - start]
            if end < n and overlap:
                w[-overlap:] = torch.minimum(w[-overlap:], ramp.flip(0))
            out[:, start:end] += kept * w
            weight[start:end] += w
    return (out / weight.clamp_min(1e-8)).numpy().astype(np.float32)


def remove_speech(audio: np.ndarray, sample_rate: int, params: SpeechRemovalParams = SpeechRemovalParams()) -> np.ndarray:
    """Return the background estimate of ``audio`` ((channels, samples) float) with the chosen backend."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if params.backend == "center":
        if audio.shape[0] == 2:
            return remove_center(audio, sample_rate, params)
        return attenuate_speech_spans(audio, sample_rate, params)  # no centre in mono
    if params.backend == "vad":
        return attenuate_speech_spans(audio, sample_rate, params)
    path = os.fspath(params.checkpoint)
    model = _load_hdemucs(path, Path(path).stat().st_mtime if Path(path).exists() else 0.0)
    return separate_with_model(model, audio, sample_rate, params)


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), over all channels together."""
    est = np.asarray(estimate, dtype=np.float64).ravel()
    ref = np.asarray(reference, dtype=np.float64).ravel()
    n = min(est.size, ref.size)
    est, ref = est[:n] - est[:n].mean(), ref[:n] - ref[:n].mean()
    target = (est @ ref) / max(ref @ ref, 1e-20) * ref
    return float(10 * np.log10(max(target @ target, 1e-20) / max((est - target) @ (est - target), 1e-20)))


__all__: Sequence[str] = (
    "BACKENDS", "SpeechRemovalParams", "remove_speech", "remove_center", "attenuate_speech_spans",
    "separate_with_model", "speech_probabilities", "speech_ratio", "si_sdr",
)  # fmt: skip
