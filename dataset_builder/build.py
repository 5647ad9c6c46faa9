"""``sound-of-story build``: a manifest of movie clips to the SoS dataset on disk.

Layout of the output folder::

    DIR/README.md                         dataset card (YAML configs + dataset_info, statistics)
    DIR/stories/{train,test}-<build>-NNNNN-of-NNNNN.parquet
    DIR/generation/{train,test}-<build>-NNNNN-of-NNNNN.parquet
    DIR/failures.jsonl                    one row per input that could not be used: id, file, reason
    DIR/work/cache/<story>-<key>/         per-story results (resumable; see story_cache.py)
    DIR/work/shards/shard-i-of-n.json     what each cluster shard processed (--shard-index/--num-shards)

``load_dataset(DIR)`` and ``load_dataset(DIR, "generation")`` read it without this package.

The final write never mixes two builds: the Parquet files of a build carry its id (a hash of
what it holds) and are written through a staging folder next to the old ones; the card, written
last with one rename, names exactly the files of its build, so it switches readers from the old
dataset to the new one at once and is the completion marker (a folder with a card is whole).
Files no card names and staging folders of killed runs are removed by the next build.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from sound_of_story.core.atomic_files import write_json_atomic, write_jsonl_atomic
from sound_of_story.core.hashing import file_sha256, json_sha256

from .build_options import (
    CONFIG_NAMES,
    PAPER_GENERATION_TEST_SHARE,
    PAPER_TEST_SHARE,
    BuildOptions,
    with_overrides,
)
from .engines import DEFAULT_ENGINE, Engine, run_jobs
from .manifest import Failure, StorySource, printable, read_manifest
from .processing import ProcessingParams, StoryJob, StoryOutcome
from .story_cache import StoryCacheEntry, remove_unfinished

SPLITS = ("train", "test")
STAGING_PREFIX = ".staging-"
# A build marks its output folder and each staging folder, and deletes only what carries its marks: a staging
# folder, or a Parquet file the card does not name inside a folder that is one of its builds.
BUILD_MARKER = ".sound-of-story-build"
STAGING_MARKER = ".sound-of-story-staging"


@dataclasses.dataclass
class BuildReport:
    out_dir: Path
    succeeded: list[str]
    failures: list[Failure]
    from_cache: int
    splits: dict[str, list[str]]
    # seconds the Parquet assembly took per config ("stories", "generation"), for benchmarks
    assembly_seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.succeeded)

    def failures_by_reason(self) -> dict[str, int]:
        counts = Counter(printable(f.category) for f in self.failures)
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def summary(self) -> str:
        """One line: stories built, from the cache, failed (by reason)."""
        reasons = ", ".join(f"{why}: {n}" for why, n in self.failures_by_reason().items())
        return (
            f"build summary: {len(self.succeeded)} stories built, {self.from_cache} from the cache, "
            f"{len(self.failures)} failed" + (f" ({reasons})" if reasons else "")
        )


@dataclasses.dataclass(frozen=True)
class IndexedStory:
    id: str
    movie: str
    position: int  # in the manifest: the dataset keeps manifest order, across shards too
    entry: str  # the story's cache entry, relative to the output folder (shards merge from anywhere)


@dataclasses.dataclass
class BuildIndex:
    """What a build, or one cluster shard, processed: its stories' cache entries, its failures, and what
    it was built with (compared across shards by ``--merge``). One story's own record is its ``story.json``."""

    stories: list[IndexedStory]
    failures: list[Failure]
    params: dict  # ProcessingParams.public_json(): no local paths
    inputs: dict  # the manifest's content hash and the LSMDC story length

    def to_json(self) -> dict:
        return {
            "stories": [dataclasses.asdict(s) for s in self.stories],
            "failures": [f.to_json() for f in self.failures],
            "params": self.params,
            "inputs": self.inputs,
        }

    @classmethod
    def from_json(cls, data: dict) -> BuildIndex:
        return cls(
            [IndexedStory(**s) for s in data["stories"]],
            [Failure(**f) for f in data["failures"]],
            data["params"],
            data["inputs"],
        )


def _work(out_dir: Path) -> Path:
    return out_dir / "work"


def process_stories(
    stories: Sequence[StorySource], params: ProcessingParams, cache_dir: str | Path, num_proc: int = 1, progress: bool = True,
    engine: Engine = DEFAULT_ENGINE, ray_address: str | None = None,
) -> list[StoryOutcome]:  # fmt: skip
    """Process stories with the chosen engine (see :mod:`.engines`: ``num_proc`` local worker
    processes, or Ray tasks); one :class:`StoryOutcome` per story, in input order."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    jobs = [StoryJob(i, s, params, str(cache_dir)) for i, s in enumerate(stories)]
    return run_jobs(jobs, engine, num_proc, ray_address, progress)


def _test_target(test_size: float | int, total: int, groups: int) -> int:
    """How many of ``total`` items ``test_size`` puts in test (a share when < 1, a count otherwise): at least one
    when it is not 0 and there are two or more ``groups`` (movies, slices) to split."""
    target = round(test_size * total) if test_size < 1 else int(test_size)
    return max(target, 1) if test_size > 0 and groups >= 2 else target


def _hash_order(names) -> list[str]:
    """``names`` in the order of their SHA-256: deterministic, and unrelated to the manifest's order."""
    return sorted(names, key=lambda name: hashlib.sha256(name.encode()).hexdigest())


