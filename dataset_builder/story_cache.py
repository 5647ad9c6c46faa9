"""One processed story on disk: the per-story cache entry, and the only code that knows its layout.

An entry is a folder ``<cache_dir>/<story>-<key>/`` (the key hashes the inputs' content and
every processing parameter, see :func:`.processing.cache_key`)::

    story.json          the story's fields and processing results (see below)
    audio.flac          the speech-removed background, 16-bit FLAC at the source rate
    frames/NNNN.jpg     the key frames, in time order
    slices/NNN.flac     each kept generation slice's audio (16-bit FLAC, cut from audio.flac), by kept index
    slices/NNN.png      its Riffusion spectrogram image (the ``generation`` config's ``spectrogram``)
    done.json           written last: size and SHA-256 of every file above

``story.json`` is a :class:`StoryRecord` (``to_json``): ``id, movie, source, text, clip_ids,
sample_rate, channels, num_samples, duration, frame_times, speech_ratio_before,
speech_ratio_after, slices`` (each a :class:`SliceRecord`: ``start_sample, end_sample, long, keep,
measure, reason``), ``params`` and ``timings``.

``timings`` (the field benchmarks read, e.g. ``benchmarks/build_throughput.py``) maps each
processing step to the seconds it took when the entry was computed: ``decode``,
``separation``, ``vad`` (speech ratios before and after), ``key_frame_scan`` (the ffmpeg pass
over the video, in a background thread beside the audio steps when the worker has 2+ threads),
``key_frames`` (the wait for that scan, and the kept frames' full-size decoding), ``slicing``
(slices and the low-content filter), ``flac_encoding`` (the background audio to FLAC),
``slice_flac_encoding`` and ``spectrograms`` (the kept slices' FLAC and spectrogram images). An
entry loaded from the cache keeps the timings of the run that computed it.

An entry is written into a temporary folder beside it and renamed into place, with the done
marker written last, so a killed run leaves a whole entry or none; an entry whose marker is
missing or whose files do not match it (truncated, deleted, damaged) is not used: the story is
processed again.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path

from sound_of_story.core.atomic_files import write_json_atomic
from sound_of_story.core.hashing import file_sha256

STORY_FILE = "story.json"
AUDIO_FILE = "audio.flac"
FRAMES_DIR = "frames"
DONE_FILE = "done.json"
TIMED_STEPS = (
    "decode",
    "separation",
    "vad",
    "key_frame_scan",
    "key_frames",
    "slicing",
    "flac_encoding",
    "slice_flac_encoding",
    "spectrograms",
)
SLICES_DIR = "slices"
_TMP_PREFIX = ".tmp-"


def _owner_tag() -> str:
    """Host and process of a temporary folder, so a run cleans up only what dead runs on its host left."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _is_dead_local(tag: str) -> bool:
    host, _, pid = tag.rpartition("-")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's (a cluster shard): not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def slice_id(story_id: str, kept_index: int) -> str:
    """The id of a story's ``kept_index``-th kept generation slice (a row of the ``generation`` config)."""
    return f"{story_id}_s{kept_index:03d}"


@dataclasses.dataclass(frozen=True)
class SliceRecord:
    """One generation slice of a story (``story.json``'s ``slices``): its span and the low-content filter's decision."""

    start_sample: int  # inclusive, in the story's audio
    end_sample: int  # exclusive
    long: bool  # a single span between key frames longer than the slice length
    keep: bool  # passed the low-content filter
    measure: float  # the filter's measure (0.0 for digital silence)
    reason: str | None  # why the slice was dropped; None when kept

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> SliceRecord:
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class StoryRecord:
    """A processed story's fields and results: what a worker writes as the entry's ``story.json``.

    :meth:`to_json` gives the file's layout (these fields, sequences as lists, each slice as an object), so
    entries written before the record was typed load unchanged and equal records give equal files.
    """

    id: str
    movie: str
    source: str  # "cmd", "lsmdc" or "sos"
    text: str
    clip_ids: tuple[str, ...]
    sample_rate: int
    channels: int
    num_samples: int  # of the speech-removed background, per channel
    duration: float  # seconds
    frame_times: tuple[float, ...]  # the key frames', seconds from the story's start
    speech_ratio_before: float  # share of silero-vad speech windows in the input
    speech_ratio_after: float  # and in the background
    slices: tuple[SliceRecord, ...]  # every generation slice, kept or not, in time order
    params: dict  # ProcessingParams.public_json()
    timings: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds per step (TIMED_STEPS)

    def to_json(self) -> dict:
        data = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        data["clip_ids"] = list(self.clip_ids)
        data["frame_times"] = list(self.frame_times)
        data["slices"] = [s.to_json() for s in self.slices]
        return data

    @classmethod
    def from_json(cls, data: dict) -> StoryRecord:
        return cls(
            **{
                **data,
                "clip_ids": tuple(data["clip_ids"]),
                "frame_times": tuple(data["frame_times"]),
                "slices": tuple(SliceRecord.from_json(s) for s in data["slices"]),
            }
        )

    def kept_slices(self) -> list[tuple[str, SliceRecord]]:
        """(slice id, slice) of every generation slice that passed the low-content filter, in time order
        (a slice's position in this list is its kept index)."""
        kept = [s for s in self.slices if s.keep]
        return [(slice_id(self.id, k), s) for k, s in enumerate(kept)]


