"""The dataset card (README.md) of a built SoS folder: YAML configs and features, statistics, method."""

from __future__ import annotations

import fnmatch
import json
import statistics
from pathlib import Path

import yaml
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCard, DatasetCardData

from sound_of_story.core.atomic_files import atomic_path

from .builder import CITATION
from .story_cache import StoryCacheEntry

CARD_FILE = "README.md"
GENERATION_SPLIT_TEXT = {
    "random": "at random over slices, as the paper (section 4.2.2: 879 of 185,341 slices); a story's slices can be in both splits",
    "story": "each slice in its story's split (by movie), so no story, and no movie, is in both splits",
}


def live_data_files(out_dir: str | Path) -> list[str]:
    """The data files (relative POSIX paths) that the card of ``out_dir`` names; [] without a card.

    The card is written last, so these are exactly the files of the last whole build.
    """
    out_dir = Path(out_dir)
    card = out_dir / CARD_FILE
    if not card.is_file():
        return []
    text = card.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return []
    configs = (yaml.safe_load(text.split("---\n", 2)[1]) or {}).get("configs") or []
    patterns = [f["path"] for c in configs for f in c.get("data_files") or []]
    present = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.glob("*/*.parquet"))
    return [f for f in present if any(fnmatch.fnmatchcase(f, pattern) for pattern in patterns)]


def _stats(out_dir: Path, index, splits: dict[str, list[str]], slice_splits: dict[str, str]) -> dict:
    entry_of = {s.id: out_dir / s.entry for s in index.stories}
    rows = [StoryCacheEntry(entry_of[sid]).story for ids in splits.values() for sid in ids]
    words = {src: [len(r.text.split()) for r in rows if r.source == src] for src in sorted({r.source for r in rows})}
    slices = [s for r in rows for s in r.slices]
    dropped: dict[str, int] = {}
    for s in slices:
        if not s.keep:
            key = "digital silence" if s.reason == "digital silence" else "low content"
            dropped[key] = dropped.get(key, 0) + 1
    return {
        "stories": len(rows),
        "movies": len({r.movie for r in rows}),
        "images": sum(len(r.frame_times) for r in rows),
        "images_per_story": statistics.fmean(len(r.frame_times) for r in rows),
        "hours": sum(r.duration for r in rows) / 3600,
        "mean_duration": statistics.fmean(r.duration for r in rows),
        "words": {src: (statistics.fmean(w), statistics.median(w)) for src, w in words.items()},
        "speech_before": statistics.fmean(r.speech_ratio_before for r in rows),
        "speech_after": statistics.fmean(r.speech_ratio_after for r in rows),
        "slices_kept": sum(s.keep for s in slices),
        "slices_by_split": {name: sum(v == name for v in slice_splits.values()) for name in splits},
        "slices_dropped": dropped,
        "frames_per_150s": 150 * sum(len(r.frame_times) for r in rows) / max(sum(r.duration for r in rows), 1e-9),
        "release_stories": sum(r.source == "sos" for r in rows),
    }


def _card_data(infos: dict, data_files: dict[str, dict[str, str]]) -> DatasetCardData:
    """The card's YAML: one config per written config (``stories`` the default), their files and features."""
    configs = [
        {
            "config_name": name,
            **({"default": True} if name == "stories" else {}),
            "data_files": [{"split": split, "path": pattern} for split, pattern in data_files[name].items()],
        }
        for name in infos
    ]
    data = DatasetCardData(
        pretty_name="Sound of Story (SoS), built locally",
        license="other",
        language=["en"],
        # the paper's two benchmarks: retrieval between audio, image sequences and text (section 4.1), and audio
        # generation from them (section 4.2); the Hub has no audio-retrieval category
        task_categories=["text-to-audio", "text-retrieval"],
        tags=["storytelling", "background-sound", "movies", "sound-of-story", "audio-retrieval", "video-retrieval"],
        configs=configs,
    )
    DatasetInfosDict(infos).to_dataset_card_data(data)
    return data


