"""Riffusion-compatible spectrogram images: audio <-> mel amplitudes <-> image.

This is the project's one spectrogram converter: the dataset builder makes its training images
with it and both generation pipelines turn their images back into audio with it.

The image format is Riffusion's (riffusion/riffusion-model-v1), reproduced value for value:

* forward: STFT magnitude (periodic Hann window of ``win_length`` centred in an ``n_fft`` frame,
  ``center=True`` with reflect padding), HTK mel filterbank (no area norm), divided by the clip's
  maximum, raised to ``power_for_image`` (0.25), ``255 - 255 * v`` truncated to uint8 (loud is
  dark, silence is white), flipped so that low frequencies are at the bottom. Mono images hold the
  value in R, G and B; stereo images hold the left channel in G, the right one in B and 0 in R.
  The parameters (EXIF tags 11000-11070) and the clip's maximum (tag 11080) are written to EXIF.
* inverse: flip back, ``((255 - x) / 255) ** (1 / power_for_image) * max_value``, the
  minimum-norm least-squares inverse of the mel filterbank followed by ReLU (what
  ``torchaudio.transforms.InverseMelScale`` computes since torchaudio 2.1), then fast Griffin-Lim
  with momentum 0.99 and random initial phases (``torchaudio.transforms.GriffinLim``).

Some things are computed differently from torchaudio, with the same results (the tests check them
against torchaudio to float precision, and the images against Riffusion's golden image):

* the least-squares inverse of the filterbank is factored once per converter instead of being
  re-solved with ``torch.linalg.lstsq`` for every clip;
* the STFT works on the ``win_length`` samples the window keeps (4410 of the 17640 of Riffusion's
  frame) and on the frequency bins the mel filterbank covers (0-10 kHz: 4001 of 8821), which is
  all that a band-limited magnitude can depend on. Griffin-Lim draws its initial phases exactly as
  torchaudio does, so a seed gives Riffusion's output;
* on CPU the FFTs go through scipy's pocketfft, 2-3x faster than torch's MKL FFT at n_fft = 17640;
* the forward mel is a banded product (each bin feeds at most two triangles) instead of a dense one.
  Images stay within 1 grey level of the dense float32 computation's (on 15 s clips at most 0.003%
  of pixels differ by 1, as float32 rounding flips a truncation).

Griffin-Lim has three methods (``method=`` of :meth:`SpectrogramConverter.griffin_lim` and the
functions above it):

* ``"exact"`` (the converter's own default): Riffusion's inverse as above, equal to torchaudio's modules.
* ``"refined"`` (the pipelines' default, :data:`DEFAULT_GRIFFIN_LIM_METHOD`): 1.25 times the iterations
  (40 for 32) on the STFT whose FFT is the window's own length (4410 instead of 17640 for Riffusion's
  parameters: every 4th frequency bin of the zero-padded frame, the same frames and window), from
  uniformly random phases, then 0.25 times (8) on the full grid. Zero padding only interpolates the
  spectrum of a 4410-sample frame, so the coarse bins carry nearly all of its magnitude constraints at
  about a sixth of the cost per iteration; the full-grid iterations fit the bins in between. Measured
  (benchmarks/generation.py, 15 s clips): 2.9x the speed of Riffusion's steps with a lower mel spectral
  convergence on each clip (saxophone recording 0.031 vs 0.044, synthetic 0.084 vs 0.087); below
  Riffusion's for every golden seed on case A (a test checks it).
* ``"fast"``: 1.5 times the iterations, all but the last two on the coarse grid: 3.7x Riffusion's speed,
  but its spectral convergence is not lower on every clip (synthetic: 0.090 vs 0.087).

Everything is batched: audio ``(batch, channels, samples)``, mel amplitudes
``(batch, channels, num_frequencies, frames)``, images ``(batch, 3, num_frequencies, frames)``;
it runs on the device the :class:`SpectrogramConverter` is moved to.

Plain functions for files and PIL images: :func:`audio_to_image`, :func:`image_to_audio`,
:func:`load_audio`, :func:`save_audio`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import scipy.fft
import soundfile
import torch
import torchaudio
from PIL import Image

from .resampling import resample

__all__ = [
    "DEFAULT_GRIFFIN_LIM_METHOD",
    "GRIFFIN_LIM_METHODS",
    "EXIF_MAX_VALUE",
    "EXIF_MAX_VALUE_SCALE",
    "EXIF_TAGS",
    "GriffinLimMethod",
    "SpectrogramConverter",
    "SpectrogramParams",
    "audio_to_image",
    "get_converter",
    "image_to_audio",
    "images_from_pil",
    "images_to_pil",
    "load_audio",
    "peak_normalize",
    "save_audio",
]

# Riffusion's EXIF tags (riffusion/spectrogram_params.py, ``SpectrogramParams.ExifTags``).
EXIF_TAGS = {
    "sample_rate": 11000,
    "stereo": 11005,
    "step_size_ms": 11010,
    "window_duration_ms": 11020,
    "padded_duration_ms": 11030,
    "num_frequencies": 11040,
    "min_frequency": 11050,
    "max_frequency": 11060,
    "power_for_image": 11070,
}
EXIF_MAX_VALUE = 11080
# Riffusion reads 16-bit samples without scaling them, so its max values (tag 11080) are 32768
# times those of float audio; the tag holds Riffusion's units so that images are interchangeable.
EXIF_MAX_VALUE_SCALE = 32768.0

# Riffusion's output level: its audio_util normalises the peak to -0.1 dBFS.
RIFFUSION_PEAK_HEADROOM_DB = 0.1

# "exact": Riffusion's (torchaudio's) Griffin-Lim; "fast" and "refined": most iterations on the window-length FFT
# (a coarse frequency grid), then a few on the full grid; "refined" spends more of its time on the full grid.
GriffinLimMethod = Literal["exact", "fast", "refined"]
GRIFFIN_LIM_METHODS: tuple[str, ...] = get_args(GriffinLimMethod)
# The "fast" method runs 1.5 times the iterations (each costs about a sixth of an exact one), the last two
# on the full frequency grid (a polish of the bins in between): about a third of the exact method's time.
FAST_ITERATION_FACTOR = 1.5
FAST_FULL_GRID_ITERATIONS = 2
# The "refined" method, per iteration asked for: 1.25 coarse ones, then 0.25 on the full grid (40 + 8 for
# Riffusion's 32): about half of the exact method's time, and a lower mel spectral convergence than the exact
# method's on benchmarks/generation.py's 15 s clips (a saxophone recording and a synthetic clip); the other
# factors tried, and why they lost, are in docs/generation.md.
REFINED_COARSE_FACTOR = 1.25
REFINED_FULL_GRID_FACTOR = 0.25
# The pipelines' method (the converter's own functions default to "exact", Riffusion's output for a seed).
DEFAULT_GRIFFIN_LIM_METHOD: GriffinLimMethod = "refined"
# Bins per band of the banded forward mel product (fastest of 64-512 on 2 CPU cores for Riffusion's filterbank).
MEL_BAND_BINS = 256
# Frames per block of the forward transform: bounds its memory on long audio (108 MB per 15 s at once); a 15 s
# build slice is one block. Blocks of 128 frames took 10-25% less CPU on one thread but were 3x slower with two
# threads on a busy machine (each small op waits for the second thread), so blocks stay large.
FORWARD_BLOCK_FRAMES = 2048


@dataclass(frozen=True)
class SpectrogramParams:
    """Parameters of the spectrogram images; the defaults are Riffusion's (riffusion-model-v1).

    Derived sizes follow Riffusion: ``hop_length = int(step_size_ms / 1000 * sample_rate)`` (441,
    so an image has 100 columns per second), ``win_length`` 4410, ``n_fft`` 17640 (8821 bins,
    2.5 Hz apart), ``num_frequencies`` mel bins = the image height. Riffusion's ``max_mel_iters``
    is absent: it configured the SGD solver that torchaudio >= 2.1 replaced by least squares.
    """

    sample_rate: int = 44100
    stereo: bool = False
    step_size_ms: int = 10
    window_duration_ms: int = 100
    padded_duration_ms: int = 400
    num_frequencies: int = 512
    min_frequency: int = 0
    max_frequency: int = 10000
    mel_scale_norm: str | None = None
    mel_scale_type: str = "htk"
    num_griffin_lim_iters: int = 32
    griffin_lim_momentum: float = 0.99
    power_for_image: float = 0.25

    def __post_init__(self) -> None:
        for name in ("sample_rate", "step_size_ms", "window_duration_ms", "padded_duration_ms", "num_frequencies"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"SpectrogramParams.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.num_griffin_lim_iters, (int, np.integer)) or self.num_griffin_lim_iters < 0:
            raise ValueError(
                f"SpectrogramParams.num_griffin_lim_iters must be an integer >= 0, got {self.num_griffin_lim_iters!r}"
            )
        if not 0 <= self.min_frequency < self.max_frequency <= self.sample_rate / 2:
            raise ValueError(
                f"SpectrogramParams needs 0 <= min_frequency < max_frequency <= sample_rate / 2, got "
                f"min_frequency={self.min_frequency}, max_frequency={self.max_frequency}, sample_rate={self.sample_rate}"
            )
        if self.win_length > self.n_fft:
            raise ValueError(
                f"SpectrogramParams.window_duration_ms ({self.window_duration_ms}) must not exceed padded_duration_ms ({self.padded_duration_ms})"
            )
        if self.hop_length < 1:
            raise ValueError(
                f"SpectrogramParams.step_size_ms={self.step_size_ms} gives a hop of 0 samples at {self.sample_rate} Hz"
            )
        if self.mel_scale_type not in ("htk", "slaney"):
            raise ValueError(
                f"SpectrogramParams.mel_scale_type must be 'htk' or 'slaney', got {self.mel_scale_type!r}"
            )
        if self.mel_scale_norm not in (None, "slaney"):
            raise ValueError(f"SpectrogramParams.mel_scale_norm must be None or 'slaney', got {self.mel_scale_norm!r}")
        if not self.power_for_image > 0:
            raise ValueError(f"SpectrogramParams.power_for_image must be > 0, got {self.power_for_image!r}")
        if not 0 <= self.griffin_lim_momentum < 1:
            raise ValueError(
                f"SpectrogramParams.griffin_lim_momentum must be in [0, 1), got {self.griffin_lim_momentum!r}"
            )

    # Riffusion's derivations, int() truncation included.
    @property
    def hop_length(self) -> int:
        return int(self.step_size_ms / 1000.0 * self.sample_rate)

    @property
    def win_length(self) -> int:
        return int(self.window_duration_ms / 1000.0 * self.sample_rate)

    @property
    def n_fft(self) -> int:
        return int(self.padded_duration_ms / 1000.0 * self.sample_rate)

    @property
    def num_channels(self) -> int:
        return 2 if self.stereo else 1

    @property
    def columns_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    def width_for_num_samples(self, num_samples: int) -> int:
        """Image width of a clip of ``num_samples`` samples: ``1 + num_samples // hop_length``."""
        return 1 + int(num_samples) // self.hop_length

    def num_samples_for_width(self, width: int) -> int:
        """Samples the inverse returns for an image ``width`` columns wide: ``hop_length * (width - 1)``."""
        return self.hop_length * (int(width) - 1)

    def to_exif(self) -> dict[int, Any]:
        """Riffusion's EXIF tags 11000-11070 (the max value, 11080, belongs to each image)."""
        exif = {tag: getattr(self, name) for name, tag in EXIF_TAGS.items()}
        exif[EXIF_TAGS["stereo"]] = int(self.stereo)
        exif[EXIF_TAGS["power_for_image"]] = float(self.power_for_image)
        return exif

    @classmethod
    def from_exif(cls, exif: Mapping[int, Any]) -> SpectrogramParams:
        """Parameters from an image's EXIF; tags that are absent keep their default."""
        kwargs: dict[str, Any] = {}
        for name, tag in EXIF_TAGS.items():
            if tag in exif:
                value = exif[tag]
                kwargs[name] = (
                    bool(value) if name == "stereo" else float(value) if name == "power_for_image" else int(value)
                )
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SpectrogramParams:
        """Parameters from a mapping (e.g. a pipeline config); keys that are not parameters are ignored."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})


class SpectrogramConverter(torch.nn.Module):
    """Batched audio <-> mel amplitudes <-> spectrogram images for one :class:`SpectrogramParams`.

    Move it with ``.to(device)``. Audio is float in [-1, 1]; the mel amplitudes are in the same
    units (STFT magnitudes of that audio), so an image's max value is ``32768`` times smaller
    than Riffusion's, which reads 16-bit samples without scaling (the pixels are the same).
    """

    def __init__(self, params: SpectrogramParams | None = None) -> None:
        super().__init__()
        self.params = params = params if params is not None else SpectrogramParams()
        n_fft, win_length = params.n_fft, params.win_length
        filterbank = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1,
            float(params.min_frequency),
            float(params.max_frequency),
            params.num_frequencies,
            params.sample_rate,
            params.mel_scale_norm,
            params.mel_scale_type,
        )
        covered = (filterbank.abs().sum(dim=1) > 0).nonzero()
        if covered.numel() == 0:
            raise ValueError(f"SpectrogramParams {params} give a mel filterbank with no non-zero weight")
        # Bins above the last filter hold zero after the inverse mel, so the band is all that matters.
        self.num_bins = int(covered.max()) + 1
        band = filterbank[: self.num_bins].double()  # (bins, mels)
        self.register_buffer("mel_filterbank", band.float(), persistent=False)
        # Each bin feeds at most two adjacent triangles: the forward mel is a banded product, done in bands.
        self._mel_bands = _banded_blocks(band.float(), MEL_BAND_BINS)
        self.register_buffer("mel_inverse", _minimum_norm_inverse(band).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        # torch.stft centres the window in the n_fft frame; our frames start at the window, which
        # multiplies each bin by a fixed phase: needed only to start Griffin-Lim from torchaudio's phases.
        left = (n_fft - win_length) // 2
        turns = (torch.arange(self.num_bins, dtype=torch.int64) * left % n_fft).double() / n_fft
        self.register_buffer(
            "frame_phase",
            torch.polar(torch.ones_like(turns), 2 * math.pi * turns).to(torch.complex64),
            persistent=False,
        )
        # Samples between a frame's centre and the first sample the window keeps.
        self.lead = n_fft // 2 - left
        # The "fast" method's FFT: n_fft / coarse_stride, the shortest divisor of n_fft that still holds the window.
        self.coarse_stride = max(d for d in range(1, n_fft // win_length + 1) if n_fft % d == 0)

    # ---------------------------------------------------------------------------------- STFT
    def _stft(self, audio: torch.Tensor, stride: int = 1) -> torch.Tensor:
        """Complex STFT of ``(n, samples)``, band-limited: ``(n, frames, num_bins)``, frames start at the window.

        ``stride`` > 1 (a divisor of n_fft): the FFT of length ``n_fft / stride``, i.e. every ``stride``-th bin.
        """
        return self._band_fft(self._stft_frames(audio), stride)

    def _stft_frames(self, audio: torch.Tensor) -> torch.Tensor:
        """Windowed frames ``(n, frames, win_length)`` of ``(n, samples)``, reflect-padded as torch.stft(center=True)."""
        hop, win = self.params.hop_length, self.params.win_length
        if audio.shape[-1] <= max(self.lead, win - self.lead):
            raise ValueError(
                f"audio of {audio.shape[-1]} samples is too short for a window of {win} samples (reflect padding needs more)"
            )
        padded = torch.nn.functional.pad(audio[:, None], (self.lead, win - self.lead), mode="reflect")[:, 0]
        return padded.unfold(-1, win, hop) * self.window

    def _band_fft(self, frames: torch.Tensor, stride: int = 1) -> torch.Tensor:
        """The band-limited spectra of windowed frames ``(..., win_length)``: ``(..., num_bins / stride)``."""
        return _rfft(frames, self.params.n_fft // stride)[..., : -(-self.num_bins // stride)]

    def _overlap_add_envelope(self, num_frames: int) -> torch.Tensor:
        ones = torch.ones(1, num_frames, 1, device=self.window.device, dtype=self.window.dtype)
        return self._overlap_add(ones * self.window.square())[0]

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """Sum ``(n, frames, win_length)`` frames at their hops and keep torch.istft's output span."""
        hop, win = self.params.hop_length, self.params.win_length
        num_frames = frames.shape[1]
        length = hop * (num_frames - 1) + win
        out = torch.nn.functional.fold(
            frames.transpose(1, 2), output_size=(1, length), kernel_size=(1, win), stride=(1, hop)
        )
        return out.reshape(frames.shape[0], length)[:, self.lead : self.lead + hop * (num_frames - 1)]

    def _istft(self, spectrum: torch.Tensor, envelope: torch.Tensor, stride: int = 1) -> torch.Tensor:
        """Inverse of :meth:`_stft` (least-squares overlap-add, as torch.istft): ``(n, hop * (frames - 1))``."""
        frames = _irfft(spectrum, self.params.n_fft // stride)[..., : self.params.win_length] * self.window
        return self._overlap_add(frames) / envelope

    # ------------------------------------------------------------------------ audio <-> mel
    def audio_to_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """Mel amplitudes ``(..., num_frequencies, 1 + samples // hop_length)`` of audio ``(..., samples)``."""
        lead_shape = audio.shape[:-1]
        audio = audio.reshape(-1, audio.shape[-1]).to(device=self.window.device, dtype=torch.float32)
        # Long audio a block of frames at a time: each block's full FFT has 8821 bins, of which 4001 are kept.
        frames = self._stft_frames(audio)
        mel = torch.cat(
            [
                self._mel_product(torch.linalg.vector_norm(torch.view_as_real(self._band_fft(block)), dim=-1))
                for block in frames.split(FORWARD_BLOCK_FRAMES, dim=1)
            ],
            dim=1,
        )  # (n, frames, mels); vector_norm of (re, im) is |X|, faster than complex abs()
        return mel.transpose(1, 2).reshape(*lead_shape, self.params.num_frequencies, -1)

    def _mel_product(self, magnitude: torch.Tensor) -> torch.Tensor:
        """``magnitude @ mel_filterbank`` for ``(n, frames, num_bins)``, one small product per band of bins."""
        flat = magnitude.reshape(-1, magnitude.shape[-1])  # 2-D: a batched (3-D) matmul of slices is 10x slower
        mel = flat.new_zeros(flat.shape[0], self.params.num_frequencies)
        for start, stop, first_mel, stop_mel in self._mel_bands:
            mel[:, first_mel:stop_mel].addmm_(flat[:, start:stop], self.mel_filterbank[start:stop, first_mel:stop_mel])
        return mel.reshape(*magnitude.shape[:-1], -1)

    def mel_to_linear(self, mel: torch.Tensor) -> torch.Tensor:
        """Linear magnitudes ``(n, frames, num_bins)`` of mel amplitudes ``(..., mels, frames)``: least squares, then ReLU."""
        mel = mel.reshape(-1, *mel.shape[-2:]).to(device=self.window.device, dtype=torch.float32)
        if mel.shape[-2] != self.params.num_frequencies:
            raise ValueError(
                f"mel amplitudes have {mel.shape[-2]} bins, the parameters say num_frequencies={self.params.num_frequencies}"
            )
        return torch.relu(mel.transpose(1, 2) @ self.mel_inverse.T)

    def griffin_lim(
        self,
        magnitude: torch.Tensor,
        num_iters: int | None = None,
        generator: torch.Generator | None = None,
        callback: Callable[[int], None] | None = None,
        method: GriffinLimMethod = "exact",
    ) -> torch.Tensor:
        """Fast Griffin-Lim of band-limited magnitudes ``(n, frames, num_bins)`` -> audio ``(n, hop * (frames - 1))``.

        ``method="exact"``: the same algorithm, initial phases and output as
        ``torchaudio.transforms.GriffinLim(n_fft, win_length=..., hop_length=..., power=1, momentum=...,
        rand_init=True)`` seeded the same way: pass ``generator`` (or seed the global RNG, as Riffusion
        does). ``method="fast"``: 1.5 times the iterations, all but the last two on every
        ``coarse_stride``-th bin with the FFT of length ``n_fft / coarse_stride`` (see the module's
        docstring). ``method="refined"``: 1.25 times the iterations on that coarse grid, then 0.25 times
        on the full grid (40 + 8 for 32). Both start from uniformly random phases drawn from ``generator``.
        ``callback(i)`` is called after iteration ``i`` (a progress bar; there are
        :meth:`num_griffin_lim_steps` of them).
        """
        if method not in GRIFFIN_LIM_METHODS:
            raise ValueError(f"Griffin-Lim method must be one of {GRIFFIN_LIM_METHODS}, got {method!r}")
        num_iters = self.params.num_griffin_lim_iters if num_iters is None else num_iters
        n, num_frames, _ = magnitude.shape
        envelope = self._overlap_add_envelope(num_frames)
        if bool((envelope.abs() < 1e-11).any()):
            raise ValueError(
                f"window of {self.params.win_length} samples with hop {self.params.hop_length} does not overlap-add to a non-zero envelope"
            )
        if method == "exact":
            # torchaudio draws uniform complex values for the full one-sided spectrum, (n, freq, frames).
            phases = torch.rand(
                (n, self.params.n_fft // 2 + 1, num_frames),
                dtype=torch.complex64,
                generator=generator,
                device=magnitude.device,
            )
            angles = phases[:, : self.num_bins].transpose(1, 2) * self.frame_phase
            del phases
            angles = self._griffin_lim_iterations(magnitude, angles, envelope, range(num_iters), 1, callback)
            return self._istft(magnitude * angles, envelope)
        stride = self.coarse_stride
        coarse_iters, full_grid = self.griffin_lim_grid_iterations(num_iters, method)
        total = coarse_iters + full_grid
        coarse = magnitude[..., ::stride]
        turns = torch.rand(coarse.shape, generator=generator, device=magnitude.device)
        angles = torch.polar(torch.ones_like(turns), 2 * math.pi * turns)
        angles = self._griffin_lim_iterations(coarse, angles, envelope, range(coarse_iters), stride, callback)
        audio = self._istft(coarse * angles, envelope, stride)
        if not full_grid:
            return audio
        rebuilt = self._stft(audio)
        angles = rebuilt / rebuilt.abs().add_(1e-16)
        angles = self._griffin_lim_iterations(magnitude, angles, envelope, range(coarse_iters, total), 1, callback)
        return self._istft(magnitude * angles, envelope)

    def griffin_lim_grid_iterations(self, num_iters: int, method: GriffinLimMethod) -> tuple[int, int]:
        """How many iterations ``method`` ("fast" or "refined") runs on the coarse grid (the FFT of the window's own
        length), then on the full grid, for ``num_iters`` asked (what cards and Table 3 state)."""
        if method == "refined":
            coarse, full = (
                math.ceil(num_iters * REFINED_COARSE_FACTOR),
                math.ceil(num_iters * REFINED_FULL_GRID_FACTOR),
            )
        else:
            total = math.ceil(num_iters * FAST_ITERATION_FACTOR)
            full = min(FAST_FULL_GRID_ITERATIONS, total // 8)
            coarse = total - full
        if self.coarse_stride == 1:  # the window fills the frame: the coarse grid is the full one
            return coarse + full, 0
        return coarse, full

    def num_griffin_lim_steps(self, num_iters: int | None = None, method: GriffinLimMethod = "exact") -> int:
        """How many iterations (callbacks) :meth:`griffin_lim` runs for ``num_iters`` with ``method``."""
        num_iters = self.params.num_griffin_lim_iters if num_iters is None else num_iters
        return num_iters if method == "exact" else sum(self.griffin_lim_grid_iterations(num_iters, method))

    def _griffin_lim_iterations(
        self,
        magnitude: torch.Tensor,
        angles: torch.Tensor,
        envelope: torch.Tensor,
        iterations: range,
        stride: int,
        callback: Callable[[int], None] | None,
    ) -> torch.Tensor:
        """Fast Griffin-Lim (Perraudin et al. 2013, torchaudio's update) from ``angles``: the final unit phases."""
        momentum = self.params.griffin_lim_momentum
        momentum = momentum / (1 + momentum)
        previous = None
        for iteration in iterations:
            rebuilt = self._stft(self._istft(magnitude * angles, envelope, stride), stride)
            angles = rebuilt if previous is None else torch.sub(rebuilt, previous, alpha=momentum)
            angles = angles / angles.abs().add_(1e-16)
            previous = rebuilt
            if callback is not None:
                callback(iteration)
        return angles

    def mel_to_audio(
        self,
        mel: torch.Tensor,
        num_iters: int | None = None,
        generator: torch.Generator | None = None,
        callback: Callable[[int], None] | None = None,
        method: GriffinLimMethod = "exact",
    ) -> torch.Tensor:
        """Audio ``(..., hop_length * (frames - 1))`` from mel amplitudes ``(..., num_frequencies, frames)``."""
        magnitude = self.mel_to_linear(mel)
        audio = self.griffin_lim(magnitude, num_iters=num_iters, generator=generator, callback=callback, method=method)
        return audio.reshape(*mel.shape[:-2], -1)

    # ----------------------------------------------------------------------- mel <-> images
    def mel_to_images(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Riffusion images of mel amplitudes ``(batch, channels, mels, frames)``.

        Returns uint8 images ``(batch, 3, mels, frames)`` (row 0 = highest mel bin) and each clip's
        max value ``(batch,)`` (one max over all channels of a clip, as Riffusion).
        """
        self._check_channels(mel.shape[1], "mel amplitudes")
        max_values = mel.amax(dim=(1, 2, 3))
        # A silent clip has max 0: Riffusion would divide by zero; a white image is the answer.
        scaled = mel / torch.where(max_values > 0, max_values, 1.0)[:, None, None, None]
        pixels = (
            (255 - 255 * scaled.pow(self.params.power_for_image)).clamp(0, 255).to(torch.uint8)
        )  # truncates, as astype
        pixels = pixels.flip(-2)
        if self.params.stereo:
            images = torch.cat([torch.zeros_like(pixels[:, :1]), pixels], dim=1)
        else:
            images = pixels.expand(-1, 3, -1, -1).contiguous()
        return images, max_values

    def images_to_mel(self, images: torch.Tensor, max_values: torch.Tensor | float | None = None) -> torch.Tensor:
        """Mel amplitudes ``(batch, channels, mels, frames)`` of images ``(batch, 3, mels, frames)``.

        ``images`` are uint8 (0-255) or float in [0, 1] (a VAE's output, not quantised). Mono reads
        R, stereo reads G and B. ``max_values`` (per clip, or one number) scales the amplitudes; 1 by default.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (batch, 3, height, width), got shape {tuple(images.shape)}")
        if images.shape[2] != self.params.num_frequencies:
            raise ValueError(
                f"images are {images.shape[2]} px high, the parameters say num_frequencies={self.params.num_frequencies}"
            )
        images = images.to(self.window.device)
        if images.dtype == torch.uint8:
            darkness = (255 - images.float()) / 255
        elif images.is_floating_point():
            darkness = 1 - images.float().clamp(0, 1)
        else:
            raise ValueError(f"images must be uint8 or floating point, got {images.dtype}")
        darkness = darkness[:, 1:3] if self.params.stereo else darkness[:, :1]
        mel = darkness.flip(-2).pow(1 / self.params.power_for_image)
        if max_values is not None:
            mel = mel * torch.as_tensor(max_values, dtype=mel.dtype, device=mel.device).reshape(-1, 1, 1, 1)
        return mel

    # --------------------------------------------------------------------- audio <-> images
    def audio_to_images(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images ``(batch, 3, mels, frames)`` and max values ``(batch,)`` of audio ``(batch, channels, samples)``."""
        if audio.ndim != 3:
            raise ValueError(f"audio must be (batch, channels, samples), got shape {tuple(audio.shape)}")
        return self.mel_to_images(self.audio_to_mel(audio))

    def images_to_audio(
        self,
        images: torch.Tensor,
        max_values: torch.Tensor | float | None = None,
        num_iters: int | None = None,
        generator: torch.Generator | None = None,
        callback: Callable[[int], None] | None = None,
        method: GriffinLimMethod = "exact",
    ) -> torch.Tensor:
        """Audio ``(batch, channels, hop_length * (width - 1))`` of images ``(batch, 3, mels, width)``."""
        mel = self.images_to_mel(images, max_values)
        return self.mel_to_audio(mel, num_iters=num_iters, generator=generator, callback=callback, method=method)

    def _check_channels(self, channels: int, what: str) -> None:
        if channels != self.params.num_channels:
            raise ValueError(
                f"{what} have {channels} channel(s), the parameters say stereo={self.params.stereo} ({self.params.num_channels})"
            )


def _banded_blocks(filterbank: torch.Tensor, rows: int) -> list[tuple[int, int, int, int]]:
    """``(first_bin, stop_bin, first_mel, stop_mel)`` of each ``rows``-bin band: the mels its non-zero weights reach."""
    blocks = []
    for start in range(0, filterbank.shape[0], rows):
        reached = (filterbank[start : start + rows] != 0).any(dim=0).nonzero()
        if reached.numel():
            blocks.append((start, min(start + rows, filterbank.shape[0]), int(reached.min()), int(reached.max()) + 1))
    return blocks


def _rfft(frames: torch.Tensor, n: int) -> torch.Tensor:
    """``torch.fft.rfft(frames, n=n)``; on CPU through scipy's pocketfft, 2-3x faster than torch's MKL for
    Riffusion's ``n_fft`` = 17640 (2^3 3^2 5 7^2), with the same values to float precision. It uses as many
    threads as torch (``torch.get_num_threads()``), so a builder worker pinned to one torch thread stays on one."""
    if frames.device.type != "cpu" or frames.requires_grad:
        return torch.fft.rfft(frames, n=n)
    return torch.from_numpy(scipy.fft.rfft(frames.numpy(), n=n, workers=_fft_workers(frames)))


def _irfft(spectrum: torch.Tensor, n: int) -> torch.Tensor:
    """``torch.fft.irfft(spectrum, n=n)``, on CPU through scipy (see :func:`_rfft`)."""
    if spectrum.device.type != "cpu" or spectrum.requires_grad:
        return torch.fft.irfft(spectrum, n=n)
    return torch.from_numpy(scipy.fft.irfft(spectrum.numpy(), n=n, workers=_fft_workers(spectrum)))


def _fft_workers(batch: torch.Tensor) -> int:
    """scipy's FFT threads: torch's thread count, but never more than the transforms in ``batch``."""
    transforms = batch.numel() // max(batch.shape[-1], 1) if batch.dim() else 1
    return max(1, min(torch.get_num_threads(), transforms))


def _minimum_norm_inverse(filterbank: torch.Tensor) -> torch.Tensor:
    """``P`` with ``P @ mel`` = the minimum-norm solution of ``filterbank.T @ x = mel`` (what LAPACK gels gives)."""
    gram = filterbank.T @ filterbank
    factor, info = torch.linalg.cholesky_ex(gram)
    if int(info) == 0:
        return filterbank @ torch.cholesky_inverse(factor)
    # Rank-deficient filterbank (empty filters): the pseudo-inverse is the minimum-norm answer.
    return torch.linalg.pinv(filterbank.T)


@functools.lru_cache(maxsize=8)
def _cached_converter(params: SpectrogramParams, device: str) -> SpectrogramConverter:
    return SpectrogramConverter(params).to(device)


def get_converter(
    params: SpectrogramParams | None = None, device: str | torch.device | None = None
) -> SpectrogramConverter:
    """A converter for ``params`` on ``device`` (CPU by default), built once per process and reused."""
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return _cached_converter(params if params is not None else SpectrogramParams(), str(device))


def peak_normalize(audio: torch.Tensor, headroom_db: float = RIFFUSION_PEAK_HEADROOM_DB) -> torch.Tensor:
    """Scale each clip of ``(batch, channels, samples)`` so its peak is ``-headroom_db`` dBFS (Riffusion: -0.1)."""
    peak = audio.abs().amax(dim=tuple(range(1, audio.ndim)), keepdim=True)
    target = 10 ** (-headroom_db / 20)
    return audio * torch.where(peak > 0, target / peak, 1.0)


# ------------------------------------------------------------------------- PIL and files
def images_to_pil(
    images: torch.Tensor, params: SpectrogramParams, max_values: torch.Tensor | Sequence[float] | None = None
) -> list[Image.Image]:
    """RGB PIL images of uint8 images ``(batch, 3, H, W)``, with Riffusion's EXIF (and the max values if given).

    ``max_values`` are in float-audio units (as :meth:`SpectrogramConverter.mel_to_images` returns
    them); tag 11080 holds them times 32768, in Riffusion's units.

    ``image.save(path)`` keeps the EXIF (it is set as the image's ``encoderinfo``), as does
    Riffusion's ``image.save(path, exif=image.getexif())``.
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"images_to_pil needs uint8 images, got {images.dtype}")
    arrays = images.permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for k, array in enumerate(arrays):
        image = Image.fromarray(np.ascontiguousarray(array), mode="RGB")
        exif = image.getexif()
        exif.update(params.to_exif())
        if max_values is not None:
            exif[EXIF_MAX_VALUE] = float(max_values[k]) * EXIF_MAX_VALUE_SCALE
        image.encoderinfo = {"exif": exif.tobytes()}
        out.append(image)
    return out


def images_from_pil(images: Sequence[Image.Image]) -> torch.Tensor:
    """uint8 ``(batch, 3, H, W)`` tensor of PIL images of one size (converted to RGB)."""
    arrays = [np.asarray(image.convert("RGB")) for image in images]
    if len({array.shape for array in arrays}) != 1:
        raise ValueError(f"images must all have one size, got {sorted({array.shape[:2] for array in arrays})}")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _as_audio_tensor(audio: np.ndarray | torch.Tensor, sample_rate: int, params: SpectrogramParams) -> torch.Tensor:
    audio = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    if np.issubdtype(audio.dtype, np.integer):  # PCM samples: scale to [-1, 1] so the EXIF max is in known units
        audio = audio / float(np.iinfo(audio.dtype).max + 1)
    audio = torch.as_tensor(audio, dtype=torch.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2 or audio.shape[0] not in (1, 2):
        raise ValueError(f"audio must be (channels, samples) with 1 or 2 channels, got shape {tuple(audio.shape)}")
    if params.stereo and audio.shape[0] == 1:
        audio = audio.expand(2, -1)
    elif not params.stereo and audio.shape[0] == 2:
        audio = audio.mean(dim=0, keepdim=True)  # pydub set_channels(1): (L + R) / 2
    if int(sample_rate) != params.sample_rate:
        audio = resample(audio, int(sample_rate), params.sample_rate, method="torchaudio_hann")
    return audio


def audio_to_image(
    audio: np.ndarray | torch.Tensor,
    sample_rate: int,
    params: SpectrogramParams | None = None,
    *,
    width: int | None = None,
    device: str | torch.device | None = None,
) -> Image.Image:
    """Riffusion spectrogram image of ``audio`` ``(channels, samples)`` float in [-1, 1] (or ``(samples,)``;
    integer PCM samples are scaled to [-1, 1]).

    The audio is resampled to ``params.sample_rate``, mixed to mono ((L + R) / 2) or duplicated to
    stereo as the parameters say. ``width`` pads with silence or trims the audio to
    ``params.num_samples_for_width(width)`` samples, so that the image is exactly ``width`` columns
    wide (1536 for a 15 s generation image); without it the width is ``1 + samples // hop_length``.
    """
    params = params if params is not None else SpectrogramParams()
    audio = _as_audio_tensor(audio, sample_rate, params)
    if width is not None:
        if int(width) < 2:
            raise ValueError(f"width must be at least 2 columns, got {width}")
        target = params.num_samples_for_width(width)
        audio = torch.nn.functional.pad(audio, (0, max(0, target - audio.shape[-1])))[:, :target]
    converter = get_converter(params, device)
    images, max_values = converter.audio_to_images(audio[None])
    return images_to_pil(images, params, max_values)[0]


def image_to_audio(
    image: Image.Image | str | Path,
    params: SpectrogramParams | None = None,
    *,
    max_value: float | None = None,
    num_iters: int | None = None,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    method: GriffinLimMethod = "exact",
) -> tuple[np.ndarray, int]:
    """Audio ``(channels, samples)`` float32 and its sample rate from a spectrogram image (PIL or a path).

    ``params`` default to the image's EXIF (Riffusion's tags), then to Riffusion's defaults. The
    level: with a max value (``max_value`` in float-audio units, else EXIF tag 11080 / 32768, which
    :func:`audio_to_image` and Riffusion's converter write) the audio comes back at its original
    level; without one it is peak-normalised to -0.1 dBFS, as Riffusion does. ``method``: Griffin-Lim's
    (``"exact"`` = Riffusion's output for a seed, ``"refined"`` = the pipelines' default, ``"fast"``; see the
    module's docstring).
    """
    if isinstance(image, (str, Path)):
        with Image.open(image) as opened:
            opened.load()
            image = opened
    exif = image.getexif()
    if params is None:
        params = SpectrogramParams.from_exif(exif)
    if max_value is None and EXIF_MAX_VALUE in exif:
        max_value = float(exif[EXIF_MAX_VALUE]) / EXIF_MAX_VALUE_SCALE
    converter = get_converter(params, device)
    audio = converter.images_to_audio(
        images_from_pil([image]), max_values=max_value, num_iters=num_iters, generator=generator, method=method
    )
    if max_value is None:
        audio = peak_normalize(audio)
    return audio[0].cpu().numpy(), params.sample_rate


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Audio file -> ``(channels, samples)`` float32 in [-1, 1] and its sample rate (soundfile)."""
    data, sample_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), int(sample_rate)


def save_audio(path: str | Path, audio: np.ndarray | torch.Tensor, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write ``(channels, samples)`` (or ``(samples,)``) float audio as a WAV file, clipped to [-1, 1]."""
    audio = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2:
        raise ValueError(f"audio must be (channels, samples), got shape {audio.shape}")
    path = Path(path)
    soundfile.write(str(path), np.clip(audio.T, -1.0, 1.0), int(sample_rate), subtype=subtype)
    return path
