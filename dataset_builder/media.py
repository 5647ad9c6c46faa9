"""Probing and decoding input clips (torchcodec), with errors that say what is wrong with a file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np


class MediaError(ValueError):
    """An input file cannot be used; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class MediaInfo:
    path: str
    duration: float  # seconds, of the audio stream
    sample_rate: int
    channels: int
    has_video: bool


def probe(path: str | Path) -> MediaInfo:
    """Check that ``path`` is a readable clip with an audio and a video stream."""
    from torchcodec.decoders import AudioDecoder, VideoDecoder

    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")
    try:
        audio = AudioDecoder(str(path))
    except Exception as err:  # noqa: BLE001 - torchcodec raises several types for bad input
        text = str(err)
        if "audio stream" in text.lower() or "no valid stream" in text.lower() or "best stream" in text.lower():
            raise MediaError(f"{path}: no audio stream") from err
        detail = text.rsplit(str(path), 1)[-1].strip() or type(err).__name__  # ffmpeg's own words
        raise MediaError(f"{path}: cannot be decoded (truncated or corrupt?): {detail}") from err
    try:
        VideoDecoder(str(path), seek_mode="approximate")  # headers only: "exact" would read the whole file
        has_video = True
    except Exception:  # noqa: BLE001
        has_video = False
    meta = audio.metadata
    duration = meta.duration_seconds or 0.0
    return MediaInfo(str(path), float(duration), int(meta.sample_rate), int(meta.num_channels), has_video)


def decode_audio(
    path: str | Path, sample_rate: int | None = None, num_channels: int | None = None
) -> tuple[np.ndarray, int]:
    """All audio samples as (channels, samples) float32, at the source rate unless asked otherwise."""
    from torchcodec.decoders import AudioDecoder

    try:
        samples = AudioDecoder(str(path), sample_rate=sample_rate, num_channels=num_channels).get_all_samples()
    except Exception as err:  # noqa: BLE001
        raise MediaError(f"{path}: audio cannot be decoded (truncated or corrupt?): {err}") from err
    data = samples.data.numpy().astype(np.float32, copy=False)
    if data.size == 0:
        raise MediaError(f"{path}: the audio stream holds no samples")
    return data, int(samples.sample_rate)