def write_dataset_card(
    out_dir: Path,
    infos: dict,
    data_files: dict[str, dict[str, str]],
    index,
    splits: dict[str, list[str]],
    slice_splits: dict[str, str],
    generation_split: str,
) -> Path:
    """Write ``README.md`` in one rename. ``data_files``: config -> split -> the glob of this build's files;
    ``index``: the :class:`.build.BuildIndex` (stories, failures, public processing parameters)."""
    data = _card_data(infos, data_files)
    body = _card_body(_stats(Path(out_dir), index, splits, slice_splits), index, splits, generation_split)
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}")
    path = Path(out_dir) / CARD_FILE
    with atomic_path(path) as tmp:
        card.save(str(tmp))
    return path


def _separation_text(sep: dict) -> str:
    """The speech removal that ran, in words (the card's method, step 2)."""
    backend = sep["backend"]
    if backend == "bytesep":
        return (
            "`bytesep`, as the paper (section 3.2): bytesep's ResUNet143_Subbandtime with its MUSDB18 accompaniment "
            f"checkpoint (`{sep['checkpoint']}`), 44.1 kHz stereo in {sep['bytesep_segment_s']:g} s windows at half "
            "that hop, the windows' middle halves joined."
        )
    if backend == "center":
        return (
            f"`center` (this package's default; STFT {sep['n_fft']}/{sep['hop']}, gain exponent "
            f"{sep['gain_exponent']:g}, speech band {sep['speech_band_hz'][0]:g}-{sep['speech_band_hz'][1]:g} Hz): "
            "the centre-panned part of a stereo mix where silero-vad hears speech. It assumes centred dialogue: "
            "music or effects mixed in the centre are removed with the speech (9.3 dB lost on a test mix with the "
            "music in the centre), and mono input falls back to muting the speech spans. The paper used bytesep's "
            "MUSDB18 accompaniment model (`--separator bytesep`)."
        )
    if backend == "vad":
        return (
            f"`vad`: the spans where silero-vad hears speech lowered by {sep['vad_attenuation_db']:g} dB, the "
            "background under them too. The paper used bytesep's MUSDB18 accompaniment model (`--separator bytesep`)."
        )
    return (
        f"`checkpoint`: HDemucs (`{sep['checkpoint']}`), every stem but vocals kept. The paper used bytesep's "
        "MUSDB18 accompaniment model (`--separator bytesep`)."
    )


def _key_frame_text(kf: dict, release_stories: int) -> str:
    """The key-frame selection that ran, in words (the card's method, step 3)."""
    if kf.get("method") == "imagecluster":
        text = (
            f"`imagecluster`, as the paper (section 3.3): frames sampled at up to {kf['fps']:g} fps as the release's "
            f"OpenCV loop did, VGG16 `fc2` fingerprints (weights `{kf['vgg16_weights']}`, input "
            f"`{kf['vgg16_input']}`), Euclidean distances, average linkage, clusters cut at (1 - "
            f"{kf['max_similarity']:g}) times the story's largest distance, and one frame kept per distinct cluster "
            f"size (the release's script). The {kf['max_similarity']:g} is imagecluster's relative `sim`, not a "
            "similarity between two frames."
        )
    else:
        text = (
            f"`hash` (this package's default): sampled at {kf['fps']:g} fps, `{kf['hash']}` perceptual hashes, a frame "
            f"kept when its similarity (1 - normalised Hamming distance) to the last kept frame is at most "
            f"{kf['max_similarity']:g}. The paper's {kf['max_similarity']:g} means something else: imagecluster's "
            "VGG16 clusters cut at half the story's largest fingerprint distance (`--key-frames imagecluster`)."
        )
    text += f" JPEG, long side at most {kf['max_side']} px."
    if release_stories:
        text += (
            f" Stories of the release's metadata ({release_stories}) keep the frames its `Frames` name, taken by "
            "frame index."
        )
    return text


