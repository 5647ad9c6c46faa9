"""VGGish in PyTorch, with torchvggish's input pipeline and checkpoint format.

Reproduces harritaylor/torchvggish (commit f3f9096), which itself ports Google's TF VGGish:

- :func:`waveform_to_examples`: 16 kHz mono waveform -> log-mel examples ``(N, 1, 96, 64)``
  (25 ms periodic-Hann window, 10 ms hop, FFT 512, magnitude spectrum, 64 HTK mel bands from
  125 to 7500 Hz, ``log(mel + 0.01)``, non-overlapping 0.96 s examples; computed in float64
  like torchvggish's numpy code).
- :class:`VGGish`: the network, with the state-dict keys of ``vggish-10086976.pth`` and the
  (time, frequency, channel) flatten order of the TF original. ``final_relu=False`` drops the
  ReLU after the last linear layer (the FAD convention: TF VGGish's embedding is
  pre-activation); ``pca_params`` adds torchvggish's PCA + 8-bit quantisation post-processor.

Deviations from torchvggish, on purpose: the model never moves itself to CUDA, runs under
``torch.inference_mode``, accepts tensors, and never ``squeeze``-s a one-example batch to
``(128,)``; float WAV files are read with their real scale (torchvggish reads any file as
int16 and so turns a float WAV into near-silence). Resampling lives in
:mod:`sound_of_story.metrics.fad.audio_input` (torchaudio, not resampy).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sound_of_story.core.hashing import model_fingerprint

SAMPLE_RATE = 16_000
NUM_MEL_BINS = 64
NUM_FRAMES = 96  # 10 ms frames per example: 0.96 s
EMBEDDING_DIM = 128
STFT_WINDOW_SECONDS = 0.025
STFT_HOP_SECONDS = 0.010
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_WINDOW_SECONDS = 0.96
EXAMPLE_HOP_SECONDS = 0.96
QUANTIZE_MIN_VAL = -2.0
QUANTIZE_MAX_VAL = 2.0
# The shortest waveform that gives one example: 400 + 95 * 160 samples (0.975 s, not 0.96 s).
MIN_NUM_SAMPLES = 15_600

CHECKPOINT_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
PCA_PARAMS_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish_pca_params-970ea276.pth"
CHECKPOINT_HELP = (
    "VGGish weights are not bundled (no package ships them). Download torchvggish's release file "
    f"vggish-10086976.pth from {CHECKPOINT_URL} (harritaylor/torchvggish, release v0.1; Apache-2.0) "
    "and pass its local path. For an offline smoke test only, ask for random weights explicitly."
)

# Parameter names and shapes of vggish-10086976.pth, in file order.
STATE_DICT_SHAPES: dict[str, tuple[int, ...]] = {
    "features.0.weight": (64, 1, 3, 3), "features.0.bias": (64,),
    "features.3.weight": (128, 64, 3, 3), "features.3.bias": (128,),
    "features.6.weight": (256, 128, 3, 3), "features.6.bias": (256,),
    "features.8.weight": (256, 256, 3, 3), "features.8.bias": (256,),
    "features.11.weight": (512, 256, 3, 3), "features.11.bias": (512,),
    "features.13.weight": (512, 512, 3, 3), "features.13.bias": (512,),
    "embeddings.0.weight": (4096, 12288), "embeddings.0.bias": (4096,),
    "embeddings.2.weight": (4096, 4096), "embeddings.2.bias": (4096,),
    "embeddings.4.weight": (128, 4096), "embeddings.4.bias": (128,),
}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Input pipeline (torchvggish's vggish_input.py + mel_features.py, vectorised)
# ---------------------------------------------------------------------------------------------


def _frame(data: np.ndarray, window_length: int, hop_length: int) -> np.ndarray:
    """Non-overlapping or overlapping frames along axis 0, no padding; the incomplete tail is dropped."""
    num_frames = 1 + (data.shape[0] - window_length) // hop_length
    if num_frames < 1:
        return np.zeros((0, window_length) + data.shape[1:], dtype=data.dtype)
    windows = np.lib.stride_tricks.sliding_window_view(data, window_length, axis=0)[::hop_length][:num_frames]
    return np.moveaxis(windows, -1, 1)  # sliding_window_view puts the window axis last


def _hertz_to_mel(hertz: np.ndarray | float) -> np.ndarray | float:
    return 1127.0 * np.log(1.0 + np.asarray(hertz) / 700.0)


@functools.lru_cache(maxsize=1)
def mel_matrix() -> np.ndarray:
    """The (257, 64) HTK mel weight matrix of VGGish (triangles in the mel domain, no area norm, DC row 0)."""
    num_spectrogram_bins = _fft_length() // 2 + 1
    bins_mel = _hertz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2.0, num_spectrogram_bins))
    edges = np.linspace(_hertz_to_mel(MEL_MIN_HZ), _hertz_to_mel(MEL_MAX_HZ), NUM_MEL_BINS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    lower_slope = (bins_mel[:, None] - lower) / (center - lower)
    upper_slope = (upper - bins_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(lower_slope, upper_slope))
    weights[0, :] = 0.0
    weights.setflags(write=False)
    return weights


def _fft_length() -> int:
    window = round(SAMPLE_RATE * STFT_WINDOW_SECONDS)
    return 2 ** math.ceil(math.log2(window))


def log_mel_spectrogram(waveform: np.ndarray) -> np.ndarray:
    """``log(mel + 0.01)`` of a 16 kHz mono waveform, shape ``(frames, 64)``, float64.

    Frames are ``1 + floor((n - 400) / 160)``: no centring, no padding, the tail is dropped.
    """
    waveform = np.asarray(waveform)
    window = round(SAMPLE_RATE * STFT_WINDOW_SECONDS)
    hop = round(SAMPLE_RATE * STFT_HOP_SECONDS)
    frames = _frame(waveform, window, hop)
    periodic_hann = 0.5 - 0.5 * np.cos(2.0 * np.pi / window * np.arange(window))
    magnitude = np.abs(np.fft.rfft(frames * periodic_hann, _fft_length()))
    return np.log(magnitude @ mel_matrix() + LOG_OFFSET)


def waveform_to_examples(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Log-mel examples ``(N, 1, 96, 64)`` float32 of a 16 kHz mono waveform, as torchvggish.

    ``N = 1 + floor((frames - 96) / 96)``; a waveform shorter than 15600 samples gives
    ``N = 0``. Resample and downmix first (:func:`~sound_of_story.metrics.fad.audio_input.prepare_waveform`):
    this function refuses other rates rather than resample silently.
    """
    if sample_rate != SAMPLE_RATE:
        raise ValueError(
            f"VGGish examples need {SAMPLE_RATE} Hz audio, got sample_rate={sample_rate}; resample first (prepare_waveform)"
        )
    waveform = np.asarray(waveform)
    if waveform.ndim != 1:
        raise ValueError(f"waveform must be mono (1-D), got shape {waveform.shape}; downmix first (prepare_waveform)")
    if waveform.shape[0] < round(SAMPLE_RATE * STFT_WINDOW_SECONDS):
        log_mel = np.zeros((0, NUM_MEL_BINS))
    else:
        log_mel = log_mel_spectrogram(waveform)
    features_rate = 1.0 / STFT_HOP_SECONDS
    examples = _frame(
        log_mel, round(EXAMPLE_WINDOW_SECONDS * features_rate), round(EXAMPLE_HOP_SECONDS * features_rate)
    )
    return torch.from_numpy(np.ascontiguousarray(examples, dtype=np.float32))[:, None]


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------


