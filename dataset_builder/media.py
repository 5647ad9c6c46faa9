"""Probing and decoding input clips, with errors that say what is wrong with a file.

Underneath is :mod:`sound_of_story.audio.decoding` (ffprobe for the streams, ffmpeg for the audio). A clip's
story clock starts at its first video frame: :func:`probe` gives that origin, and the audio is decoded from it
(padded with silence when the sound starts later, trimmed when it starts earlier), so that sound and key frames
pair up whatever offsets the container gives its streams.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from sound_of_story.audio.decoding import MediaFileError, MediaProbe, decode_audio_file, probe_media

MediaError = MediaFileError  # an input file cannot be used; the message names the file and the problem


@dataclasses.dataclass(frozen=True)
class MediaInfo:
    path: str
    duration: float  # seconds of story the file states: from its first video frame to the end of its audio
    sample_rate: int
    channels: int
    has_video: bool  # a video stream that is not an attached picture (cover art)
    probe: MediaProbe | None = None

    @property
    def origin(self) -> float:
        """Container time of the story's 0 s: the first video frame (the audio's start without video)."""
        if self.probe is None:
            return 0.0
        if self.probe.video is not None:
            return self.probe.video.start
        return self.probe.audio.start if self.probe.audio is not None else 0.0

    def layout_key(self) -> dict | None:
        """What sets this file apart from a plain one (both streams from 0 s, square pixels, at most two audio
        channels), for the cache key: None for a plain file, whose key is what it always was."""
        p = self.probe
        if p is None or p.audio is None or p.video is None:
            return None
        plain = p.video.start == 0 and p.audio.start == 0 and p.video.pixel_aspect == 1 and p.audio.channels <= 2
        if plain:
            return None
        return {
            "video_start": p.video.start,
            "audio_start": p.audio.start,
            "pixel_aspect": str(p.video.pixel_aspect),
            "audio_layout": list(p.audio.layout or ()) or p.audio.channels,
        }


def probe(path: str | Path) -> MediaInfo:
    """Check that ``path`` is a readable clip with an audio stream, and read its streams (headers only)."""
    info = probe_media(path)
    if info.audio is None:
        raise MediaError(path, "no audio stream")
    audio = info.audio
    origin = info.video.start if info.video is not None else audio.start
    end = audio.stated_end if audio.stated_end is not None else info.stated_end
    duration = max((end or origin) - origin, 0.0)
    return MediaInfo(str(path), float(duration), audio.sample_rate, audio.channels, info.video is not None, info)


def decode_audio(
    path: str | Path, sample_rate: int | None = None, num_channels: int | None = None
) -> tuple[np.ndarray, int]:
    """All audio samples as (channels, samples) float32, every channel, at the source rate unless asked otherwise."""
    decoded = decode_audio_file(
        path, sample_rate=sample_rate, channels=num_channels or "source", check_truncation=False
    )
    return decoded.samples, decoded.sample_rate
