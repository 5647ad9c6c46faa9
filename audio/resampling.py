"""The package's one resampling function, :func:`resample`, for numpy arrays and torch tensors.

Four methods (:data:`RESAMPLING_METHODS`), one per need; every caller in the package names the one it uses:

- ``"resampy"`` (the default): ``resampy.resample(..., filter="kaiser_best")``, the resampler
  torchvggish and the VGGish FAD tools call, so VGGish embeddings of 44.1 kHz audio equal theirs.
  The metrics (``metrics/fad``), the retrieval processor and the demo report use it.
- ``"torchaudio"``: ``torchaudio.functional.resample`` with a Kaiser-windowed sinc set up like
  ``kaiser_best`` (width 64, rolloff 0.9476, beta 14.77, as fadtk imitates it): several times
  faster, and within a few 1e-4 of resampy on band-limited audio (the measured deviation is in
  ``metrics/fad/README.md``); ``evaluate generation --resampler torchaudio``.
- ``"torchaudio_hann"``: ``torchaudio.functional.resample`` with torchaudio's own defaults (Hann
  window, width 6, rolloff 0.99): a short filter that runs on the tensor's device. The spectrogram
  converter (``audio/spectrogram.py``) resamples audio tensors, possibly on a GPU, with it.
- ``"polyphase"``: ``scipy.signal.resample_poly`` with the rate ratio reduced by their gcd (scipy's
  default Kaiser window, beta 5): the fastest on CPU for the builder's integer ratios. The
  dataset builder uses it: the speech detector's 16 kHz input (``voice_activity.vad_input``: its
  speech ratios were measured with it and are tolerant of its short filter), the sample clips'
  espeak-ng speech (``samples/timeline.py``: the clips of a seed stay byte-identical) and the
  dialogue test mix (``dialogue_mix.py``: the speech-removal figures stay as measured).

All methods resample along the last axis, so mono ``(samples,)`` and channels-first
``(channels, samples)`` inputs (the package's layout, :mod:`.layout`) work. Output lengths are
each method's own (:func:`resampled_length`): ``int(n * target / source)`` for ``resampy`` and
``torchaudio`` (resampy's), ``ceil(n * target / source)`` for ``polyphase`` and ``torchaudio_hann``
(scipy's and torchaudio's), so that their callers' outputs did not change when they moved here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

import numpy as np

if TYPE_CHECKING:
    import torch

# Every method resample() takes.
ResamplingMethod = Literal["resampy", "torchaudio", "torchaudio_hann", "polyphase"]
RESAMPLING_METHODS: tuple[str, ...] = get_args(ResamplingMethod)
# The methods the embedders offer (``resampler=``, ``evaluate generation --resampler``): those whose
# anti-aliasing keeps VGGish log-mels of 48 kHz audio as torchvggish's (tests/test_metrics_fad.py:
# mean deviation 1e-3 and below). The short polyphase and Hann filters leak a 12 kHz tone into
# them (mean 0.022 and 0.053, max 0.95 and 2.1 log-mel units; docs/evaluation.md), so they are no option there.
Resampler = Literal["resampy", "torchaudio"]
RESAMPLERS: tuple[str, ...] = get_args(Resampler)
DEFAULT_RESAMPLER: Resampler = "resampy"

# resampy's kaiser_best, in torchaudio's terms.
TORCHAUDIO_KAISER_BEST = {
    "lowpass_filter_width": 64,
    "rolloff": 0.9475937167399596,
    "resampling_method": "sinc_interp_kaiser",
    "beta": 14.769656459379492,
}
# The methods torchaudio runs (on a tensor's own device), with their filter settings; {} = its defaults.
TORCHAUDIO_SETTINGS: dict[str, dict[str, Any]] = {"torchaudio": TORCHAUDIO_KAISER_BEST, "torchaudio_hann": {}}
# Methods whose output is cut to resampy's floor length; the others keep their library's ceil length.
FLOOR_LENGTH_METHODS = ("resampy", "torchaudio")
# What each embedder resampler's output depends on: part of every embedding-cache key.
RESAMPLER_NAMES = {"resampy": "resampy-0.4-kaiser_best", "torchaudio": "torchaudio-sinc-kaiser-w64-r0.9476-b14.77"}

Audio = TypeVar("Audio", np.ndarray, "torch.Tensor")


def check_resampler(
    method: str, name: str = "resampler", choices: tuple[str, ...] = RESAMPLERS
) -> Resampler | ResamplingMethod:
    """``method`` if it is one of ``choices`` (the embedders' :data:`RESAMPLERS` unless told), else a
    ``ValueError`` naming the argument ``name``."""
    if method not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {method!r}")
    return method  # type: ignore[return-value]


def _check_rate(rate: Any, name: str) -> int:
    if isinstance(rate, bool) or int(rate) != rate or int(rate) <= 0:
        raise ValueError(f"{name} must be a positive whole number of Hz, got {rate!r}")
    return int(rate)


def resampled_length(
    num_samples: int, source_rate: int, target_rate: int, method: ResamplingMethod = DEFAULT_RESAMPLER
) -> int:
    """The number of samples :func:`resample` returns for ``num_samples`` input samples.

    ``int(n * target / source)`` for ``resampy`` and ``torchaudio`` (resampy's: the tail fraction of a
    sample is dropped); ``ceil(n * target / source)`` for ``polyphase`` and ``torchaudio_hann``.
    """
    if method in FLOOR_LENGTH_METHODS:
        return int(num_samples * float(target_rate) / float(source_rate))
    return -(-num_samples * int(target_rate) // int(source_rate))


def _is_tensor(waveform: Any) -> bool:
    return hasattr(waveform, "detach") and hasattr(waveform, "device")  # torch, without importing it


def resample(
    waveform: Audio, source_rate: int, target_rate: int, *, method: ResamplingMethod = DEFAULT_RESAMPLER
) -> Audio:
    """Resample float audio along its last axis from ``source_rate`` to ``target_rate`` Hz.

    Args:
        waveform: ``(samples,)`` or ``(channels, samples)`` float samples (any leading axes work), a numpy
            array or a torch tensor. The result is of the same kind and dtype (float32 stays float32), and
            a tensor stays on its device: the torchaudio methods run there, ``resampy`` and ``polyphase``
            on the CPU.
        source_rate, target_rate: positive whole rates in Hz; equal rates return ``waveform`` itself.
        method: ``"resampy"`` (default, torchvggish's), ``"torchaudio"`` (faster Kaiser sinc),
            ``"torchaudio_hann"`` (torchaudio's defaults) or ``"polyphase"`` (scipy's ``resample_poly``);
            see the module docstring for which caller uses which and why.

    Raises:
        ValueError: an unknown ``method``, a rate that is not a positive whole number, integer samples,
            or too few samples to give one output sample.
    """
    check_resampler(method, "method", RESAMPLING_METHODS)
    source_rate, target_rate = _check_rate(source_rate, "source_rate"), _check_rate(target_rate, "target_rate")
    if source_rate == target_rate:
        return waveform
    is_tensor = _is_tensor(waveform)
    if not is_tensor:
        waveform = np.asarray(waveform)
    floating = waveform.dtype.is_floating_point if is_tensor else waveform.dtype.kind == "f"
    if not floating:
        raise ValueError(
            f"waveform must hold float samples, got dtype {waveform.dtype}; scale integer PCM to [-1, 1] first"
        )
    length = resampled_length(waveform.shape[-1], source_rate, target_rate, method)
    if length < 1:
        raise ValueError(
            f"{waveform.shape[-1]} samples at {source_rate} Hz are too few to resample to {target_rate} Hz"
        )

    if method in TORCHAUDIO_SETTINGS:
        import torch
        import torchaudio.functional

        tensor = waveform if is_tensor else torch.from_numpy(np.ascontiguousarray(waveform))
        out = torchaudio.functional.resample(tensor, source_rate, target_rate, **TORCHAUDIO_SETTINGS[method])
        if method in FLOOR_LENGTH_METHODS:
            out = out[..., :length]
        return out if is_tensor else out.numpy()

    if is_tensor:  # resampy and scipy work on numpy: resample on the CPU, return to the tensor's device
        import torch

        out = resample(waveform.detach().cpu().numpy(), source_rate, target_rate, method=method)
        return torch.from_numpy(np.ascontiguousarray(out)).to(device=waveform.device, dtype=waveform.dtype)
    if method == "resampy":
        import resampy

        return resampy.resample(waveform, source_rate, target_rate, axis=-1, filter="kaiser_best")
    from scipy import signal

    g = np.gcd(source_rate, target_rate)
    return signal.resample_poly(waveform, target_rate // g, source_rate // g, axis=-1)