class VGGishPostprocessor(nn.Module):
    """torchvggish's ``Postprocessor``: PCA projection, clip to [-2, 2], 8-bit quantisation.

    Output values are floats in 0...255 (``torch.round``, half to even, as torchvggish; Google's
    original truncates, so the two can differ by 1).
    """

    def __init__(self) -> None:
        super().__init__()
        self.pca_eigen_vectors = nn.Parameter(torch.empty(EMBEDDING_DIM, EMBEDDING_DIM), requires_grad=False)
        self.pca_means = nn.Parameter(torch.empty(EMBEDDING_DIM, 1), requires_grad=False)

    def project(self, embeddings: torch.Tensor) -> torch.Tensor:
        """PCA-whitened embeddings ``E (x - mean)`` before clipping and quantisation, ``(N, 128)``."""
        return (self.pca_eigen_vectors @ (embeddings.T - self.pca_means)).T

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        clipped = self.project(embeddings).clamp(QUANTIZE_MIN_VAL, QUANTIZE_MAX_VAL)
        return torch.round((clipped - QUANTIZE_MIN_VAL) * (255.0 / (QUANTIZE_MAX_VAL - QUANTIZE_MIN_VAL)))


def _conv(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True)]


class VGGish(nn.Module):
    """VGGish: log-mel examples ``(N, 1, 96, 64)`` -> embeddings ``(N, 128)``.

    Args:
        final_relu: keep the ReLU after the last linear layer (torchvggish's default). FAD
            implementations (frechet-audio-distance, fadtk) drop it: ``final_relu=False``.
        postprocess: add the PCA + quantisation post-processor (``pproc``); its parameters must
            then be loaded (:meth:`from_checkpoint` with ``pca_params``).

    Build with :meth:`from_checkpoint` (a torchvggish ``.pth``) or :meth:`from_random_weights`;
    ``self.random_weights`` records which, so callers can label their outputs.
    """

    def __init__(self, *, final_relu: bool = True, postprocess: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv(1, 64), nn.MaxPool2d(2, 2),
            *_conv(64, 128), nn.MaxPool2d(2, 2),
            *_conv(128, 256), *_conv(256, 256), nn.MaxPool2d(2, 2),
            *_conv(256, 512), *_conv(512, 512), nn.MaxPool2d(2, 2),
        )  # fmt: skip
        head: list[nn.Module] = [
            nn.Linear(512 * 4 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, EMBEDDING_DIM),
        ]
        if final_relu:
            head.append(nn.ReLU(inplace=True))
        self.embeddings = nn.Sequential(*head)
        self.pproc = VGGishPostprocessor() if postprocess else None
        self.final_relu = final_relu
        self.random_weights = False

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(N, 128)`` (quantised 0...255 values if ``postprocess``) of examples ``(N, 1, 96, 64)``."""
        if examples.ndim != 4 or tuple(examples.shape[1:]) != (1, NUM_FRAMES, NUM_MEL_BINS):
            raise ValueError(
                f"VGGish expects log-mel examples of shape (N, 1, {NUM_FRAMES}, {NUM_MEL_BINS}), got {tuple(examples.shape)}"
            )
        x = self.features(examples)
        # TF's NHWC flatten order (time, frequency, channel); flattening NCHW directly is wrong.
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        x = self.embeddings(x)
        return self.pproc(x) if self.pproc is not None else x

    @classmethod
    def from_state_dict(
        cls,
        state_dict: dict[str, torch.Tensor],
        *,
        pca_params: tuple[np.ndarray, np.ndarray] | None = None,
        final_relu: bool = True,
    ) -> VGGish:
        """A model whose parameters ARE the given tensors (no copy: ``load_state_dict(assign=True)``)."""
        _check_state_dict(state_dict)
        with torch.device("meta"):
            model = cls(final_relu=final_relu, postprocess=pca_params is not None)
        tensors = {key: state_dict[key].to(torch.float32) for key in STATE_DICT_SHAPES}
        if pca_params is not None:
            eigen_vectors, means = pca_params
            tensors["pproc.pca_eigen_vectors"] = torch.as_tensor(eigen_vectors, dtype=torch.float32)
            tensors["pproc.pca_means"] = torch.as_tensor(means, dtype=torch.float32).reshape(EMBEDDING_DIM, 1)
        model.load_state_dict(tensors, strict=True, assign=True)
        if model.pproc is not None:
            model.pproc.requires_grad_(False)
        return model.eval()

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | Path | None, *, pca_params: str | Path | None = None, final_relu: bool = True
    ) -> VGGish:
        """Load torchvggish's ``vggish-10086976.pth`` (``weights_only=True``, memory-mapped).

        ``pca_params``: path of ``vggish_pca_params-970ea276.pth`` (or Google's
        ``vggish_pca_params.npz``) to enable the PCA post-processor.
        """
        return cls.from_state_dict(
            load_vggish_state_dict(checkpoint),
            pca_params=None if pca_params is None else load_pca_params(pca_params),
            final_relu=final_relu,
        )

    @classmethod
    def from_random_weights(
        cls, seed: int = 0, *, pca_params: str | Path | None = None, final_relu: bool = True
    ) -> VGGish:
        """Random weights from :func:`random_vggish_state_dict` (tests and offline demos only)."""
        model = cls.from_state_dict(
            random_vggish_state_dict(seed),
            pca_params=None if pca_params is None else load_pca_params(pca_params),
            final_relu=final_relu,
        )
        model.random_weights = True
        return model

    def weights_digest(self) -> str:
        """SHA-256 over the network's parameters (and PCA parameters), for cache keys."""
        return model_fingerprint(self)


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def _check_state_dict(state_dict: dict[str, torch.Tensor], source: str = "state dict") -> None:
    missing = [k for k in STATE_DICT_SHAPES if k not in state_dict]
    unexpected = [k for k in state_dict if k not in STATE_DICT_SHAPES]
    if missing or unexpected:
        raise ValueError(
            f"{source} is not a torchvggish VGGish checkpoint (vggish-10086976.pth format): "
            f"missing keys {missing or 'none'}, unexpected keys {unexpected[:8] or 'none'}"
        )
    bad = {
        k: tuple(state_dict[k].shape) for k, shape in STATE_DICT_SHAPES.items() if tuple(state_dict[k].shape) != shape
    }
    if bad:
        raise ValueError(
            f"{source}: wrong parameter shapes {bad}; expected { ({k: STATE_DICT_SHAPES[k] for k in bad}) }"
        )


