"""Speech detection for the dataset build: silero-vad, run as one ONNX call per signal.

Every story records the share of 32 ms windows in which silero-vad hears speech, before and
after speech removal, and the ``center`` separator uses the same probabilities to gate its mask.
The silero-vad wheel ships, next to its TorchScript model, ``silero_vad_16k_sequence.onnx``: the
same network with the LSTM unrolled over a whole sequence of windows, so one ``onnxruntime``
call scores a whole story instead of one Python call per 32 ms window. Its probabilities equal
the TorchScript model's to within 1e-3, and the speech ratios to within 0.002 (tested). The
alternatives are slower or change the ratios (``benchmarks/build_throughput.py`` measures them;
docs/building.md has its table):

* TorchScript, both signals batched: several times slower.
* the stateful ONNX model window by window, at 16 kHz or 8 kHz: slower (one call per window).
* the stateful model over independent segments batched together: the LSTM's long memory makes
  the ratios drift by several times the tolerance, even with 1 s of warm-up.
* every n-th window: the LSTM then sees a different time scale; the ratios move by about 0.03 at n = 2.

``engine="torch"`` keeps silero's own TorchScript model, the reference the tests compare with.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from scipy import ndimage

from sound_of_story.audio import resample

VadEngine = Literal["onnx", "torch"]
VAD_ENGINES: tuple[str, ...] = get_args(VadEngine)
VAD_SAMPLE_RATE = 16_000
VAD_WINDOW = 512  # samples at 16 kHz: silero-vad's window (32 ms)
VAD_CONTEXT = 64  # samples of the previous window silero-vad prepends to each window
SPEECH_THRESHOLD = 0.5  # silero's own default: a window is speech above this probability
SEQUENCE_MODEL = "silero_vad_16k_sequence.onnx"


def _silero_data_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("silero-vad is not installed (pip install silero-vad): the build's speech detector")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@functools.lru_cache(maxsize=1)
def _onnx_session():
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # the model is small; parallelism comes from running stories side by side
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # the file carries unused initialisers onnxruntime warns about
    path = _silero_data_dir() / SEQUENCE_MODEL
    if not path.is_file():
        raise FileNotFoundError(f"{path}: silero-vad's sequence ONNX model is missing (silero-vad >= 6.2 ships it)")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@functools.lru_cache(maxsize=1)
def _torch_model():
    import torch

    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad  # importing it sets torch to one thread: undo that

    torch.set_num_threads(threads)
    with warnings.catch_warnings():  # its loader uses APIs that importlib and torch deprecate
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_silero_vad(onnx=False)


def vad_input(*audios: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono mixes at 16 kHz, float32, one row per signal (all of one length)."""
    monos = [np.asarray(a, dtype=np.float32) for a in audios]
    monos = [m.mean(axis=0) if m.ndim == 2 else m for m in monos]
    if len({m.size for m in monos}) != 1:
        raise ValueError(f"signals scored together must have one length, got {[m.size for m in monos]} samples")
    # polyphase: the fastest method on CPU, and the one the speech ratios and their test tolerances
    # were measured with; equal rates give the stack itself.
    resampled = resample(np.stack(monos), int(sample_rate), VAD_SAMPLE_RATE, method="polyphase")
    return resampled.astype(np.float32, copy=False)


