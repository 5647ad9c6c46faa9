"""Speech removal: keep a film's background sound, drop its dialogue.

Four backends behind one interface, ``remove_speech(audio, sample_rate, params)``, chosen by
``SpeechRemovalParams.backend`` (``--separator``):

* ``center`` (the default: no weights, no download, about 1 s per 150 s story on one core): film dialogue is mixed
  centre-panned, identical in left and right. Per STFT bin, the power of the component common to both channels is
  estimated from the time-smoothed cross-spectrum (``Re E[L R*]``, zero for uncorrelated content), and a Wiener
  gain on the mid channel ``(L + R) / 2`` extracts it; it is then subtracted from both channels. Side content
  (``L - R``) and the non-centred part of the mid are kept. This is not ``L - R``: the result stays stereo and
  keeps centred content that is not correlated. The mask is gated by the story's speech probabilities (the VAD
  pass the build runs anyway for its speech ratios), so centre-panned music or effects where nobody speaks are
  kept, and the STFT work is spent only where someone may speak.
  **Its limits**: it assumes centred dialogue. Music or effects mixed in the exact centre are removed with the
  speech wherever someone speaks: on the test mix with the music in the centre the result is 9.3 dB worse (SI-SDR
  against the clean music) than the mix itself (docs/building.md). Dialogue panned off centre is left in.
  Mono input has no centre to find: it falls back to ``vad``, muting the speech spans (the background under
  them goes too).
* ``vad``: silero-vad (its weights ship inside its wheel) finds speech; those spans are
  attenuated with short fades. Works on mono, removes the background under speech too.
* ``checkpoint``: a neural separator, torchaudio's HDemucs architecture, with weights loaded
  from a local checkpoint; everything but the ``vocals`` stem is kept.
* ``bytesep``: what the paper ran (section 3.2): bytesep's ``ResUNet143_Subbandtime`` with its MUSDB18
  accompaniment checkpoint (a path or URL, ``--separator-checkpoint``; :mod:`.bytesep_model` holds the ported model
  and procedure, equal to bytesep's own inference), at 44.1 kHz stereo in 30 s windows at a 15 s hop. Other rates
  are resampled to 44.1 kHz and back (resampy's ``kaiser_best``, bytesep's librosa 0.8 resampler), mono is
  duplicated to two channels and averaged back. The model was trained to remove singing voice from music, not
  dialogue from film sound; it has 103 M parameters (bytesep's README: 13.7 s per minute of audio on a CPU).

The default stays ``center``: it needs no 414 MB download, runs on a CPU at about the speed of decoding, and is
made for dialogue, with the limits above; ``bytesep`` reproduces the paper's data.

A film mix with a centre channel (5.1, 7.1) is not a stereo problem: its dialogue lives in that channel.
:func:`remove_centre_channel_speech` takes the stereo downmix and the centre channel's part of it, lowers the
centre where silero-vad hears speech in it (heard alone, dialogue is not masked by the music), and keeps every
other channel as it is; the builder uses it for such sources with the ``center`` backend.

``speech_ratio(audio, sample_rate=...)`` (from :mod:`.voice_activity`) is the share of 32 ms
silero-vad windows whose speech probability exceeds 0.5; every story records it before and after
removal (:func:`remove_speech_and_measure` does both with two VAD passes in all).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import bytesep_model
from .voice_activity import (
    VAD_SAMPLE_RATE,
    VAD_WINDOW,
    one_torch_thread,
    ratio_of,
    speech_gate,
    speech_probabilities,
    speech_ratio,
)

BACKENDS = ("center", "vad", "checkpoint", "bytesep")
DEFAULT_BACKEND = "center"
HDEMUCS_SOURCES = ("drums", "bass", "other", "vocals")


@dataclasses.dataclass(frozen=True)
class SpeechRemovalParams:
    """Options of every backend; part of the dataset build's cache key."""

    backend: str = DEFAULT_BACKEND
    # center
    n_fft: int = 2048
    hop: int = 512
    smoothing_frames: int = (
        9  # frames (~0.1 s at 44.1 kHz) over which cross-spectra are averaged (not across bins: that smears harmonics)
    )
    speech_band_hz: tuple[float, float] = (80.0, 16000.0)  # dialogue lives here; outside it nothing is removed
    gain_exponent: float = 8.0  # a near-binary mask: bins where the centre does not dominate are kept
    speech_gate: bool = True  # weight the mask by the speech probability: keep centred sound where nobody speaks
    gate_padding_s: float = 0.5  # the gate opens this long before and after what silero hears
    gate_fade_s: float = 0.2
    # vad
    vad_threshold: float = 0.5
    vad_attenuation_db: float = 40.0
    vad_fade_s: float = 0.02
    vad_padding_s: float = 0.1
    # checkpoint (an HDemucs state dict) and bytesep (a path or URL of its checkpoint)
    checkpoint: str | None = None
    segment_s: float = 10.0
    overlap_s: float = 1.0
    # bytesep: its window (the paper's 30 s); part of the cache key only with that backend
    bytesep_segment_s: float = 30.0

    # fields that enter a build's cache key (ProcessingParams.to_json) only when their backend is chosen, so that
    # adding a backend leaves the keys of the others' builds as they were
    BACKEND_ONLY_FIELDS = {"bytesep_segment_s": "bytesep"}

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"separator backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.hop <= 0 or self.n_fft % self.hop:
            raise ValueError(f"the center separator's hop must divide n_fft, got n_fft={self.n_fft}, hop={self.hop}")
        if self.backend == "checkpoint" and not self.checkpoint:
            raise ValueError(
                "the 'checkpoint' separator needs a local HDemucs checkpoint path (--separator-checkpoint PATH): "
                "a state_dict of torchaudio.models.hdemucs_high with sources drums, bass, other, vocals"
            )
        if self.backend == "bytesep":
            if not self.checkpoint:
                raise ValueError(
                    "the 'bytesep' separator needs its checkpoint (--separator-checkpoint PATH or URL): bytesep's "
                    f"{bytesep_model.CHECKPOINT_FILE} ({bytesep_model.CHECKPOINT_BYTES:,} bytes), from "
                    f"{bytesep_model.CHECKPOINT_URL}"
                )
            samples = self.bytesep_segment_s * bytesep_model.SAMPLE_RATE
            if not (math.isfinite(samples) and samples > 0 and samples == int(samples) and int(samples) % 4 == 0):
                raise ValueError(
                    "the bytesep segment must be a positive whole number of samples at 44.1 kHz divisible by 4 "
                    f"(bytesep's stitching takes quarters of it), got {self.bytesep_segment_s} s"
                )

    def to_json(self) -> dict:
        """The fields as the cache key and the card see them: a backend's own fields only when it is chosen."""
        data = dataclasses.asdict(self)
        for field, backend in self.BACKEND_ONLY_FIELDS.items():
            if self.backend != backend:
                del data[field]
        return data


