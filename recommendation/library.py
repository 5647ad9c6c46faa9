"""The clips of a sound library: a folder of audio files, or a built SoS dataset's ``stories`` or ``generation`` config.

Every clip has a stable id (its path relative to the folder, or ``config/split/row id`` for a
dataset), a path users can open, and the SHA-256 of its encoded bytes, which the index manifest
keeps so that a re-run encodes only clips that are new or changed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from sound_of_story.audio import read_audio_file
from sound_of_story.metrics.fad.audio_input import audio_file_extensions

DatasetConfig = Literal["stories", "generation"]
DATASET_CONFIGS: tuple[DatasetConfig, ...] = ("stories", "generation")


@dataclasses.dataclass(frozen=True)
class LibraryClip:
    """One clip of a library. ``read`` returns the clip's encoded bytes (FLAC, WAV, ...)."""

    clip_id: str
    path: str
    read: Callable[[], bytes] = dataclasses.field(repr=False, compare=False)
    # A cheap change detector for files: (size, mtime_ns); None for dataset rows (always hashed).
    stat: tuple[int, int] | None = None


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


def library_source(location: str | os.PathLike, config: DatasetConfig = "stories") -> LibrarySource:
    """Classify ``location``: an audio folder, a built SoS folder, or (not a local path) a Hub dataset id."""
    if config not in DATASET_CONFIGS:
        raise ValueError(f"dataset config must be one of {DATASET_CONFIGS}, got {config!r}")
    path = Path(location)
    if path.is_dir():
        if is_built_dataset(path):
            return LibrarySource("dataset", str(path.resolve()), config)
        return LibrarySource("folder", str(path.resolve()))
    if path.exists():
        raise ValueError(f"library {str(path)!r} is a file; give a folder of audio files or a built SoS dataset")
    if str(location).count("/") == 1 and not str(location).startswith((".", "/")):
        return LibrarySource("dataset", str(location), config)  # a Hub dataset repo id
    raise FileNotFoundError(f"library {str(path)!r} does not exist")


def _file_clips(root: Path) -> Iterator[LibraryClip]:
    extensions = audio_file_extensions()
    for path in sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith(".")
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


def decode_clip(clip: LibraryClip, data: bytes) -> tuple:
    """The waveform as the processor takes it, ``(channels, samples)`` float32, and its sampling rate."""
    return read_audio_file(data, clip.path)


__all__ = [
    "DATASET_CONFIGS",
    "LibraryClip",
    "LibrarySource",
    "decode_clip",
    "is_built_dataset",
    "iter_library",
    "library_source",
]
