"""Audio embedders for FAD behind one interface: VGGish (torchvggish-compatible) and CLAP.

:class:`AudioEmbedder` owns everything the two share: reading clips (file paths or arrays),
downmixing and resampling, the content-hash embedding cache, batching many clips into one
forward pass, and the progress bar. A subclass only says how one clip becomes model inputs
(:meth:`AudioEmbedder.model_inputs`) and how a batch of inputs becomes embeddings
(:meth:`AudioEmbedder.forward_batch`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from tqdm.auto import tqdm

from sound_of_story.audio import (
    DEFAULT_RESAMPLER,
    RESAMPLER_NAMES,
    Resampler,
    check_resampler,
    prepare_waveform,
    read_audio_file,
)
from sound_of_story.core import model_ids
from sound_of_story.core.hashing import bytes_sha256, json_sha256, model_fingerprint

from . import vggish
from .audio_input import AudioInput, array_hash, clip_name
from .embedding_cache import EmbeddingCache

# Bump when reading/downmixing/resampling/framing changes, so cached embeddings are not reused.
# 2: channels-first arrays, resampy by default.
PREPROCESSING_VERSION = 2

RANDOM_WEIGHTS_WARNING = (
    "embedder weights are RANDOM: this FAD is a smoke-test number, not comparable with any published FAD"
)


@dataclass
class _PendingClip:
    """A clip whose model inputs are (partly) waiting for a forward pass."""

    index: int
    key: str | None
    inputs: torch.Tensor
    consumed: int = 0
    outputs: list[torch.Tensor] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.inputs.shape[0] - self.consumed


def _sample_rates(sample_rate: int | Sequence[int] | None, count: int) -> list[int | None]:
    if sample_rate is None or isinstance(sample_rate, (int, np.integer)):
        return [sample_rate] * count
    rates = list(sample_rate)
    if len(rates) != count:
        raise ValueError(f"got {len(rates)} sample rates for {count} clips")
    return rates


class AudioEmbedder(ABC):
    """Embeds audio clips into ``(num_frames, dim)`` float32 arrays, one array per clip.

    Subclasses set ``sample_rate`` (the model's input rate), ``embedding_dim``,
    ``description`` and ``random_weights``, and implement :meth:`model_inputs`,
    :meth:`forward_batch` and :meth:`fingerprint_parts`.
    """

    sample_rate: int
    embedding_dim: int
    description: str
    random_weights: bool = False
    device: torch.device = torch.device("cpu")
    resampler: Resampler = DEFAULT_RESAMPLER
    _fingerprint: str | None = None

    @abstractmethod
    def model_inputs(self, waveform: np.ndarray, name: str) -> torch.Tensor:
        """Model inputs ``(n, ...)`` of one clip, from its mono float32 waveform at ``self.sample_rate``."""

    @abstractmethod
    def forward_batch(self, inputs: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(B, embedding_dim)`` of a batch of model inputs ``(B, ...)`` (any clips mixed)."""

    @abstractmethod
    def fingerprint_parts(self) -> dict:
        """What the embeddings depend on (weights digest, options), for the cache key."""

    def fingerprint(self) -> str:
        """SHA-256 identifying this embedder's outputs (computed once; hashes the weights)."""
        if self._fingerprint is None:
            parts = {
                "class": type(self).__name__,
                "preprocessing": PREPROCESSING_VERSION,
                "resampler": RESAMPLER_NAMES[self.resampler],
                **self.fingerprint_parts(),
            }
            self._fingerprint = json_sha256(parts)
        return self._fingerprint

    def embed(
        self,
        clips: Sequence[AudioInput],
        sample_rate: int | Sequence[int] | None = None,
        *,
        batch_size: int = 64,
        cache: EmbeddingCache | str | Path | None = None,
        progress: bool = False,
        desc: str = "embedding",
    ) -> list[np.ndarray]:
        """Embeddings of every clip, in order: a list of ``(num_frames_i, embedding_dim)`` float32 arrays.

        Args:
            clips: audio file paths (read with libsndfile at their own rate; integer PCM scaled
                to [-1, 1)) and/or float arrays, mono ``(samples,)`` or ``(channels, samples)``
                (the package's layout), or torch tensors of the same layouts. Channels are averaged,
                then the clip is resampled with ``self.resampler``.
            sample_rate: rate of the array clips (one for all, or one per clip); ignored for files.
            batch_size: model inputs per forward pass. Inputs of consecutive clips are queued
                and embedded in full batches, so one pass mixes many clips (and one clip may
                span two passes); only the last pass is smaller.
            cache: an :class:`EmbeddingCache` (or its directory); clips are keyed by the
                SHA-256 of their content (file bytes, or array samples and rate) and by
                :meth:`fingerprint`. Hits are neither decoded nor recomputed.
            progress: show a tqdm bar over clips.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(cache, (str, Path)):
            cache = EmbeddingCache(cache)
        rates = _sample_rates(sample_rate, len(clips))
        results: list[np.ndarray | None] = [None] * len(clips)
        pending: list[_PendingClip] = []  # in clip order; only the last one may be partly embedded
        queued = 0  # model inputs waiting for a forward pass
        with tqdm(total=len(clips), desc=desc, unit="clip", disable=not progress) as bar:
            for index, clip in enumerate(clips):
                name = clip_name(clip, index)
                data = self._file_bytes(clip, name)
                key = None
                if cache is not None:
                    key = (
                        bytes_sha256(data)
                        if data is not None
                        else array_hash(self._array(clip), self._rate(rates[index], name))
                    )
                    if (hit := cache.get(self.fingerprint(), key)) is not None:
                        results[index] = hit
                        bar.update(1)
                        continue
                if data is not None:
                    audio, rate = read_audio_file(data, name)
                else:
                    audio, rate = self._array(clip), self._rate(rates[index], name)
                inputs = self.model_inputs(
                    prepare_waveform(audio, rate, self.sample_rate, resampler=self.resampler, name=name), name
                )
                pending.append(_PendingClip(index, key, inputs))
                queued += inputs.shape[0]
                if queued >= batch_size:
                    queued = self._run_batches(pending, batch_size, final=False)
                    bar.update(self._collect(pending, results, cache))
            self._run_batches(pending, batch_size, final=True)
            bar.update(self._collect(pending, results, cache))
        return results  # type: ignore[return-value]

    @staticmethod
    def _file_bytes(clip: AudioInput, name: str) -> bytes | None:
        """The bytes of a file clip (read once: hashed for the cache, decoded on a miss); None for arrays."""
        if not isinstance(clip, (str, Path)):
            return None
        path = Path(clip)
        if not path.is_file():
            raise FileNotFoundError(f"audio file {name!r} does not exist")
        return path.read_bytes()

    @staticmethod
    def _array(clip: AudioInput) -> np.ndarray:
        return clip.detach().cpu().numpy() if isinstance(clip, torch.Tensor) else np.asarray(clip)

    @staticmethod
    def _rate(rate: int | None, name: str) -> int:
        if rate is None:
            raise ValueError(f"{name} is an array: pass its sample_rate")
        return int(rate)

    def _run_batches(self, pending: list[_PendingClip], batch_size: int, final: bool) -> int:
        """Embed the queued inputs in full batches of ``batch_size`` (all of them if ``final``).

        Inputs that do not fill a batch wait for the next clips, so every forward pass but the
        last has exactly ``batch_size`` inputs. Returns how many inputs still wait.
        """
        queued = sum(p.remaining for p in pending)
        count = queued if final else queued - queued % batch_size
        if count == 0:
            return queued
        parts, needed = [], count
        for clip in pending:
            take = min(clip.remaining, needed)
            if take:
                parts.append((clip, take))
                needed -= take
        inputs = torch.cat([clip.inputs[clip.consumed : clip.consumed + take] for clip, take in parts])
        with torch.inference_mode():
            outputs = torch.cat(
                [
                    self.forward_batch(inputs[start : start + batch_size].to(self.device)).float().cpu()
                    for start in range(0, count, batch_size)
                ]
            )
        offset = 0
        for clip, take in parts:
            clip.outputs.append(outputs[offset : offset + take])
            clip.consumed += take
            offset += take
        return queued - count

    def _collect(self, pending: list[_PendingClip], results: list, cache: EmbeddingCache | None) -> int:
        """Move fully embedded clips from the front of ``pending`` to ``results`` (and the cache)."""
        finished = 0
        while pending and pending[0].remaining == 0:
            clip = pending.pop(0)
            embeddings = (
                torch.cat(clip.outputs).numpy() if clip.outputs else np.zeros((0, self.embedding_dim), np.float32)
            )
            results[clip.index] = embeddings
            if cache is not None:
                cache.put(self.fingerprint(), clip.key, embeddings)
            finished += 1
        return finished


class VGGishEmbedder(AudioEmbedder):
    """VGGish embeddings, one per non-overlapping 0.96 s example (torchvggish's framing).

    Defaults follow frechet-audio-distance and fadtk (the FAD convention): no PCA, final ReLU
    dropped. Build with :meth:`from_checkpoint` or, for offline tests only,
    :meth:`from_random_weights`.

    Args:
        model: a :class:`~sound_of_story.metrics.fad.vggish.VGGish`.
        weights_name: where the weights came from, for :attr:`description`.
        pad_short_clips: zero-pad clips shorter than 0.975 s to 1 s (fadtk's fix) instead of
            raising; torchvggish crashes on them and frechet-audio-distance then silently drops
            every later clip.
        device: where to run the network (default CPU). On CUDA, TF32 convolutions are turned
            off during the forward pass, as the golden tolerances need.
        resampler: ``"resampy"`` (default; torchvggish's, so 44.1 kHz input gives its embeddings) or
            ``"torchaudio"`` (faster; see the module card for its deviation).
    """

    sample_rate = vggish.SAMPLE_RATE
    embedding_dim = vggish.EMBEDDING_DIM

    def __init__(
        self, model: vggish.VGGish, *, weights_name: str, pad_short_clips: bool = False, device: str | torch.device | None = None,
        resampler: Resampler = DEFAULT_RESAMPLER,
    ) -> None:  # fmt: skip
        self.resampler = check_resampler(resampler)
        self.device = torch.device(device or "cpu")
        self.model = model.to(self.device).eval()
        self.random_weights = model.random_weights
        self.pad_short_clips = pad_short_clips
        self.weights_name = weights_name
        pca = "PCA + 8-bit quantisation" if model.pproc is not None else "no PCA"
        relu = "final ReLU kept" if model.final_relu else "final ReLU dropped"
        self.description = f"VGGish ({weights_name}; {pca}; {relu}; {resampler} resampling)"

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | Path | None, *, pca_params: str | Path | None = None, final_relu: bool = False, pad_short_clips: bool = False,
        device: str | torch.device | None = None, resampler: Resampler = DEFAULT_RESAMPLER,
    ) -> VGGishEmbedder:  # fmt: skip
        """Load torchvggish's ``vggish-10086976.pth`` from a local path (see ``vggish.CHECKPOINT_URL``)."""
        model = vggish.VGGish.from_checkpoint(checkpoint, pca_params=pca_params, final_relu=final_relu)
        return cls(
            model,
            weights_name=Path(checkpoint).name,
            pad_short_clips=pad_short_clips,
            device=device,
            resampler=resampler,
        )

    @classmethod
    def from_random_weights(
        cls, seed: int = 0, *, pca_params: str | Path | None = None, final_relu: bool = False, pad_short_clips: bool = False,
        device: str | torch.device | None = None, resampler: Resampler = DEFAULT_RESAMPLER,
    ) -> VGGishEmbedder:  # fmt: skip
        """Random weights (``vggish.random_vggish_state_dict``): tests and offline demos only."""
        model = vggish.VGGish.from_random_weights(seed, pca_params=pca_params, final_relu=final_relu)
        return cls(
            model,
            weights_name=f"RANDOM weights, seed {seed}",
            pad_short_clips=pad_short_clips,
            device=device,
            resampler=resampler,
        )

    def model_inputs(self, waveform: np.ndarray, name: str) -> torch.Tensor:
        if waveform.shape[0] < vggish.MIN_NUM_SAMPLES:
            seconds = waveform.shape[0] / self.sample_rate
            if not self.pad_short_clips:
                raise ValueError(
                    f"{name} is {seconds:.3f} s long; VGGish needs at least {vggish.MIN_NUM_SAMPLES} samples at 16 kHz (0.975 s) "
                    "for one 0.96 s example. Drop it, or pad short clips (pad_short_clips=True zero-pads to 1 s, as fadtk)"
                )
            waveform = np.pad(waveform, (0, self.sample_rate - waveform.shape[0]))
        return vggish.waveform_to_examples(waveform, self.sample_rate)

    def forward_batch(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.device.type != "cuda":
            return self.model(inputs)
        # TF32 convolutions/matmuls move VGGish embeddings by more than 1e-4: keep full float32.
        cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
        previous = matmul.allow_tf32
        with cudnn.flags(
            enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=False
        ):
            matmul.allow_tf32 = False
            try:
                return self.model(inputs)
            finally:
                matmul.allow_tf32 = previous

    def fingerprint_parts(self) -> dict:
        return {
            "weights": self.model.weights_digest(),
            "final_relu": self.model.final_relu,
            "pca": self.model.pproc is not None,
            "pad_short_clips": self.pad_short_clips,
        }


class ClapEmbedder(AudioEmbedder):
    """CLAP audio embeddings (transformers ``ClapModel``) for FAD-CLAP, as fadtk's LAION-CLAP loader.

    Each clip is quantised to 16 bits (LAION-CLAP's recommended input treatment), cut into
    windows of the feature extractor's ``max_length_s`` (10 s for ``laion/clap-htsat-unfused``)
    starting every ``hop_seconds`` (1 s), the last ones zero-padded; each window gives one
    L2-normalised projected embedding (512-d for the LAION checkpoints).
    """

    def __init__(
        self, model, feature_extractor, *, model_name: str, hop_seconds: float = 1.0, random_weights: bool = False,
        device: str | torch.device | None = None, resampler: Resampler = DEFAULT_RESAMPLER,
    ) -> None:  # fmt: skip
        self.resampler = check_resampler(resampler)
        self.device = torch.device(device or "cpu")
        self.model = model.to(self.device).eval()
        self.feature_extractor = feature_extractor
        self.sample_rate = int(feature_extractor.sampling_rate)
        self.window = int(feature_extractor.nb_max_samples)
        self.hop = max(1, round(hop_seconds * self.sample_rate))
        self.embedding_dim = int(model.config.projection_dim)
        self.truncation = "fusion" if model.config.audio_config.enable_fusion else "rand_trunc"
        self.random_weights = random_weights
        self.model_name = model_name
        self.description = f"CLAP audio ({model_name}{'; RANDOM weights' if random_weights else ''}; {self.window / self.sample_rate:g} s windows every {hop_seconds:g} s)"

    @classmethod
    def from_pretrained(
        cls, model_id: str = model_ids.CLAP, *, hop_seconds: float = 1.0, device: str | torch.device | None = None,
        resampler: Resampler = DEFAULT_RESAMPLER, **kwargs,
    ) -> ClapEmbedder:  # fmt: skip
        """Load a CLAP checkpoint by Hub id or local folder (needs the network for a Hub id)."""
        from transformers import ClapFeatureExtractor, ClapModel

        model = ClapModel.from_pretrained(model_id, **kwargs)
        feature_extractor = ClapFeatureExtractor.from_pretrained(model_id, **kwargs)
        return cls(
            model, feature_extractor, model_name=model_id, hop_seconds=hop_seconds, device=device, resampler=resampler
        )

    def model_inputs(self, waveform: np.ndarray, name: str) -> torch.Tensor:
        quantised = (np.clip(waveform, -1.0, 1.0) * 32767.0).astype(np.int16).astype(np.float32) / 32767.0
        starts = range(0, max(quantised.shape[0], 1), self.hop)
        windows = np.zeros((len(starts), self.window), dtype=np.float32)
        for row, start in enumerate(starts):
            chunk = quantised[start : start + self.window]
            windows[row, : chunk.shape[0]] = chunk
        return torch.from_numpy(windows)

    def forward_batch(self, inputs: torch.Tensor) -> torch.Tensor:
        features = self.feature_extractor(
            list(inputs.cpu().numpy()), sampling_rate=self.sample_rate, truncation=self.truncation, return_tensors="pt"
        )
        features = {k: v.to(self.device) for k, v in features.items()}
        return self.model.get_audio_features(**features).pooler_output

    def fingerprint_parts(self) -> dict:
        return {
            "weights": model_fingerprint(self.model),
            "feature_extractor": self.feature_extractor.to_json_string(),
            "hop": self.hop,
        }


EmbedderName = Literal["vggish", "clap"]
EMBEDDER_NAMES: tuple[str, ...] = get_args(EmbedderName)


def make_embedder(
    embedder: EmbedderName = "vggish",
    *,
    vggish_checkpoint: str | Path | None = None,
    random_weights: bool = False,
    pca_params: str | Path | None = None,
    final_relu: bool = False,
    pad_short_clips: bool = False,
    clap_model: str = model_ids.CLAP,
    resampler: Resampler = DEFAULT_RESAMPLER,
    device: str | torch.device | None = None,
) -> AudioEmbedder:
    """The FAD embedder by name, the one choice behind ``evaluate fad``, ``evaluate generation`` (Table 3) and the
    ``fad`` evaluate module: VGGish (torchvggish's checkpoint, or random weights for smoke tests only) or CLAP
    (``transformers.ClapModel``). VGGish's options given with CLAP, or a checkpoint with random weights, raise
    ``ValueError`` rather than being ignored."""
    if embedder == "clap":
        vggish_options = {
            "vggish_checkpoint": vggish_checkpoint is not None, "random_weights": random_weights,
            "pca_params": pca_params is not None, "final_relu": final_relu, "pad_short_clips": pad_short_clips,
        }  # fmt: skip
        if any(vggish_options.values()):
            given = ", ".join(name for name, given in vggish_options.items() if given)
            raise ValueError(f"{given}: VGGish options, not CLAP's")
        return ClapEmbedder.from_pretrained(clap_model, resampler=resampler, device=device)
    if embedder != "vggish":
        raise ValueError(f"embedder must be one of {', '.join(EMBEDDER_NAMES)}, got {embedder!r}")
    options = {"pca_params": pca_params, "final_relu": final_relu, "pad_short_clips": pad_short_clips}
    if random_weights:
        if vggish_checkpoint is not None:
            raise ValueError("pass either vggish_checkpoint or random_weights=True, not both")
        return VGGishEmbedder.from_random_weights(**options, device=device, resampler=resampler)
    return VGGishEmbedder.from_checkpoint(vggish_checkpoint, **options, device=device, resampler=resampler)
