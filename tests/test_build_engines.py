"""Build engines: local worker processes and Ray tasks run the same per-story worker.

One local Ray instance (``ray.init(num_cpus=2)``) serves the whole module."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray

from sound_of_story.dataset_builder import engines
from sound_of_story.dataset_builder.build import build_dataset, process_stories
from sound_of_story.dataset_builder.manifest import read_manifest
from sound_of_story.dataset_builder.processing import ProcessingParams, StoryJob, run_story_job

KILL_AFTER_S = 0.3  # into the story: its decoding and separation are under way


def _tables(out: Path) -> dict[str, object]:
    return {str(p.relative_to(out)): pq.read_table(p) for p in sorted(out.glob("*/*.parquet"))}


def kill_worker_on_first_try(job: StoryJob):
    """The per-story worker, but the first try of each story kills its own process part-way through."""
    marker = Path(job.cache_dir).parent / f"tried-{job.index}"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        threading.Timer(KILL_AFTER_S, os.kill, (os.getpid(), signal.SIGKILL)).start()
    return run_story_job(job)


@pytest.fixture(scope="module")
def local_ray():
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import this test module
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def manifest(cmd_samples, tmp_path_factory) -> Path:
    folder, records = cmd_samples
    d = tmp_path_factory.mktemp("engines")
    (d / "empty.mp4").write_bytes(b"")
    rows = [
        {
            "id": f"story_{i}",
            "video": str(folder / r["files"]["video"]),
            "description": r["description"],
            "movie": f"movie_{i}",
        }
        for i, r in enumerate(records)
    ]
    rows.append({"id": "bad_clip", "video": "empty.mp4", "description": "A story."})
    path = d / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def local_build(manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    build_dataset(manifest, out, test_size=1, progress=False)
    return out


def test_ray_build_equals_the_local_build_and_resumes_from_its_cache(local_ray, manifest, local_build, tmp_path):
    report = build_dataset(manifest, tmp_path, test_size=1, progress=False, engine="ray")
    assert sorted(report.succeeded) == ["story_0", "story_1"] and report.from_cache == 0
    mine, theirs = _tables(tmp_path), _tables(local_build)
    assert mine.keys() == theirs.keys() and len(mine) >= 3
    for name in mine:
        assert mine[name].equals(theirs[name]), name
    # a bad clip lands in failures.jsonl exactly as in a local build
    rows = [json.loads(line) for line in (tmp_path / "failures.jsonl").read_text().splitlines()]
    assert [(r["id"], r["file"].endswith("empty.mp4")) for r in rows] == [
        ("bad_clip", True)
    ] and "empty file (0 bytes)" in rows[0]["reason"]
    assert (tmp_path / "failures.jsonl").read_text() == (local_build / "failures.jsonl").read_text()
    # a rerun, with either engine, finds every story in the same cache
    stories, _ = read_manifest(manifest)
    for engine in engines.ENGINES:
        outcomes = process_stories(
            stories, ProcessingParams(), tmp_path / "work" / "cache", progress=False, engine=engine
        )
        assert [(o.story_id, o.from_cache) for o in outcomes] == [
            ("story_0", True),
            ("story_1", True),
            ("bad_clip", False),
        ], engine


def test_ray_retries_a_story_whose_worker_was_killed(local_ray, manifest, local_build, tmp_path):
    stories, _ = read_manifest(manifest)
    cache = tmp_path / "cache"
    jobs = [StoryJob(0, stories[0], ProcessingParams(), str(cache))]
    (outcome,) = engines.run_ray(jobs, progress=False, worker=kill_worker_on_first_try)
    assert outcome.ok and not outcome.from_cache, outcome.failure
    assert (tmp_path / "tried-0").exists()  # the first try ran, and killed its worker
    killed_pid = int((tmp_path / "tried-0").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(killed_pid, 0)
    # the retry wrote the same story as the local build did
    entry = Path(outcome.entry)
    twin = local_build / "work" / "cache" / entry.name
    assert (entry / "audio.flac").read_bytes() == (twin / "audio.flac").read_bytes()


def test_ray_reports_a_story_whose_worker_always_dies(local_ray, manifest, tmp_path):
    stories, _ = read_manifest(manifest)
    jobs = [StoryJob(0, stories[0], ProcessingParams(), str(tmp_path / "cache"))]
    (outcome,) = engines.run_ray(jobs, progress=False, worker=_always_die, max_retries=0)
    assert not outcome.ok and outcome.story_id == "story_0"
    assert "Ray task failed after 0 retries" in outcome.failure.reason and outcome.failure.file.endswith(".mp4")


def _always_die(job: StoryJob):
    os.kill(os.getpid(), signal.SIGKILL)


def test_engine_options():
    assert engines.threads_per_worker(1, cpus=16) == 16
    assert engines.threads_per_worker(2, cpus=16) == 8
    assert engines.threads_per_worker(3, cpus=2) == 1
    with pytest.raises(ValueError, match="engine must be one of local, ray"):
        engines.check_engine("dask")
    with pytest.raises(ValueError, match="--ray-address needs --engine ray"):
        engines.run_jobs([], engine="local", ray_address="auto")
