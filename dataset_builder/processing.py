"""Processing one story, with a resumable on-disk cache.

``process_story`` runs, for one story: decoding (audio at the source rate, channels kept),
speech removal, speech ratios before and after, key frames, generation slices and the
low-content filter. Its result is cached in ``<cache_dir>/<story>-<key>/`` where the key
hashes the input files' *content*, the story's text and frame times, and every processing
parameter; an entry is written to a temporary folder and renamed into place, so a killed build
leaves either a whole entry or none, and a rerun redoes only what is missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from .atomic_files import write_json_atomic
from .content_filter import ContentFilterParams, check_content
from .key_frames import KeyFrame, KeyFrameParams, decode_frames, frames_at, sample_times, select_key_frames
from .manifest import StorySource
from .media import MediaError, decode_audio, probe
from .slicing import slice_story
from .speech_removal import SpeechRemovalParams, remove_speech, speech_ratio

PROCESSING_VERSION = 1  # bump when the processing changes its output for equal parameters
MIN_STORY_SECONDS = 1.0


class StoryError(ValueError):
    """A story cannot be built; ``file`` names the input at fault."""

    def __init__(self, file: str, reason: str):
        super().__init__(reason)
        self.file = file
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class ProcessingParams:
    separation: SpeechRemovalParams = SpeechRemovalParams()
    key_frames: KeyFrameParams = KeyFrameParams()
    slice_seconds: float = 15.0
    keep_long_slices: bool = True
    content: ContentFilterParams = ContentFilterParams()

    def to_json(self) -> dict:
        return {"version": PROCESSING_VERSION, **dataclasses.asdict(self)}


@dataclasses.dataclass
class StoryResult:
    """A cached, processed story (paths inside its cache entry)."""

    entry: Path
    meta: dict

    @property
    def audio_path(self) -> Path:
        return self.entry / "audio.flac"

    def frame_path(self, index: int) -> Path:
        return self.entry / "frames" / f"{index:04d}.jpg"


def _file_digest(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(source: StorySource, params: ProcessingParams) -> str:
    """Hash of the inputs' content, the story fields and the parameters."""
    payload = {
        "files": [_file_digest(v) for v in source.videos],
        "story": {"id": source.id, "movie": source.movie, "source": source.source, "text": source.text, "frame_times": source.frame_times},
        "params": params.to_json(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _entry_name(story_id: str, key: str) -> str:
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', story_id)[:80]}-{key}"


def _check_inputs(source: StorySource) -> list:
    infos = []
    for video in source.videos:
        try:
            info = probe(video)
        except MediaError as err:
            raise StoryError(video, str(err)) from err
        if not info.has_video:
            raise StoryError(video, f"{video}: audio-only file (no video stream)")
        infos.append(info)
    return infos


def _story_audio(source: StorySource, infos) -> tuple[np.ndarray, int, list[float]]:
    """The story's audio (clips joined in order by decoding) and each clip's start time."""
    rate, channels = infos[0].sample_rate, infos[0].channels
    parts, offsets, total = [], [], 0
    for video, info in zip(source.videos, infos):
        same = info.sample_rate == rate and info.channels == channels
        try:
            audio, _ = decode_audio(video, None if same else rate, None if same else channels)
        except MediaError as err:
            raise StoryError(video, str(err)) from err
        offsets.append(total / rate)
        parts.append(audio)
        total += audio.shape[1]
    return np.concatenate(parts, axis=1), rate, offsets


def _story_frames(source: StorySource, offsets: list[float], durations: list[float], params: KeyFrameParams) -> list[KeyFrame]:
    if source.frame_times is not None:  # the released SoS metadata lists its frames
        frames: list[KeyFrame] = []
        for video, start, length in zip(source.videos, offsets, durations):
            times = [t for t in source.frame_times if start <= t < start + length]
            frames.extend(frames_at(video, times, params, offset=start))
        return frames
    stream = itertools.chain.from_iterable(
        decode_frames(video, sample_times(length, params.fps), offset=start) for video, start, length in zip(source.videos, offsets, durations)
    )
    return select_key_frames(stream, params)


def flac_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit FLAC of a (channels, samples) float array."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio.T, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def process_story(source: StorySource, params: ProcessingParams, cache_dir: str | Path) -> tuple[StoryResult, bool]:
    """Process one story, or load it from the cache. Returns (result, came_from_cache)."""
    cache_dir = Path(cache_dir)
    infos = _check_inputs(source)
    key = cache_key(source, params)
    entry = cache_dir / _entry_name(source.id, key)
    if (entry / "meta.json").is_file():
        return StoryResult(entry, json.loads((entry / "meta.json").read_text())), True

    audio, rate, offsets = _story_audio(source, infos)
    duration = audio.shape[1] / rate
    if duration < MIN_STORY_SECONDS:
        raise StoryError(source.videos[0], f"clip under {MIN_STORY_SECONDS:g} s ({duration:.2f} s)")
    durations = [b - a for a, b in zip(offsets, [*offsets[1:], duration])]
    background = remove_speech(audio, rate, params.separation)
    ratio_before, ratio_after = speech_ratio(audio, background, sample_rate=rate)  # one batched VAD pass
    frames = _story_frames(source, offsets, durations, params.key_frames)
    frame_times = [f.time for f in frames]

    slices = []
    for s in slice_story(background.shape[1], rate, frame_times, params.slice_seconds, params.keep_long_slices):
        decision = check_content(background[:, s.start : s.end], rate, params.content)
        slices.append({"start_sample": s.start, "end_sample": s.end, "long": s.long, "keep": decision.keep, "measure": decision.value, "reason": decision.reason})

    meta = {
        "id": source.id,
        "movie": source.movie,
        "source": source.source,
        "text": source.text,
        "clip_ids": list(source.clip_ids),
        "sample_rate": rate,
        "channels": int(background.shape[0]),
        "num_samples": int(background.shape[1]),
        "duration": duration,
        "frame_times": frame_times,
        "speech_ratio_before": ratio_before,
        "speech_ratio_after": ratio_after,
        "slices": slices,
        "params": params.to_json(),
    }
    tmp = cache_dir / f".tmp-{entry.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "frames").mkdir(parents=True)
    (tmp / "audio.flac").write_bytes(flac_bytes(background, rate))
    for i, frame in enumerate(frames):
        (tmp / "frames" / f"{i:04d}.jpg").write_bytes(frame.jpeg)
    write_json_atomic(tmp / "meta.json", meta)
    try:
        os.rename(tmp, entry)
    except OSError:  # another worker finished the same story first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return StoryResult(entry, json.loads((entry / "meta.json").read_text())), False
