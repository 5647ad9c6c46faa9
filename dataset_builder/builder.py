"""The SoS ``datasets.GeneratorBasedBuilder``: processed stories to Parquet shards.

datasets 5 runs no loading scripts, so this builder is not what ``load_dataset`` runs: the
command line runs it once to write standard Parquet shards, and the dataset card's YAML
``configs:`` make ``load_dataset(DIR)`` / ``load_dataset(DIR, "generation")`` read them with no
code of ours. It reads the per-story cache entries (:class:`.story_cache.StoryCacheEntry`) that
:mod:`.processing` wrote; the slices' FLAC and spectrogram images are in the entries already
(computed by the workers), so writing the Parquet shards only copies bytes.

* ``stories`` (default): ``id, movie, source, text, audio, frames, frame_times, duration,
  speech_ratio_before, speech_ratio_after`` (audio: the speech-removed background, FLAC).
* ``generation``: ``id, story_id, text, audio, spectrogram, frames, frame_times, start, end``:
  the story's slices of at most 15 s that passed the low-content filter, each with its
  Riffusion-compatible spectrogram image and the key frames shown during it (times relative to
  the story; ``start``/``end`` in seconds). Which split a slice is in comes from the config's
  ``slice_splits`` (at random over slices, as the paper, or the story's split).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import datasets
import numpy as np

from .story_cache import StoryCacheEntry

STORIES_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "movie": datasets.Value("string"),
        "source": datasets.Value("string"),
        "text": datasets.Value("string"),
        "audio": datasets.Audio(),
        "frames": datasets.List(datasets.Image()),
        "frame_times": datasets.List(datasets.Value("float32")),
        "duration": datasets.Value("float32"),
        "speech_ratio_before": datasets.Value("float32"),
        "speech_ratio_after": datasets.Value("float32"),
    }
)
GENERATION_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "story_id": datasets.Value("string"),
        "text": datasets.Value("string"),
        "audio": datasets.Audio(),
        "spectrogram": datasets.Image(),
        "frames": datasets.List(datasets.Image()),
        "frame_times": datasets.List(datasets.Value("float32")),
        "start": datasets.Value("float32"),
        "end": datasets.Value("float32"),
    }
)


@dataclasses.dataclass
class SoSBuilderConfig(datasets.BuilderConfig):
    """``entries``: split name -> cache entry folders (from :func:`.processing.process_story`);
    ``slice_splits``: generation slice id -> split (the ``generation`` config writes a slice in that split only)."""

    entries: dict[str, list[str]] | None = None
    slice_splits: dict[str, str] | None = None


def _image(path) -> dict:
    return {"bytes": path.read_bytes(), "path": None}


class SoSDatasetBuilder(datasets.GeneratorBasedBuilder):
    """Writes the SoS configs from cached story results (see the module docstring)."""

    BUILDER_CONFIG_CLASS = SoSBuilderConfig
    BUILDER_CONFIGS = [
        SoSBuilderConfig(name="stories", description="Stories: speech-removed audio, key frames, description."),
        SoSBuilderConfig(
            name="generation", description="Slices of at most 15 s with spectrogram images, for sound generation."
        ),
    ]
    DEFAULT_CONFIG_NAME = "stories"

    def _info(self) -> datasets.DatasetInfo:
        features = STORIES_FEATURES if self.config.name == "stories" else GENERATION_FEATURES
        return datasets.DatasetInfo(
            description="Sound of Story (SoS): background sound paired with image sequences and story text.",
            features=features,
            citation=CITATION,
            homepage="https://github.com/Sosdatasets/SoS_Dataset",
        )

    def _split_generators(self, dl_manager):
        entries = self.config.entries or {}
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"entries": paths, "split": split})
            for split, paths in entries.items()
            if paths
        ]

    def _generate_examples(self, entries, split):
        for entry in (StoryCacheEntry(Path(p)) for p in entries):
            story = entry.story
            frame_paths = entry.frame_paths()
            if self.config.name == "stories":
                yield (
                    story.id,
                    {
                        "id": story.id,
                        "movie": story.movie,
                        "source": story.source,
                        "text": story.text,
                        "audio": {"bytes": entry.audio_path.read_bytes(), "path": f"{story.id}.flac"},
                        "frames": [_image(p) for p in frame_paths],
                        "frame_times": list(story.frame_times),
                        "duration": story.duration,
                        "speech_ratio_before": story.speech_ratio_before,
                        "speech_ratio_after": story.speech_ratio_after,
                    },
                )
                continue
            slice_splits = self.config.slice_splits or {}
            rate = story.sample_rate
            times = np.asarray(story.frame_times, dtype=np.float64)
            for kept_index, (slice_id, piece) in enumerate(story.kept_slices()):
                if slice_splits.get(slice_id, split) != split:
                    continue
                a, b = piece.start_sample, piece.end_sample
                start, end = a / rate, b / rate
                inside = [i for i, t in enumerate(times) if round(t * rate) >= a and round(t * rate) < b]
                yield (
                    slice_id,
                    {
                        "id": slice_id,
                        "story_id": story.id,
                        "text": story.text,
                        "audio": {
                            "bytes": entry.slice_audio_path(kept_index).read_bytes(),
                            "path": f"{slice_id}.flac",
                        },
                        "spectrogram": _image(entry.slice_spectrogram_path(kept_index)),
                        "frames": [_image(frame_paths[i]) for i in inside],
                        "frame_times": [float(times[i]) for i in inside],
                        "start": start,
                        "end": end,
                    },
                )


CITATION = """@inproceedings{bae2023soundofstory,
  title     = {Sound of Story: Multi-modal Storytelling with Audio},
  author    = {Bae, Jaeyeon and Jeong, Seokhoon and Kang, Seokun and Han, Namgi and Lee, Jae-Yon and Kim, Hyounghun and Kim, Taehwan},
  booktitle = {Findings of the Association for Computational Linguistics: EMNLP 2023},
  year      = {2023}
}"""
