"""The clips of a sound library: a folder of audio files, or a built SoS dataset's ``stories`` or ``generation`` config.

Every clip has a stable id (its path relative to the folder, or ``config/split/row id`` for a
dataset), a path users can open, and the SHA-256 of its encoded bytes, which the index manifest
keeps so that a re-run encodes only clips that are new or changed.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from sound_of_story.audio import read_audio_file
from sound_of_story.audio.decoding import AUDIO_FILE_EXTENSIONS, decode_audio_file
from sound_of_story.core.hashing import bytes_sha256, file_sha256

DatasetConfig = Literal["stories", "generation"]
DATASET_CONFIGS: tuple[DatasetConfig, ...] = ("stories", "generation")
# A Hub repo is named explicitly: hf://owner/name (Hub repo ids: letters, digits, '-', '_', '.').
HUB_PREFIX = "hf://"
HUB_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
# What is decoded of one library file: a sound designer's library holds hour-long field recordings, and the
# retrieval processor reads one window of a clip anyway (the most energetic 10.24 s of what is decoded).
LIBRARY_MAX_SECONDS = 600.0


@dataclasses.dataclass(frozen=True)
class LibraryClip:
    """One clip of a library. ``read`` returns the clip's encoded bytes (FLAC, WAV, ...)."""

    clip_id: str
    path: str
    read: Callable[[], bytes] = dataclasses.field(repr=False, compare=False)
    # A cheap change detector for files: (size, mtime_ns); None for dataset rows (always hashed).
    stat: tuple[int, int] | None = None

    def sha256(self) -> str:
        """SHA-256 of the clip's encoded bytes; a file is hashed in chunks, never read whole into memory."""
        return file_sha256(self.path) if self.stat is not None else bytes_sha256(self.read())


@dataclasses.dataclass(frozen=True)
class LibrarySource:
    """Where the clips come from, as the index config records it."""

    kind: Literal["folder", "dataset"]
    location: str
    config: DatasetConfig | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def is_built_dataset(path: Path) -> bool:
    """A folder written by ``sound-of-story build``: a dataset card and Parquet shards per config."""
    return (path / "README.md").is_file() and any(path.glob("*/*.parquet"))


def hub_repo_id(location: str | os.PathLike) -> str | None:
    """``owner/name`` of an ``hf://owner/name`` location, None for anything else (a local path).

    A Hub repo is only ever named in this explicit form: a relative path such as ``runs/index`` that does not
    exist locally is "not found", never a download of whoever owns that name on the Hub.
    """
    text = os.fspath(location)
    if not isinstance(text, str) or not text.startswith(HUB_PREFIX):
        return None
    repo_id = text[len(HUB_PREFIX) :]
    if not HUB_REPO_ID.fullmatch(repo_id):
        raise ValueError(f"{text!r} is not a Hub repo: write hf://owner/name")
    return repo_id


def library_source(location: str | os.PathLike, config: DatasetConfig = "stories") -> LibrarySource:
    """Classify ``location``: an audio folder, a built SoS folder, or a Hub dataset (``hf://owner/name``)."""
    if config not in DATASET_CONFIGS:
        raise ValueError(f"dataset config must be one of {DATASET_CONFIGS}, got {config!r}")
    repo_id = hub_repo_id(location)
    if repo_id is not None:
        return LibrarySource("dataset", repo_id, config)
    path = Path(location)
    if path.is_dir():
        if is_built_dataset(path):
            return LibrarySource("dataset", str(path.resolve()), config)
        return LibrarySource("folder", str(path.resolve()))
    if path.exists():
        raise ValueError(f"library {str(path)!r} is a file; give a folder of audio files or a built SoS dataset")
    raise FileNotFoundError(f"library {str(path)!r} does not exist (a Hub dataset is written hf://owner/name)")