def split_by_movie(stories: Sequence[tuple[str, str]], test_size: float | int = PAPER_TEST_SHARE) -> dict[str, str]:
    """Story id -> "train"/"test", whole movies at a time, deterministic.

    Movies are ordered by a hash of their name and moved to test until it holds ``test_size``
    stories (a share when < 1, a count otherwise; at least one movie when there are two or more).
    """
    if test_size < 0:
        raise ValueError(f"test_size must be >= 0, got {test_size}")
    by_movie: dict[str, list[str]] = defaultdict(list)
    for story_id, movie in stories:
        by_movie[movie].append(story_id)
    target = _test_target(test_size, len(stories), len(by_movie))
    order = _hash_order(by_movie)
    split, taken = {}, 0
    for i, movie in enumerate(order):
        to_test = taken < target and i < len(order) - 1  # the last movie always stays in train
        taken += len(by_movie[movie]) if to_test else 0
        for story_id in by_movie[movie]:
            split[story_id] = "test" if to_test else "train"
    return split


def split_slices_at_random(
    slice_ids: Sequence[str], test_size: float | int = PAPER_GENERATION_TEST_SHARE
) -> dict[str, str]:
    """Slice id -> "train"/"test", at random over slices as the paper's generation split (section 4.2.2).

    Deterministic: slices are ordered by a hash of their id and the first ``test_size`` (a share
    when < 1, a count otherwise; at least one slice when there are two or more) go to test.
    """
    if not (math.isfinite(test_size) and test_size >= 0):
        raise ValueError(f"generation test size must be a finite number >= 0, got {test_size}")
    target = _test_target(test_size, len(slice_ids), len(slice_ids))
    target = min(target, len(slice_ids) - 1) if len(slice_ids) >= 2 else 0  # train is never empty
    test = set(_hash_order(slice_ids)[:target])
    return {i: "test" if i in test else "train" for i in slice_ids}


def _shard_file(out_dir: Path, index: int, count: int) -> Path:
    return _work(out_dir) / "shards" / f"shard-{index:05d}-of-{count:05d}.json"


def is_previous_build(out_dir: Path) -> bool:
    """Whether ``out_dir`` is a build of this tool: its marker, or (builds from before the marker) a dataset card
    that names our Parquet files or the story cache in ``work/``."""
    from .dataset_card import live_data_files

    return (out_dir / BUILD_MARKER).is_file() or bool(live_data_files(out_dir)) or (_work(out_dir) / "cache").is_dir()


def _check_out_dir(out_dir: Path) -> None:
    """Refuse an ``--out`` that is a file, or a non-empty folder that is not a build of this tool: a build removes
    leftovers of its own runs there, and must never touch a user's files."""
    for parent in [out_dir, *out_dir.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"--out {out_dir}: {parent} is a file, not a folder")
            break
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_previous_build(out_dir):
        raise ValueError(
            f"--out {out_dir} is a folder with other files in it, not a build of sound-of-story (no {BUILD_MARKER}, "
            "dataset card or work/cache): choose a new or empty folder; nothing was changed"
        )


def _mark_out_dir(out_dir: Path) -> None:
    if not (out_dir / BUILD_MARKER).is_file():
        write_json_atomic(out_dir / BUILD_MARKER, {"tool": "sound-of-story build", "marker_version": 1})


