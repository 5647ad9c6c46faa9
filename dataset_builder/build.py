"""``sound-of-story build``: a manifest of movie clips to the SoS dataset on disk.

Layout of the output folder::

    DIR/README.md                         dataset card (YAML configs + dataset_info, statistics)
    DIR/stories/{train,test}-NNNNN-of-NNNNN.parquet
    DIR/generation/{train,test}-NNNNN-of-NNNNN.parquet
    DIR/failures.jsonl                    one row per input that could not be used: id, file, reason
    DIR/work/cache/<story>-<key>/         per-story results (resumable; see processing.py)
    DIR/work/shards/shard-i-of-n.json     what each cluster shard processed (--shard-index/--num-shards)

``load_dataset(DIR)`` and ``load_dataset(DIR, "generation")`` read it without this package.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import multiprocessing
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from .atomic_files import write_json_atomic, write_jsonl_atomic
from .manifest import Failure, StorySource, read_manifest
from .processing import ProcessingParams, StoryError, process_story

PAPER_TEST_SHARE = 1300 / 27354  # the paper's test split: 1,300 of 27,354 stories
SPLITS = ("train", "test")


@dataclasses.dataclass
class BuildReport:
    out_dir: Path
    succeeded: list[str]
    failures: list[Failure]
    from_cache: int
    splits: dict[str, list[str]]

    @property
    def ok(self) -> bool:
        return bool(self.succeeded)


def _work(out_dir: Path) -> Path:
    return out_dir / "work"


def _process_one(args: tuple[StorySource, ProcessingParams, str]) -> tuple[str, str | None, bool, Failure | None]:
    """Worker: (story id, cache entry or None, from cache, failure or None). Never raises."""
    source, params, cache_dir = args
    try:
        result, cached = process_story(source, params, cache_dir)
        return source.id, str(result.entry), cached, None
    except StoryError as err:
        return source.id, None, False, Failure(source.id, err.file, err.reason)
    except Exception as err:  # noqa: BLE001 - one bad story must not stop the build
        return source.id, None, False, Failure(source.id, source.videos[0] if source.videos else "", f"{type(err).__name__}: {err}")


def process_stories(stories: Sequence[StorySource], params: ProcessingParams, cache_dir: str | Path, num_proc: int = 1, progress: bool = True):
    """Process stories (in parallel with ``num_proc`` > 1); results in manifest order."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(s, params, str(cache_dir)) for s in stories]
    bar = tqdm(total=len(jobs), desc="stories", unit="story", disable=not progress)
    results = []
    if num_proc <= 1:
        for job in jobs:
            results.append(_process_one(job))
            bar.update(1)
    else:
        # spawn: torch and decoders do not survive fork well; each worker imports what it needs
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=num_proc, mp_context=ctx, initializer=_init_worker) as pool:
            futures = [pool.submit(_process_one, job) for job in jobs]
            for _ in concurrent.futures.as_completed(futures):
                bar.update(1)
            results = [f.result() for f in futures]
    bar.close()
    return results


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker; the pool is the parallelism


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
    target = round(test_size * len(stories)) if test_size < 1 else int(test_size)
    if test_size > 0 and len(by_movie) >= 2:
        target = max(target, 1)
    order = sorted(by_movie, key=lambda m: hashlib.sha256(m.encode()).hexdigest())
    split, taken = {}, 0
    for i, movie in enumerate(order):
        to_test = taken < target and i < len(order) - 1  # the last movie always stays in train
        taken += len(by_movie[movie]) if to_test else 0
        for story_id in by_movie[movie]:
            split[story_id] = "test" if to_test else "train"
    return split


def _write_failures(out_dir: Path, failures: Sequence[Failure]) -> None:
    write_jsonl_atomic(out_dir / "failures.jsonl", (f.to_json() for f in failures))


def _shard_file(out_dir: Path, index: int, count: int) -> Path:
    return _work(out_dir) / "shards" / f"shard-{index:05d}-of-{count:05d}.json"