def check_clip_id(clip_id: object, source: LibrarySource) -> str:
    """``clip_id`` after checking it names a clip inside its library (raises ValueError otherwise).

    A folder clip's id is its path relative to the library folder, so it must be relative, in ``/`` form, with
    no empty, ``.`` or ``..`` part; a dataset clip's id is ``config/split/row id``. No id holds a NUL or a
    backslash. Ids may still hold characters a terminal interprets: show them with `results.printable`.
    """
    if not isinstance(clip_id, str) or not clip_id or "\x00" in clip_id or "\\" in clip_id:
        raise ValueError(f"clip id {clip_id!r} is not a relative path")
    if source.kind == "dataset":
        config, _, rest = clip_id.partition("/")
        split, _, row_id = rest.partition("/")
        if config != source.config or not split or not row_id:
            raise ValueError(f"clip id {clip_id!r} is not {source.config}/split/row id of the library's dataset")
        return clip_id
    parts = clip_id.split("/")
    if clip_id.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"clip id {clip_id!r} names a path outside the library folder")
    return clip_id


def clip_path(source: LibrarySource, clip_id: str) -> str:
    """Where a clip of ``source`` is: its file (``location/clip id``) or ``location::clip id`` for a dataset row."""
    if source.kind == "dataset":
        return f"{source.location}::{clip_id}"
    return str(Path(source.location) / clip_id)


def _file_clips(root: Path) -> Iterator[LibraryClip]:
    for path in sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in AUDIO_FILE_EXTENSIONS and not p.name.startswith(".")
    ):
        stat = path.stat()
        yield LibraryClip(
            path.relative_to(root).as_posix(), str(path), path.read_bytes, (stat.st_size, stat.st_mtime_ns)
        )


def _dataset_clips(source: LibrarySource) -> Iterator[LibraryClip]:
    from datasets import Audio, load_dataset

    splits = load_dataset(source.location, source.config)
    for split_name, split in splits.items():
        rows = split.select_columns(["id", "audio"]).cast_column("audio", Audio(decode=False))
        for row in rows:
            data = row["audio"]["bytes"]
            clip_id = f"{source.config}/{split_name}/{row['id']}"
            yield LibraryClip(clip_id, f"{source.location}::{clip_id}", lambda data=data: data)


def iter_library(source: LibrarySource) -> Iterator[LibraryClip]:
    """The clips of ``source`` in a stable order (sorted paths; dataset splits in their order)."""
    if source.kind == "folder":
        return _file_clips(Path(source.location))
    return _dataset_clips(source)


def decode_clip(clip: LibraryClip) -> tuple:
    """The waveform as the processor takes it, ``(channels, samples)`` float32, and its sampling rate.

    A library file goes through the package's media decoder: any container ffmpeg reads (MP3, M4A, Opus and
    Vorbis in Ogg/WebM/MKA, FLAC, WAV, ...), cover art ignored, 5.1 and 7.1 downmixed to stereo, at most
    :data:`LIBRARY_MAX_SECONDS` read, a truncated, empty or audio-less file refused with its reason
    (``ValueError``). A built dataset's rows are the builder's own FLAC, read directly.
    """
    if clip.stat is None:
        return read_audio_file(clip.read(), clip.path)
    return decode_library_file(clip.path)


def decode_library_file(path: str | os.PathLike) -> tuple:
    """A library file's waveform ``(channels, samples)`` float32 and its rate, as the index encodes it: at most
    :data:`LIBRARY_MAX_SECONDS` read (what the web app plays of a clip is what was indexed, never a whole
    hours-long file in memory)."""
    decoded = decode_audio_file(path, max_seconds=LIBRARY_MAX_SECONDS)
    return decoded.samples, decoded.sample_rate


__all__ = [
    "decode_library_file",
    "DATASET_CONFIGS",
    "HUB_PREFIX",
    "LIBRARY_MAX_SECONDS",
    "LibraryClip",
    "LibrarySource",
    "check_clip_id",
    "clip_path",
    "decode_clip",
    "hub_repo_id",
    "is_built_dataset",
    "iter_library",
    "library_source",
]
