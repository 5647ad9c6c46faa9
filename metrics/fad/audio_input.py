"""Finding audio files and keying clips for the FAD embedders' cache.

Clips use the package's one layout, float32 ``(channels, samples)`` (or mono ``(samples,)``), and
the package's one resampler, :func:`sound_of_story.audio.resample`: resampy's ``kaiser_best`` by
default, as torchvggish, so VGGish embeddings of 44.1 kHz stereo equal torchvggish's; torchaudio's
Kaiser sinc (``resampler="torchaudio"``) is faster and deviates slightly (see the module card).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

AudioInput = str | Path | np.ndarray | torch.Tensor


def clip_name(clip: AudioInput, index: int) -> str:
    """How errors and per-clip results name a clip: its path, or its position for arrays."""
    return str(clip) if isinstance(clip, (str, Path)) else f"array clip {index}"


# File extensions we read, by the libsndfile format that decodes them.
_EXTENSION_FORMATS = {
    ".wav": "WAV",
    ".flac": "FLAC",
    ".ogg": "OGG",
    ".opus": "OGG",
    ".mp3": "MP3",
    ".aif": "AIFF",
    ".aiff": "AIFF",
}


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


def array_hash(audio: np.ndarray, sample_rate: int) -> str:
    """SHA-256 of an in-memory clip (dtype, shape, sample rate and samples)."""
    audio = np.ascontiguousarray(audio)
    digest = hashlib.sha256(f"{audio.dtype.str}|{audio.shape}|{sample_rate}|".encode())
    digest.update(audio.tobytes())
    return digest.hexdigest()