def build_dataset(
    manifest: str | Path, out_dir: str | Path, options: BuildOptions | None = None, **overrides
) -> BuildReport:
    """Process every story of ``manifest`` and write the dataset (or one cluster shard of it) into ``out_dir``.

    ``options``: a :class:`.build_options.BuildOptions` (its defaults when None); keyword arguments name
    fields of it to replace, so ``build_dataset(manifest, out, test_size=1, progress=False)`` is
    ``build_dataset(manifest, out, BuildOptions(test_size=1, progress=False))``.
    """
    options = with_overrides(options, overrides)
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    stories, failures = read_manifest(manifest, lsmdc_target_s=options.lsmdc_target_s)
    out_dir.mkdir(parents=True, exist_ok=True)
    _mark_out_dir(out_dir)
    positions = options.shard_of(range(len(stories)))
    stories, failures = options.shard_of(stories), options.shard_of(failures)
    cache_dir = _work(out_dir) / "cache"
    remove_unfinished(cache_dir)
    outcomes = {
        o.index: o
        for o in process_stories(
            stories, options.params, cache_dir, options.num_proc, options.progress, options.engine, options.ray_address
        )
    }
    if sorted(outcomes) != list(range(len(stories))):  # an engine lost or doubled a story: never guess which
        raise RuntimeError(
            f"processing returned outcomes for positions {sorted(outcomes)}, expected 0..{len(stories) - 1}"
        )
    # results are keyed by position: two inputs can never share a slot, whatever their ids
    index = BuildIndex(
        stories=[IndexedStory(s.id, s.movie, positions[i], os.path.relpath(outcomes[i].entry, out_dir)) for i, s in enumerate(stories) if outcomes[i].ok],
        failures=failures + [outcomes[i].failure for i in range(len(stories)) if outcomes[i].failure],
        params=options.params.public_json(),
        inputs={"manifest_sha256": file_sha256(manifest), "lsmdc_target_s": options.lsmdc_target_s},
    )  # fmt: skip
    cached = sum(1 for o in outcomes.values() if o.ok and o.from_cache)
    if options.sharded:
        write_json_atomic(_shard_file(out_dir, options.shard_index, options.num_shards), index.to_json())
        return BuildReport(out_dir, [s.id for s in index.stories], index.failures, cached, {})
    return _assemble(out_dir, index, options, cached)