def load_vggish_state_dict(checkpoint: str | Path | None) -> dict[str, torch.Tensor]:
    """Read a torchvggish-format VGGish checkpoint with ``torch.load(weights_only=True)``."""
    if checkpoint is None:
        raise ValueError(f"no VGGish checkpoint given. {CHECKPOINT_HELP}")
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"VGGish checkpoint {str(path)!r} does not exist. {CHECKPOINT_HELP}")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state_dict, dict):
        raise ValueError(f"VGGish checkpoint {str(path)!r} holds a {type(state_dict).__name__}, not a state dict")
    _check_state_dict(state_dict, source=f"VGGish checkpoint {str(path)!r}")
    return state_dict


def load_pca_params(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """PCA eigenvectors ``(128, 128)`` and means ``(128,)``, float64.

    Reads torchvggish's ``vggish_pca_params-970ea276.pth`` (a legacy torch pickle of numpy
    float64 arrays) with ``weights_only=True`` by allow-listing exactly the numpy globals it
    needs, a ``.pth`` holding tensors, or Google's ``vggish_pca_params.npz``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"VGGish PCA parameter file {str(path)!r} does not exist (torchvggish release: {PCA_PARAMS_URL})"
        )
    if path.suffix == ".npz":
        with np.load(path) as data:
            params = {k: data[k] for k in data.files}
    else:
        reconstruct = np._core.multiarray._reconstruct
        allowed = [
            (reconstruct, "numpy.core.multiarray._reconstruct"),  # name in files pickled by numpy 1.x
            reconstruct, np.ndarray, np.dtype, type(np.dtype("float64")), type(np.dtype("float32")),
        ]  # fmt: skip
        with torch.serialization.safe_globals(allowed):
            params = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(params, dict) or not {"pca_eigen_vectors", "pca_means"} <= set(params):
        raise ValueError(
            f"{str(path)!r} is not a VGGish PCA parameter file: expected keys 'pca_eigen_vectors' and 'pca_means'"
        )
    eigen_vectors = np.asarray(params["pca_eigen_vectors"], dtype=np.float64)
    means = np.asarray(params["pca_means"], dtype=np.float64).reshape(-1)
    if eigen_vectors.shape != (EMBEDDING_DIM, EMBEDDING_DIM) or means.shape != (EMBEDDING_DIM,):
        raise ValueError(
            f"{str(path)!r}: PCA shapes {eigen_vectors.shape} and {means.shape}, expected (128, 128) and (128,)"
        )
    return eigen_vectors, means


def random_vggish_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic random VGGish weights (the recipe of ``tests/golden/README.md``, section vggish).

    For each key in file order, with one CPU generator seeded ``seed``:
    ``(torch.rand(shape) * 2 - 1) * bound``, ``bound = sqrt(6 / fan_in)`` (He-uniform) for
    weights and 0.1 for biases. Unlike PyTorch's default init, activations keep their scale
    through the 8 layers, so embeddings react to the input as real ones do. Never a
    substitute for real weights: the FAD of random features is not comparable to anything.
    """
    generator = torch.Generator().manual_seed(seed)
    state_dict = {}
    for key, shape in STATE_DICT_SHAPES.items():
        bound = math.sqrt(6.0 / math.prod(shape[1:])) if key.endswith("weight") else 0.1
        uniform = torch.rand(shape, generator=generator, dtype=torch.float32)
        state_dict[key] = (uniform * 2.0 - 1.0) * bound
    return state_dict