def _card_body(s: dict, index, splits: dict[str, list[str]], generation_split: str) -> str:
    """The card's Markdown: how to load, this build's statistics (``s``, from :func:`_stats`), the method."""
    word_rows = "\n".join(
        f"| words per text ({src}) | {mean:.1f} (median {median:.1f}) |" for src, (mean, median) in s["words"].items()
    )
    dropped = ", ".join(f"{n} {why}" for why, n in sorted(s["slices_dropped"].items())) or "none"
    split_counts = ", ".join(f"{name}: {len(ids)}" for name, ids in splits.items())
    params = index.params
    sep = params["separation"]
    kf = params["key_frames"]
    gen_counts = ", ".join(f"{name}: {n}" for name, n in s["slices_by_split"].items())
    return f"""
# Sound of Story (SoS), built locally

Background sound (speech removed) paired with key-frame image sequences and story text, in the
format of *Sound of Story: Multi-modal Storytelling with Audio* (Findings of EMNLP 2023), built
with `sound-of-story build` from the builder's own copies of the movie clips.

```python
from datasets import load_dataset
stories = load_dataset("path/to/this/folder")                    # config "stories" (default)
slices = load_dataset("path/to/this/folder", "generation")       # 15 s slices + spectrograms
```

## Statistics (this build; compare with the paper's Table 1)

| | this build |
|---|---|
| stories | {s["stories"]} ({split_counts}; split by movie) |
| movies | {s["movies"]} |
| images | {s["images"]} ({s["images_per_story"]:.1f} per story; the paper: 19.6 per story, "an average of 20 images" per clip) |
| audio | {s["hours"]:.3f} h ({s["mean_duration"]:.1f} s per story on average) |
{word_rows}
| speech ratio (silero-vad windows), before / after removal | {s["speech_before"]:.3f} / {s["speech_after"]:.3f} |
| generation slices kept | {s["slices_kept"]} ({gen_counts}; dropped: {dropped}) |
| inputs that failed | {len(index.failures)} (listed in the builder's `failures.jsonl`, not published) |

The paper's full dataset: 27,354 stories from 3,807 movies (22,330 from CMD, 5,024 from LSMDC), 535,707 images
(19.6 per story in Table 1; "an average of 20 images" per clip in section 3.5) and 984 h of speech-decoupled
audio. Its mean story length is ambiguous: 984 h over 27,354 stories is 129.5 s, section 3.5 says "around 150
seconds on average" and section 4.1.3 "an average length of 215 seconds".

## How it was built

1. Audio decoded at the source rate, channels kept (LSMDC runs: clips joined in order by decoding).
2. Speech removal: {_separation_text(sep)}
   `speech_ratio_before`/`after` record the share of silero-vad speech windows before and after.
3. Key frames: {_key_frame_text(kf, s["release_stories"])}
4. Generation slices: spans between key-frame times accumulated up to {params["slice_seconds"]:g} s
   (longer single spans {"kept" if params["keep_long_slices"] else "dropped"}); slices whose
   `{params["content"]["measure"]}` is below {params["content"]["threshold"]:g} or that are digitally silent are dropped.
5. Spectrograms: Riffusion-compatible images (44.1 kHz, hop 441, 512 mel bins 0-10 kHz, power 0.25),
   1536 px for a 15 s slice.
6. Splits: stories by movie (no movie in both). Generation config: {GENERATION_SPLIT_TEXT[generation_split]}
   (`--generation-split {generation_split}`).

Every step's setting in the paper, this build's default where it differs, whose choice that is and the flag that gives
the paper's way: `docs/paper.md` in the sound-of-story source.

Processing parameters (a separator checkpoint and a VGG16 weights file are named by their SHA-256): `{json.dumps(params, sort_keys=True, default=str)}`

## License

The audio and images come from the builder's copies of the source films: their terms apply.

## Citation

```bibtex
{CITATION}
```
"""
