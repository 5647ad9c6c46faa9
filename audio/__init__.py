"""Audio primitives every part may import: one layout, ``(channels, samples)`` float32, and one resampler.

- :mod:`.layout`: :func:`channels_first`, :func:`to_mono`, :func:`decoded_audio` (``datasets``/torchcodec
  values to samples and rate), :func:`prepare_waveform` (mono at a target rate), :func:`read_audio_file`.
- :mod:`.resampling`: :func:`resample` for numpy arrays and torch tensors, the package's only
  resampler (resampy ``kaiser_best`` by default; torchaudio's Kaiser sinc, torchaudio's defaults and
  scipy's polyphase filter as options, each for the callers its docstring names).
- :mod:`.decoding`: :func:`decode_audio_file`, the one decoder of audio files and of the sound of video
  files (ffprobe and ffmpeg: the container's clock, attached pictures ignored, many channels downmixed with
  the standard coefficients, a cap on what is read, truncation detected), and :func:`probe_media`.

This part imports no other part of the package.
"""

from .decoding import (
    DecodedAudio,
    MediaFileError,
    MediaFileNotFoundError,
    MediaProbe,
    TruncatedMediaError,
    decode_audio_file,
    probe_media,
)
from .layout import channels_first, decoded_audio, prepare_waveform, read_audio_file, to_mono
from .resampling import (
    DEFAULT_RESAMPLER,
    RESAMPLER_NAMES,
    RESAMPLERS,
    RESAMPLING_METHODS,
    Resampler,
    ResamplingMethod,
    check_resampler,
    resample,
    resampled_length,
)

__all__ = [
    "DEFAULT_RESAMPLER",
    "DecodedAudio",
    "MediaFileError",
    "MediaFileNotFoundError",
    "MediaProbe",
    "TruncatedMediaError",
    "decode_audio_file",
    "probe_media",
    "RESAMPLERS",
    "RESAMPLER_NAMES",
    "RESAMPLING_METHODS",
    "Resampler",
    "ResamplingMethod",
    "channels_first",
    "check_resampler",
    "decoded_audio",
    "prepare_waveform",
    "read_audio_file",
    "resample",
    "resampled_length",
    "to_mono",
]