# ----------------------------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------------------------


def _smooth_time(x, frames: int):
    """Moving average over time (last axis) of a (bins, frames) tensor, edges averaged over what exists."""
    import torch

    if frames <= 1:
        return x
    return torch.nn.functional.avg_pool1d(x[:, None], frames, stride=1, padding=frames // 2, count_include_pad=False)[
        :, 0
    ]


def _runs(active: np.ndarray, bridge: int) -> list[tuple[int, int]]:
    """[start, end) of the runs of True in ``active``, runs closer than ``bridge`` joined."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
    runs: list[tuple[int, int]] = []
    for a, b in zip(edges[::2], edges[1::2]):
        if runs and a - runs[-1][1] < bridge:
            runs[-1] = (runs[-1][0], int(b))
        else:
            runs.append((int(a), int(b)))
    return runs


def remove_center(
    audio: np.ndarray,
    sample_rate: int,
    params: SpeechRemovalParams = SpeechRemovalParams(),
    speech: np.ndarray | None = None,
) -> np.ndarray:
    """Subtract the centre-panned (left/right-correlated) component of a stereo mix.

    ``speech``: silero-vad probabilities of ``audio`` (see :mod:`.voice_activity`); with
    ``params.speech_gate`` the centre mask is weighted by them, so centred sound where nobody
    speaks (music, effects) is kept, and only frames where someone may speak are computed.

    In mid/side terms (M = (L+R)/2, S = (L-R)/2) the centre's power Re E[L R*] is E|M|^2 - E|S|^2,
    so the mask is (1 - E|S|^2 / E|M|^2) ** gain_exponent. The removed centre is the same in both
    channels, so one inverse STFT of it, subtracted from the input, gives the result (equal to
    transforming L - C and R - C back, by linearity, but half the work).
    """
    import torch

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2 or audio.shape[0] != 2:
        raise ValueError(f"center extraction needs stereo audio of shape (2, samples), got {audio.shape}")
    n_fft, hop, n = params.n_fft, params.hop, audio.shape[1]
    frames = 1 + n // hop  # torch.stft's count with center=True
    times = np.arange(frames) * hop / sample_rate
    if params.speech_gate and speech is not None:
        gate = speech_gate(speech, times, params.vad_threshold, params.gate_padding_s, params.gate_fade_s)
    else:
        gate = np.ones(frames)
    half = params.smoothing_frames // 2
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    band = np.flatnonzero((freqs >= params.speech_band_hz[0]) & (freqs <= params.speech_band_hz[1]))
    out = audio.copy()
    if band.size == 0 or not gate.any():
        return out
    lo, hi = int(band[0]), int(band[-1]) + 1  # outside the speech band nothing is removed
    window = torch.hann_window(n_fft)
    overlap = n_fft // hop
    with torch.inference_mode(), one_torch_thread():
        x = torch.from_numpy(audio)
        mid_side = torch.stack([x[0] + x[1], x[0] - x[1]]) * 0.5
        # frame f of torch.stft(center=True) is padded[f*hop : f*hop + n_fft]
        padded = torch.nn.functional.pad(mid_side[None], (n_fft // 2, n_fft // 2), mode="reflect")[0]
        total = (frames - 1) * hop + n_fft
        removed = torch.zeros(total)  # in padded coordinates
        for a, b in _runs(gate > 0, bridge=2 * half + 2 * overlap):
            ea, eb = max(a - half, 0), min(b + half, frames)  # frames the smoothing of [a, b) reads
            spec = torch.stft(
                padded[:, ea * hop : (eb - 1) * hop + n_fft],
                n_fft,
                hop,
                window=window,
                center=False,
                return_complex=True,
            )[:, lo:hi]
            mid, side = spec[0], spec[1]
            mid_power = _smooth_time(mid.real.square() + mid.imag.square(), params.smoothing_frames)
            side_power = _smooth_time(side.real.square() + side.imag.square(), params.smoothing_frames)
            gain = (1.0 - side_power / mid_power.clamp_min(1e-20)).clamp(0.0, 1.0).pow(params.gain_exponent)
            gain = gain[:, a - ea : b - ea] * torch.from_numpy(gate[a:b].astype(np.float32))
            centre = torch.zeros(n_fft // 2 + 1, b - a, dtype=spec.dtype)
            centre[lo:hi] = gain * mid[:, a - ea : b - ea]
            # overlap-add of the windowed frames, normalised by the window power of ALL frames
            # (as torch.istft does): frames outside the run hold no centre but still count there
            chunk = torch.fft.irfft(centre, n=n_fft, dim=0) * window[:, None]
            span = (b - a - 1) * hop + n_fft
            removed[a * hop : a * hop + span] += torch.nn.functional.fold(
                chunk[None], (1, span), (1, n_fft), stride=(1, hop)
            )[0, 0, 0]
        envelope = _window_envelope(window, hop, frames, total)
        centre_wave = (removed / envelope.clamp_min(1e-11))[n_fft // 2 : n_fft // 2 + n]
    out -= centre_wave.numpy()[None]
    return out


def _window_envelope(window, hop: int, frames: int, length: int):
    """Sum of the squared window over every frame of the STFT (torch.istft's normaliser), ``length`` samples."""
    import torch

    n_fft = window.numel()
    overlap = n_fft // hop
    w2 = window.square().reshape(overlap, hop)
    blocks = torch.zeros(frames - 1 + overlap, hop)
    for k in range(overlap):  # frame f adds w2 block k to output block f + k
        blocks[k : k + frames] += w2[k]
    return blocks.reshape(-1)[:length]


def attenuate_speech_spans(
    audio: np.ndarray,
    sample_rate: int,
    params: SpeechRemovalParams = SpeechRemovalParams(),
    speech: np.ndarray | None = None,
) -> np.ndarray:
    """Lower the spans where silero-vad hears speech, with short fades at their edges.

    ``speech``: the silero-vad probabilities of ``audio`` when already computed.
    """
    audio = np.asarray(audio, dtype=np.float32)
    n = audio.shape[-1]
    probs = speech_probabilities(audio, sample_rate=sample_rate) if speech is None else speech
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
        raise ValueError(
            f"{path} is not an HDemucs (hdemucs_high, sources {HDEMUCS_SOURCES}) state_dict: {err}"
        ) from err
    return model.eval()


def separate_with_model(
    model, audio: np.ndarray, sample_rate: int, params: SpeechRemovalParams = SpeechRemovalParams()
) -> np.ndarray:
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


@functools.lru_cache(maxsize=2)
def _load_bytesep(source: str, mtime: float):
    return bytesep_model.load_model(source)


def bytesep_checkpoint_file(source: str) -> Path:
    """The local file of a bytesep checkpoint path or URL (a URL is downloaded once, see :mod:`.bytesep_model`)."""
    return bytesep_model.checkpoint_path(source)


def separate_with_bytesep(audio: np.ndarray, sample_rate: int, params: SpeechRemovalParams) -> np.ndarray:
    """The accompaniment bytesep's model finds in ``audio`` ((channels, samples) at ``sample_rate``), with the
    shape and rate of ``audio``: resampled to 44.1 kHz and back when needed, mono duplicated to the model's two
    channels and averaged back, more than two channels refused (the builder downmixes them first)."""
    from sound_of_story.audio.resampling import resample

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    channels, samples = audio.shape
    if channels not in (1, 2):
        raise ValueError(f"the bytesep separator takes mono or stereo audio, got {channels} channels")
    path = bytesep_checkpoint_file(os.fspath(params.checkpoint))
    model = _load_bytesep(str(path), path.stat().st_mtime)
    x = np.tile(audio, (2, 1)) if channels == 1 else audio  # bytesep's match_audio_channels
    if sample_rate != bytesep_model.SAMPLE_RATE:
        x = resample(x, sample_rate, bytesep_model.SAMPLE_RATE, method="resampy")
    segment = int(round(params.bytesep_segment_s * bytesep_model.SAMPLE_RATE))
    out = bytesep_model.separate(model, x, segment)
    if sample_rate != bytesep_model.SAMPLE_RATE:
        out = resample(out, bytesep_model.SAMPLE_RATE, sample_rate, method="resampy")
        out = out[:, :samples] if out.shape[1] >= samples else np.pad(out, ((0, 0), (0, samples - out.shape[1])))
    if channels == 1:
        out = out.mean(axis=0, keepdims=True)
    return np.ascontiguousarray(out, dtype=np.float32)


def remove_speech(
    audio: np.ndarray,
    sample_rate: int,
    params: SpeechRemovalParams = SpeechRemovalParams(),
    speech: np.ndarray | None = None,
) -> np.ndarray:
    """Return the background estimate of ``audio`` ((channels, samples) float) with the chosen backend.

    ``speech``: the silero-vad probabilities of ``audio`` (:func:`.voice_activity.speech_probabilities`)
    when the caller has them; the ``center`` backend gates its mask with them, ``vad`` uses them
    instead of running the VAD again. Without them ``center`` computes them itself.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if (
        params.backend in ("center", "vad")
        and speech is None
        and (params.speech_gate or params.backend == "vad" or audio.shape[0] != 2)
    ):
        speech = speech_probabilities(audio, sample_rate=sample_rate)
    if params.backend == "center":
        if audio.shape[0] == 2:
            return remove_center(audio, sample_rate, params, speech)
        return attenuate_speech_spans(audio, sample_rate, params, speech)  # no centre in mono
    if params.backend == "vad":
        return attenuate_speech_spans(audio, sample_rate, params, speech)
    if params.backend == "bytesep":
        return separate_with_bytesep(audio, sample_rate, params)
    path = os.fspath(params.checkpoint)
    model = _load_hdemucs(path, Path(path).stat().st_mtime if Path(path).exists() else 0.0)
    return separate_with_model(model, audio, sample_rate, params)


@dataclasses.dataclass(frozen=True)
class SpeechRemovalResult:
    background: np.ndarray  # (channels, samples) float32
    speech_ratio_before: float
    speech_ratio_after: float


def remove_speech_and_measure(
    audio: np.ndarray,
    sample_rate: int,
    params: SpeechRemovalParams = SpeechRemovalParams(),
    timings: dict[str, float] | None = None,
) -> SpeechRemovalResult:
    """:func:`remove_speech` plus the speech ratios before and after, with one VAD pass per signal.

    The pass over the input serves both the ratio before and the separator's gate. ``timings``
    (optional) gets the seconds spent in ``"vad"`` and ``"separation"`` added.
    """
    import time

    timings = {} if timings is None else timings
    start = time.perf_counter()
    before = speech_probabilities(audio, sample_rate=sample_rate)
    middle = time.perf_counter()
    background = remove_speech(audio, sample_rate, params, speech=before)
    end = time.perf_counter()
    ratio_after = speech_ratio(background, sample_rate=sample_rate)
    timings["vad"] = timings.get("vad", 0.0) + (middle - start) + (time.perf_counter() - end)
    timings["separation"] = timings.get("separation", 0.0) + (end - middle)
    return SpeechRemovalResult(background, ratio_of(before), ratio_after)


def remove_centre_channel_speech(
    audio: np.ndarray,
    centre: np.ndarray,
    sample_rate: int,
    params: SpeechRemovalParams = SpeechRemovalParams(),
    timings: dict[str, float] | None = None,
) -> SpeechRemovalResult:
    """Speech removal for a film mix with a centre channel (5.1, 7.1), where the dialogue lives.

    ``audio``: the stereo downmix, (2, samples) or (1, samples), which holds ``centre`` (samples,): the centre
    channel as it sounds in each channel of the downmix (the channel times its -3 dB downmix level). silero-vad
    listens to the centre channel alone, where dialogue is not masked by music or effects; its speech spans are
    attenuated there (``params.vad_attenuation_db`` with the ``vad`` backend's padding and fades), and the
    difference is taken out of the downmix. Front, surround and LFE content is kept as it is, and the centre's
    own music and effects outside speech too; only the centre under speech goes. The speech ratios are measured
    on the downmix before and on the result, as for stereo (three VAD passes in all).
    """
    import time

    timings = {} if timings is None else timings
    audio = np.asarray(audio, dtype=np.float32)
    centre = np.asarray(centre, dtype=np.float32)
    if centre.ndim != 1 or centre.shape[0] != audio.shape[-1]:
        raise ValueError(f"the centre channel must have shape ({audio.shape[-1]},), got {centre.shape}")
    start = time.perf_counter()
    before = speech_probabilities(audio, sample_rate=sample_rate)
    centre_speech = speech_probabilities(centre, sample_rate=sample_rate)
    middle = time.perf_counter()
    removed = centre - attenuate_speech_spans(centre[None], sample_rate, params, centre_speech)[0]
    background = audio - removed[None]
    end = time.perf_counter()
    ratio_after = speech_ratio(background, sample_rate=sample_rate)
    timings["vad"] = timings.get("vad", 0.0) + (middle - start) + (time.perf_counter() - end)
    timings["separation"] = timings.get("separation", 0.0) + (end - middle)
    return SpeechRemovalResult(background, ratio_of(before), ratio_after)


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), over all channels together."""
    est = np.asarray(estimate, dtype=np.float64).ravel()
    ref = np.asarray(reference, dtype=np.float64).ravel()
    n = min(est.size, ref.size)
    est, ref = est[:n] - est[:n].mean(), ref[:n] - ref[:n].mean()
    target = (est @ ref) / max(ref @ ref, 1e-20) * ref
    return float(10 * np.log10(max(target @ target, 1e-20) / max((est - target) @ (est - target), 1e-20)))


__all__: Sequence[str] = (
    "BACKENDS", "SpeechRemovalParams", "SpeechRemovalResult", "remove_speech", "remove_speech_and_measure", "remove_center",
    "remove_centre_channel_speech",
    "attenuate_speech_spans", "separate_with_model", "separate_with_bytesep", "bytesep_checkpoint_file",
    "speech_probabilities", "speech_ratio", "si_sdr", "DEFAULT_BACKEND",
)  # fmt: skip