def _flatten(data: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_same_parameters(parts: dict[str, BuildIndex]) -> None:
    """Refuse shards built with different parameters or manifests, naming the parameter."""
    (first_name, first), *others = parts.items()
    reference = _flatten({"params": first.params, "inputs": first.inputs})
    for name, part in others:
        theirs = _flatten({"params": part.params, "inputs": part.inputs})
        for key in sorted(reference.keys() | theirs.keys()):
            if reference.get(key) != theirs.get(key):
                raise ValueError(
                    f"shards were built with different parameters: {key} is {reference.get(key)!r} in {first_name} "
                    f"but {theirs.get(key)!r} in {name}; rebuild the odd shards with the same options and manifest"
                )


def merge_shards(out_dir: str | Path, options: BuildOptions | None = None, **overrides) -> BuildReport:
    """Assemble the dataset from every shard's results (``sound-of-story build --merge``).

    ``options`` and ``overrides`` as for :func:`build_dataset`; only the split and shard-size options are
    used: the processing parameters come from the shards themselves (they must agree), not from the caller.
    """
    options = with_overrides(options, overrides)
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    files = sorted((_work(out_dir) / "shards").glob("shard-*-of-*.json"))
    if not files:
        raise FileNotFoundError(
            f"no shard results in {_work(out_dir) / 'shards'}: run `sound-of-story build --shard-index i --num-shards n` first"
        )
    counts = {int(f.stem.rsplit("-of-", 1)[1]) for f in files}
    if len(counts) != 1:
        raise ValueError(f"shard results in {files[0].parent} come from different --num-shards: {sorted(counts)}")
    (count,) = counts
    missing = sorted(set(range(count)) - {int(f.stem.split("-")[1]) for f in files})
    if missing:
        raise ValueError(f"shards {missing} of {count} have not finished; rerun them before --merge")
    parts = {f.name: BuildIndex.from_json(json.loads(f.read_text(encoding="utf-8"))) for f in files}
    _check_same_parameters(parts)
    first = next(iter(parts.values()))
    merged = BuildIndex(
        [s for p in parts.values() for s in p.stories],
        [f for p in parts.values() for f in p.failures],
        first.params,
        first.inputs,
    )
    return _assemble(out_dir, merged, options, 0)


def _remove_leftovers(out_dir: Path, keep: Sequence[str]) -> None:
    """Remove staging folders of killed runs and Parquet files the live card does not name (``keep``)."""
    for leftover in out_dir.glob(f"{STAGING_PREFIX}*"):
        if leftover.is_dir() and not leftover.is_symlink() and (leftover / STAGING_MARKER).is_file():
            shutil.rmtree(leftover, ignore_errors=True)
    keep = set(keep)
    for config in CONFIG_NAMES:
        for f in (out_dir / config).glob("*.parquet"):
            if f.relative_to(out_dir).as_posix() not in keep:
                f.unlink()


def _build_id(index: BuildIndex, options: BuildOptions, splits: dict, slice_splits: dict) -> str:
    """Names this build's files: equal inputs and options give equal names (and equal files)."""
    payload = {
        "stories": [(s.id, Path(s.entry).name) for s in sorted(index.stories, key=lambda s: s.position)],
        "configs": list(options.configs), "splits": splits, "slice_splits": slice_splits,
        "max_shard_size": str(options.max_shard_size),
    }  # fmt: skip
    return json_sha256(payload)[:12]


def _split(
    ordered: Sequence[IndexedStory], entries: dict[str, StoryCacheEntry], options: BuildOptions
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Split -> story ids (by movie, in manifest order), and generation slice id -> split."""
    split_of = split_by_movie([(s.id, s.movie) for s in ordered], options.test_size)
    splits = {name: [s.id for s in ordered if split_of[s.id] == name] for name in SPLITS}
    slices = {sid: story_id for story_id, entry in entries.items() for sid, _ in entry.kept_slices()}
    if options.generation_split == "random":
        slice_splits = split_slices_at_random(list(slices), options.generation_test_size)
    else:
        slice_splits = {sid: split_of[story_id] for sid, story_id in slices.items()}
    return splits, slice_splits


def _entries_by_split(
    config: str, entries: dict[str, StoryCacheEntry], splits: dict[str, list[str]], slice_splits: dict[str, str]
) -> dict[str, list[str]]:
    """Split -> the cache entries (folders) that ``config`` reads for it."""
    if config == "stories":
        return {name: [str(entries[sid].path) for sid in ids] for name, ids in splits.items()}
    # a story's slices may fall in both splits when they are drawn at random
    return {
        name: [str(e.path) for e in entries.values() if any(slice_splits[sid] == name for sid, _ in e.kept_slices())]
        for name in SPLITS
    }


def _write_config(
    config: str, by_split: dict[str, list[str]], slice_splits: dict[str, str], max_shard_size: str | int,
    staging: Path, out_dir: Path, build_id: str,
):  # fmt: skip
    """Write ``config``'s Parquet files (in ``staging``) and move them into ``out_dir`` under this build's names.

    Returns the config's ``DatasetInfo``, split -> the glob of its files (no split without rows), and the seconds
    the Parquet writing took.
    """
    from .builder import SoSDatasetBuilder

    builder = SoSDatasetBuilder(
        config_name=config, entries=by_split, slice_splits=slice_splits, cache_dir=str(staging / "hf-cache")
    )
    started = time.perf_counter()
    builder.download_and_prepare(
        output_dir=str(staging / config / "out"), file_format="parquet", max_shard_size=max_shard_size
    )
    seconds = time.perf_counter() - started
    data_files = {}
    for split in SPLITS:
        files = sorted((staging / config / "out").glob(f"*-{split}*.parquet"))
        if files:
            data_files[split] = f"{config}/{split}-{build_id}-*.parquet"
        for i, f in enumerate(files):
            (out_dir / config).mkdir(exist_ok=True)
            # files of this build have names no card names yet: moving them in changes no reader's view
            os.replace(f, out_dir / config / f"{split}-{build_id}-{i:05d}-of-{len(files):05d}.parquet")
    return builder.info, data_files, seconds


def _assemble(out_dir: Path, index: BuildIndex, options: BuildOptions, cached: int) -> BuildReport:
    """Write the dataset of ``index``'s stories: each config's Parquet files, then the card naming them."""
    from .dataset_card import live_data_files, write_dataset_card

    out_dir.mkdir(parents=True, exist_ok=True)
    _mark_out_dir(out_dir)
    _remove_leftovers(out_dir, live_data_files(out_dir))  # what a killed run left
    ordered = sorted(index.stories, key=lambda s: s.position)
    if not ordered:
        _write_failures(out_dir, index.failures)
        return BuildReport(out_dir, [], index.failures, cached, {})
    entries = {s.id: StoryCacheEntry(out_dir / s.entry) for s in ordered}
    splits, slice_splits = _split(ordered, entries, options)
    build_id = _build_id(index, options, splits, slice_splits)
    staging = out_dir / f"{STAGING_PREFIX}{build_id}-{os.getpid()}"
    infos, data_files, timings = {}, {}, {}
    try:
        staging.mkdir()
        (staging / STAGING_MARKER).touch()
        for config in options.configs:
            by_split = _entries_by_split(config, entries, splits, slice_splits)
            info, files, timings[config] = _write_config(
                config, by_split, slice_splits, options.max_shard_size, staging, out_dir, build_id
            )
            if files:  # a config without data (e.g. no slice passed the low-content filter) is left out
                infos[config], data_files[config] = info, files
        # the switch: one rename of the card, which names exactly this build's files
        write_dataset_card(out_dir, infos, data_files, index, splits, slice_splits, options.generation_split)
        _write_failures(out_dir, index.failures)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _remove_leftovers(out_dir, live_data_files(out_dir))  # the previous build's files
    return BuildReport(out_dir, [s.id for s in ordered], index.failures, cached, splits, dict(timings))


def _write_failures(out_dir: Path, failures: Sequence[Failure]) -> None:
    write_jsonl_atomic(out_dir / "failures.jsonl", (f.to_json() for f in failures))