@dataclasses.dataclass(frozen=True)
class StoryCacheEntry:
    """A processed story's folder; see the module docstring for the layout."""

    path: Path

    @classmethod
    def at(cls, cache_dir: str | Path, story_id: str, key: str) -> StoryCacheEntry:
        """The entry of ``story_id`` processed with cache key ``key`` (it may not exist yet)."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", story_id)[:80]  # the key keeps ids that clean alike apart
        return cls(Path(cache_dir) / f"{safe}-{key}")

    @property
    def audio_path(self) -> Path:
        return self.path / AUDIO_FILE

    def frame_path(self, index: int) -> Path:
        return self.path / FRAMES_DIR / f"{index:04d}.jpg"

    def frame_paths(self) -> list[Path]:
        return [self.frame_path(i) for i in range(len(self.story.frame_times))]

    def slice_audio_path(self, kept_index: int) -> Path:
        """The FLAC of the ``kept_index``-th kept slice (see :meth:`kept_slices`)."""
        return self.path / SLICES_DIR / f"{kept_index:03d}.flac"

    def slice_spectrogram_path(self, kept_index: int) -> Path:
        """The spectrogram PNG of the ``kept_index``-th kept slice."""
        return self.path / SLICES_DIR / f"{kept_index:03d}.png"

    @functools.cached_property
    def story(self) -> StoryRecord:
        """The story's fields and processing results (``story.json``)."""
        return StoryRecord.from_json(json.loads((self.path / STORY_FILE).read_text(encoding="utf-8")))

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per processing step (:data:`TIMED_STEPS`) of the run that computed the entry."""
        return self.story.timings

    def kept_slices(self) -> list[tuple[str, SliceRecord]]:
        """:meth:`StoryRecord.kept_slices` of this entry's story."""
        return self.story.kept_slices()

    def problem(self) -> str | None:
        """Why the entry cannot be used (absent, unfinished, a file missing or changed), or None when whole."""
        done = self.path / DONE_FILE
        if not done.is_file():
            return "no entry" if not self.path.exists() else "unfinished (no done marker)"
        try:
            files = json.loads(done.read_text(encoding="utf-8"))["files"]
        except (ValueError, KeyError, TypeError):
            return "damaged done marker"
        for name, (size, digest) in files.items():
            path = self.path / name
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != size:
                return f"{name} has {path.stat().st_size} bytes, {size} expected (truncated?)"
            if file_sha256(path) != digest:
                return f"{name} does not match its hash"
        return None

    def is_complete(self) -> bool:
        return self.problem() is None

    def discard(self) -> None:
        """Remove an unusable entry (renamed aside first, so a half-removed one never looks present)."""
        if not self.path.exists():
            return
        aside = self.path.with_name(f"{_TMP_PREFIX}{self.path.name}.discarded@{_owner_tag()}")
        os.rename(self.path, aside)
        shutil.rmtree(aside, ignore_errors=True)

    @classmethod
    def write(
        cls,
        entry: StoryCacheEntry,
        story: StoryRecord,
        audio_flac: bytes,
        frames_jpeg: Sequence[bytes],
        slice_files: Sequence[tuple[bytes, bytes]] = (),
    ) -> StoryCacheEntry:
        """Write an entry atomically (temporary folder, done marker last, one rename).

        ``slice_files``: (FLAC, spectrogram PNG) of each kept slice, in kept order.

        When another worker finished the same entry first, theirs is kept. The temporary folder
        is removed on every path, errors included.
        """
        tmp = entry.path.with_name(f"{_TMP_PREFIX}{entry.path.name}@{_owner_tag()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            (tmp / FRAMES_DIR).mkdir(parents=True)
            (tmp / AUDIO_FILE).write_bytes(audio_flac)
            names = [AUDIO_FILE]
            for i, jpeg in enumerate(frames_jpeg):
                name = f"{FRAMES_DIR}/{i:04d}.jpg"
                (tmp / name).write_bytes(jpeg)
                names.append(name)
            if slice_files:
                (tmp / SLICES_DIR).mkdir()
            for i, (flac, png) in enumerate(slice_files):
                for name, data in ((f"{SLICES_DIR}/{i:03d}.flac", flac), (f"{SLICES_DIR}/{i:03d}.png", png)):
                    (tmp / name).write_bytes(data)
                    names.append(name)
            write_json_atomic(tmp / STORY_FILE, story.to_json())
            names.append(STORY_FILE)
            write_json_atomic(
                tmp / DONE_FILE, {"files": {n: [(tmp / n).stat().st_size, file_sha256(tmp / n)] for n in names}}
            )
            try:
                os.rename(tmp, entry.path)
            except OSError:  # another worker finished the same story first: keep theirs
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls(entry.path)


def remove_unfinished(cache_dir: str | Path) -> None:
    """Remove the temporary folders that killed runs on this host left in ``cache_dir``.

    Folders of live processes, and of other hosts (cluster shards share the cache), are left alone.
    """
    cache_dir = Path(cache_dir)
    if cache_dir.is_dir():
        for leftover in cache_dir.glob(f"{_TMP_PREFIX}*@*"):
            if _is_dead_local(leftover.name.rpartition("@")[2]):
                shutil.rmtree(leftover, ignore_errors=True)