def build_dataset(
    manifest: str | Path,
    out_dir: str | Path,
    configs: Sequence[str] = ("stories", "generation"),
    params: ProcessingParams = ProcessingParams(),
    num_proc: int = 1,
    test_size: float | int = PAPER_TEST_SHARE,
    lsmdc_target_s: float = 150.0,
    shard_index: int | None = None,
    num_shards: int | None = None,
    max_shard_size: str | int = "500MB",
    progress: bool = True,
) -> BuildReport:
    """Process every story of ``manifest`` and write the dataset (or one cluster shard of it)."""
    out_dir = Path(out_dir)
    stories, failures = read_manifest(manifest, lsmdc_target_s=lsmdc_target_s)
    positions = {s.id: i for i, s in enumerate(stories)}  # manifest order, kept through shards
    sharded = shard_index is not None or num_shards is not None
    if sharded:
        if shard_index is None or num_shards is None or not 0 <= shard_index < num_shards:
            raise ValueError(f"--shard-index must be in [0, --num-shards), got {shard_index} of {num_shards}")
        stories = stories[shard_index::num_shards]
        failures = [f for i, f in enumerate(failures) if i % num_shards == shard_index]
    results = process_stories(stories, params, _work(out_dir) / "cache", num_proc, progress)
    entries = {sid: entry for sid, entry, _, _ in results if entry}
    failures = failures + [f for _, _, _, f in results if f]
    meta = {"stories": [(s.id, s.movie, positions[s.id]) for s in stories if s.id in entries], "entries": entries, "failures": [f.to_json() for f in failures]}
    cached = sum(1 for _, entry, hit, _ in results if entry and hit)
    if sharded:
        write_json_atomic(_shard_file(out_dir, shard_index, num_shards), meta)
        return BuildReport(out_dir, list(entries), failures, cached, {})
    return _assemble(out_dir, meta, configs, params, test_size, max_shard_size, cached)


def merge_shards(out_dir: str | Path, configs: Sequence[str] = ("stories", "generation"), params: ProcessingParams = ProcessingParams(), test_size: float | int = PAPER_TEST_SHARE, max_shard_size: str | int = "500MB") -> BuildReport:
    """Assemble the dataset from every shard's results (``sound-of-story build --merge``)."""
    out_dir = Path(out_dir)
    files = sorted((_work(out_dir) / "shards").glob("shard-*-of-*.json"))
    if not files:
        raise FileNotFoundError(f"no shard results in {_work(out_dir) / 'shards'}: run `sound-of-story build --shard-index i --num-shards n` first")
    counts = {int(f.stem.rsplit("-of-", 1)[1]) for f in files}
    if len(counts) != 1:
        raise ValueError(f"shard results in {files[0].parent} come from different --num-shards: {sorted(counts)}")
    (count,) = counts
    missing = sorted(set(range(count)) - {int(f.stem.split("-")[1]) for f in files})
    if missing:
        raise ValueError(f"shards {missing} of {count} have not finished; rerun them before --merge")
    merged = {"stories": [], "entries": {}, "failures": []}
    for f in files:
        part = json.loads(f.read_text())
        merged["stories"] += part["stories"]
        merged["entries"].update(part["entries"])
        merged["failures"] += part["failures"]
    return _assemble(out_dir, merged, configs, params, test_size, max_shard_size, 0)


def _assemble(out_dir: Path, meta: dict, configs: Sequence[str], params: ProcessingParams, test_size, max_shard_size, cached: int) -> BuildReport:
    from .builder import SoSDatasetBuilder
    from .dataset_card import write_dataset_card

    failures = [f if isinstance(f, Failure) else Failure(**f) for f in meta["failures"]]
    _write_failures(out_dir, failures)
    stories = [(sid, movie) for sid, movie, _ in sorted(meta["stories"], key=lambda s: s[2])]
    if not stories:
        return BuildReport(out_dir, [], failures, cached, {})
    split_of = split_by_movie(stories, test_size)
    splits = {name: [sid for sid, _ in stories if split_of[sid] == name] for name in SPLITS}
    infos = {}
    for config in configs:
        entries = {name: [meta["entries"][sid] for sid in ids] for name, ids in splits.items()}
        with tempfile.TemporaryDirectory(prefix="sos-build-", dir=out_dir) as tmp:
            builder = SoSDatasetBuilder(config_name=config, entries=entries, cache_dir=str(Path(tmp) / "cache"))
            builder.download_and_prepare(output_dir=str(Path(tmp) / "out"), file_format="parquet", max_shard_size=max_shard_size)
            target = out_dir / config
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for split in SPLITS:
                files = sorted((Path(tmp) / "out").glob(f"*-{split}*.parquet"))
                for i, f in enumerate(files):
                    shutil.move(f, target / f"{split}-{i:05d}-of-{len(files):05d}.parquet")
            infos[config] = builder.info
    write_dataset_card(out_dir, infos, meta, splits, params)
    return BuildReport(out_dir, [sid for sid, _ in stories], failures, cached, splits)