def _windows_with_context(x: np.ndarray) -> np.ndarray:
    """(windows, 64 + 512): each 512-sample window after the last 64 samples of the one before (zeros first)."""
    n = -(-x.size // VAD_WINDOW)  # the last partial window zero-padded, as silero's audio_forward does
    frames = np.pad(x, (0, n * VAD_WINDOW - x.size)).reshape(n, VAD_WINDOW)
    context = np.concatenate([np.zeros((1, VAD_CONTEXT), np.float32), frames[:-1, -VAD_CONTEXT:]])
    return np.ascontiguousarray(np.concatenate([context, frames], axis=1))


def _onnx_probabilities(x: np.ndarray) -> np.ndarray:
    session = _onnx_session()
    state = np.zeros((1, 1, 128), np.float32)
    return session.run(None, {"input": _windows_with_context(x), "h": state, "c": state.copy()})[0].astype(np.float32)


@contextlib.contextmanager
def one_torch_thread():
    """Run torch on one thread inside the block, then restore the caller's count.

    For the build's small torch ops (silero's TorchScript VAD, the centre separator): each takes
    milliseconds, too little to share between threads, and on a busy machine a second OpenMP thread
    that is not scheduled makes every op wait for it (the centre separator ran about 8x slower on two
    threads than on one on a loaded 2-core machine; docs/building.md).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _torch_probabilities(xs: np.ndarray) -> np.ndarray:
    import torch

    model = _torch_model()
    model.reset_states()
    with one_torch_thread(), torch.inference_mode():  # the model is tiny (silero's own default is one thread)
        return model.audio_forward(torch.from_numpy(xs), VAD_SAMPLE_RATE).numpy().astype(np.float32)


def speech_probabilities(*audios: np.ndarray, sample_rate: int, engine: VadEngine = "onnx") -> np.ndarray:
    """silero-vad speech probability of every 32 ms window (16 kHz, 512 samples).

    ``audios`` are (channels, samples) or (samples,) arrays of one length at ``sample_rate``;
    the result is ``(len(audios), windows)``, or ``(windows,)`` for one signal.
    """
    if engine not in VAD_ENGINES:
        raise ValueError(f"VAD engine must be one of {', '.join(VAD_ENGINES)}, got {engine!r}")
    xs = vad_input(*audios, sample_rate=sample_rate)
    if xs.shape[1] < VAD_WINDOW:
        probs = np.zeros((len(xs), 0), dtype=np.float32)
    elif engine == "onnx":
        probs = np.stack([_onnx_probabilities(x) for x in xs])
    else:
        probs = _torch_probabilities(xs)
    return probs[0] if len(audios) == 1 else probs


def ratio_of(probabilities: np.ndarray, threshold: float = SPEECH_THRESHOLD) -> float:
    """Share of windows whose speech probability exceeds ``threshold`` (0.0 for no window)."""
    p = np.asarray(probabilities)
    return float(np.mean(p > threshold)) if p.size else 0.0


def speech_ratio(
    *audios: np.ndarray, sample_rate: int, threshold: float = SPEECH_THRESHOLD, engine: VadEngine = "onnx"
):
    """Share of silero-vad windows with speech probability above ``threshold`` (one float per signal)."""
    probs = np.atleast_2d(speech_probabilities(*audios, sample_rate=sample_rate, engine=engine))
    ratios = [ratio_of(p, threshold) for p in probs]
    return ratios[0] if len(audios) == 1 else tuple(ratios)


def speech_gate(
    probabilities: np.ndarray,
    times: np.ndarray,
    threshold: float = SPEECH_THRESHOLD,
    padding_s: float = 0.5,
    fade_s: float = 0.2,
) -> np.ndarray:
    """A 0..1 weight at each of ``times`` (seconds): 1 where someone speaks, 0 where nobody does.

    A window's weight rises from 0 at half the threshold to 1 at the threshold (probabilities of
    music alone stay far below it), spreads ``padding_s`` to either side (silero reacts a little
    late and speech onsets are soft), then fades in and out over ``fade_s``.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if p.size == 0:
        return np.zeros(times.shape)
    weight = np.clip(2.0 * p / threshold - 1.0, 0.0, 1.0)
    per_second = VAD_SAMPLE_RATE / VAD_WINDOW
    pad = int(round(padding_s * per_second))
    if pad:
        weight = ndimage.maximum_filter1d(weight, 2 * pad + 1, mode="nearest")
    fade = int(round(fade_s * per_second))
    if fade > 1:
        weight = ndimage.uniform_filter1d(weight, fade, mode="nearest")
    index = np.clip((times * per_second).astype(np.int64), 0, p.size - 1)
    return weight[index]


__all__: Sequence[str] = (
    "VAD_ENGINES", "VAD_SAMPLE_RATE", "VAD_WINDOW", "SPEECH_THRESHOLD", "VadEngine",
    "vad_input", "speech_probabilities", "speech_ratio", "ratio_of", "speech_gate",
)  # fmt: skip
