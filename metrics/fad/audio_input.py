"""Reading, downmixing and resampling audio for the FAD embedders.

Resampling uses ``torchaudio.functional.resample`` with a Kaiser-windowed sinc
(``lowpass_filter_width=64, rolloff=0.9475937167399596, beta=14.769656459379492``), the same
imitation of resampy's ``kaiser_best`` that fadtk uses. torchvggish calls resampy itself, which
is not a dependency here, so log-mels of audio that needs resampling differ slightly from
torchvggish's (16 kHz input is untouched and matches exactly). The output length is
``floor(n * target / source)``, as resampy's.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional

AudioInput = Union[str, Path, np.ndarray, torch.Tensor]

KAISER_BEST = {"lowpass_filter_width": 64, "rolloff": 0.9475937167399596, "resampling_method": "sinc_interp_kaiser", "beta": 14.769656459379492}
RESAMPLER_NAME = "torchaudio-sinc-kaiser-w64-r0.9476-b14.77"


def clip_name(clip: AudioInput, index: int) -> str:
    """How errors and per-clip results name a clip: its path, or its position for arrays."""
    return str(clip) if isinstance(clip, (str, Path)) else f"array clip {index}"


# File extensions we read, by the libsndfile format that decodes them.
_EXTENSION_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".opus": "OGG", ".mp3": "MP3", ".aif": "AIFF", ".aiff": "AIFF"}


def audio_file_extensions() -> tuple[str, ...]:
    """Lower-case extensions of the audio files this libsndfile build can read (``.wav``, ``.flac``, ...)."""
    available = sf.available_formats()
    return tuple(ext for ext, fmt in _EXTENSION_FORMATS.items() if fmt in available)


def list_audio_files(directory: str | Path) -> list[Path]:
    """The audio files directly inside ``directory``, sorted by name (not recursive)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"audio directory {str(directory)!r} does not exist or is not a directory")
    extensions = audio_file_extensions()
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in extensions)
    if not files:
        raise ValueError(f"no audio files ({', '.join(extensions)}) in {str(directory)!r}")
    return files


def read_audio_bytes(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, int]:
    """Decode an audio file's bytes to float32 ``(samples, channels)`` (or ``(samples,)``), and its rate.

    Integer PCM is scaled to [-1, 1) by libsndfile (int16 / 32768), float files keep their
    values; torchvggish instead reads every file as int16, which breaks float WAVs.
    """
    try:
        audio, sample_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except sf.LibsndfileError as err:
        raise ValueError(f"cannot decode audio file {name!r} with libsndfile: {err}") from None
    return audio, int(sample_rate)


def to_mono(audio: np.ndarray, name: str = "audio") -> np.ndarray:
    """Average the channels of ``(samples, channels)`` audio (soundfile's layout, as torchvggish)."""
    audio = np.asarray(audio)
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2:
        raise ValueError(f"{name} must be 1-D (mono) or 2-D (samples, channels), got shape {audio.shape}")
    if audio.shape[1] > audio.shape[0]:
        raise ValueError(
            f"{name} has shape {audio.shape}: more channels than samples, so it is probably (channels, samples); "
            "pass (samples, channels), e.g. array.T"
        )
    return audio.mean(axis=1)


def resample(waveform: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample a mono float waveform (Kaiser-windowed sinc, see the module docstring)."""
    if source_rate == target_rate:
        return waveform
    if source_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {source_rate}")
    out = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)), source_rate, target_rate, **KAISER_BEST)
    return out[: waveform.shape[0] * target_rate // source_rate].numpy()


def prepare_waveform(audio: np.ndarray, sample_rate: int, target_rate: int, name: str = "audio") -> np.ndarray:
    """Mono float32 waveform at ``target_rate``, after checking it holds finite samples."""
    audio = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    if audio.dtype.kind not in "fiu":
        raise ValueError(f"{name} must hold numbers, got dtype {audio.dtype}")
    if audio.dtype.kind in "iu":
        raise ValueError(f"{name} is an integer array ({audio.dtype}); pass float samples in [-1, 1] (e.g. int16 / 32768)")
    mono = to_mono(audio, name).astype(np.float32, copy=False)
    if not np.isfinite(mono).all():
        raise ValueError(f"{name} contains NaN or inf samples")
    return resample(mono, int(sample_rate), target_rate)


def content_hash(data: bytes) -> str:
    """SHA-256 of a file's bytes: the embedding cache key of that file."""
    return hashlib.sha256(data).hexdigest()


def array_hash(audio: np.ndarray, sample_rate: int) -> str:
    """SHA-256 of an in-memory clip (dtype, shape, sample rate and samples)."""
    audio = np.ascontiguousarray(audio)
    digest = hashlib.sha256(f"{audio.dtype.str}|{audio.shape}|{sample_rate}|".encode())
    digest.update(audio.tobytes())
    return digest.hexdigest()
