"""Reliability of `sound-of-story build`: a build never loses or mixes up a story, publishes
nothing private, and bounds its inputs. One test per case, with the bad input made in the test.

Stories are 6 s cuts of the session's sample clips, so that every build here takes seconds.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pyarrow.parquet as pq
import pytest
import yaml

from sound_of_story.dataset_builder import build as build_module
from sound_of_story.dataset_builder.build import (
    STAGING_MARKER,
    BuildReport,
    build_dataset,
    merge_shards,
    split_slices_at_random,
)
from sound_of_story.dataset_builder.build_options import BuildOptions, with_overrides
from sound_of_story.dataset_builder.dataset_card import live_data_files
from sound_of_story.dataset_builder.manifest import Failure, StorySource, read_manifest
from sound_of_story.dataset_builder.processing import (
    MAX_STORY_SECONDS,
    ProcessingParams,
    StoryJob,
    StoryOutcome,
    cache_key,
    process_story,
    run_story_job,
)
from sound_of_story.dataset_builder.speech_removal import SpeechRemovalParams
from sound_of_story.dataset_builder.story_cache import (
    TIMED_STEPS,
    SliceRecord,
    StoryCacheEntry,
    StoryRecord,
    remove_unfinished,
)

CUT_SECONDS = 6.0
LATIN1_E = b"\xe9"  # "é" in Latin-1: not UTF-8


def _cut(src: Path, dst: Path, seconds: float = CUT_SECONDS) -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-i",
            str(src),
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            str(dst),
        ],
        check=True,
    )
    return dst


def _write_manifest(path: Path, rows: list[dict | bytes]) -> Path:
    lines = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _tables(out: Path) -> dict[str, object]:
    return {f: pq.read_table(out / f) for f in live_data_files(out)}


@pytest.fixture(scope="module")
def clips(cmd_samples, tmp_path_factory) -> dict[str, Path]:
    """Two short clips of different movies, and the folder they are in."""
    cmd_dir, cmd = cmd_samples
    d = tmp_path_factory.mktemp("clips")
    return {
        "dir": d,
        "a": _cut(cmd_dir / cmd[0]["files"]["video"], d / "a.mp4"),
        "b": _cut(cmd_dir / cmd[1]["files"]["video"], d / "b.mp4"),
    }


@pytest.fixture(scope="module")
def short_story(clips) -> StorySource:
    """A 2 s story, for the tests that process one story several times."""
    _cut(clips["a"], clips["dir"] / "short.mp4", seconds=2.0)
    stories, _ = read_manifest(
        _write_manifest(clips["dir"] / "short.jsonl", [{"id": "x", "video": "short.mp4", "description": "A story."}])
    )
    return stories[0]


@pytest.fixture(scope="module")
def manifest(clips) -> Path:
    """Two good CMD stories and one bad row per case: non-UTF-8 id, movie and path, and an
    LSMDC run whose generated id (``m_000``) is a CMD row's id."""
    rows = [
        {"id": "m_000", "video": "a.mp4", "description": "A man walks into a bar.", "movie": "movie_a"},
        {"id": "story_b", "video": "b.mp4", "description": "A car drives through the city.", "movie": "movie_b"},
        {"movie": "m", "clip_index": 0, "video": "b.mp4", "caption": "SOMEONE runs."},
        b'{"id": "caf' + LATIN1_E + b'", "video": "a.mp4", "description": "A story."}',
        b'{"id": "bad_movie", "movie": "caf' + LATIN1_E + b'", "video": "a.mp4", "description": "A story."}',
        b'{"id": "bad_path", "video": "caf' + LATIN1_E + b'.mp4", "description": "A story."}',
    ]
    return _write_manifest(clips["dir"] / "manifest.jsonl", rows)


@pytest.fixture(scope="module")
def built(manifest, tmp_path_factory) -> tuple[Path, BuildReport]:
    out = tmp_path_factory.mktemp("built")
    report = build_dataset(manifest, out, test_size=1, lsmdc_target_s=1.0, generation_split="story", progress=False)
    return out, report


def _failures(out: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (out / "failures.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r["id"]: r for r in rows}


# ---------------------------------------------------------------------------------------------
# Data is never lost or swapped
# ---------------------------------------------------------------------------------------------


def test_a_generated_lsmdc_id_equal_to_a_cmd_id_is_one_failure_naming_both(manifest, built):
    stories, failures = read_manifest(manifest, lsmdc_target_s=1.0, clip_duration=lambda path: 6.0)
    assert [s.id for s in stories] == ["m_000", "story_b"]  # each id once; the CMD row keeps its id
    (collision,) = [f for f in failures if f.id == "m_000"]
    assert "duplicate id" in collision.reason and "LSMDC run of movie 'm' at lines 3" in collision.reason
    assert "line 1" in collision.reason and collision.reason.count(".mp4") == 2  # both inputs named
    out, report = built
    assert report.succeeded == ["m_000", "story_b"]
    from datasets import load_dataset

    rows = [r for split in load_dataset(str(out)).values() for r in split]
    assert sorted((r["id"], r["text"]) for r in rows) == [
        ("m_000", "A man walks into a bar."),
        ("story_b", "A car drives through the city."),
    ]
    assert "duplicate id" in _failures(out)["m_000"]["reason"]


def test_results_are_keyed_by_position_not_by_id(short_story, tmp_path):
    """Two stories with equal ids (possible for callers of process_stories) get two slots."""
    twice = [short_story, short_story]
    outcomes = build_module.process_stories(twice, ProcessingParams(), tmp_path, progress=False)
    assert (
        [o.index for o in outcomes] == [0, 1]
        and all(o.ok for o in outcomes)
        and [o.from_cache for o in outcomes] == [False, True]
    )


def test_non_utf8_id_movie_or_path_is_one_failure_and_the_rest_builds(built, tmp_path):
    out, report = built
    raw = (out / "failures.jsonl").read_bytes()
    raw.decode("utf-8")  # the failures list itself is valid UTF-8
    failures = _failures(out)
    assert "id is not valid UTF-8" in failures["caf\\xe9"]["reason"]
    assert "movie is not valid UTF-8" in failures["bad_movie"]["reason"]
    assert (
        "video path is not valid UTF-8" in failures["bad_path"]["reason"]
        and failures["bad_path"]["file"] == "caf\\xe9.mp4"
    )
    assert len(report.succeeded) == 2
    leftovers = [p.name for p in out.iterdir() if p.name.startswith((".staging-", "sos-build-"))]
    leftovers += [p.name for p in (out / "work" / "cache").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == []


def _record(story_id: str = "s", slices: tuple[SliceRecord, ...] = ()) -> StoryRecord:
    return StoryRecord(
        id=story_id, movie="m", source="cmd", text="A story.", clip_ids=(story_id,), sample_rate=44_100, channels=2,
        num_samples=88_200, duration=2.0, frame_times=(0.0, 1.25), speech_ratio_before=0.5, speech_ratio_after=0.0625,
        slices=slices, params={"version": 3}, timings={"decode": 0.5},
    )  # fmt: skip


def test_a_failing_cache_write_leaves_no_temporary_folder(tmp_path):
    entry = StoryCacheEntry.at(tmp_path, "s", "k")
    with pytest.raises(TypeError):
        StoryCacheEntry.write(entry, _record(), b"flac", [b"jpeg", None])  # the second frame cannot be written
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_a_killed_run_are_removed_only_when_their_process_is_dead(tmp_path):
    import socket

    dead = tmp_path / f".tmp-s-k@{socket.gethostname()}-999999999"
    alive = tmp_path / f".tmp-s-k@{socket.gethostname()}-{os.getpid()}"
    other_host = tmp_path / ".tmp-s-k@another-node-1"
    for p in (dead, alive, other_host):
        p.mkdir()
    remove_unfinished(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other_host.name])


def test_the_final_write_never_mixes_two_builds(built, manifest, tmp_path):
    out, _ = built
    target = tmp_path / "out"
    shutil.copytree(out, target)
    before = _tables(target)
    card_before = (target / "README.md").read_text()
    # a rebuild with another split (all stories in train) dies after the stories config, before the generation config
    from sound_of_story.dataset_builder import builder as builder_module

    original = builder_module.SoSDatasetBuilder.download_and_prepare

    def dies_on_generation(self, *args, **kwargs):
        if self.config.name == "generation":
            raise KeyboardInterrupt("killed")
        return original(self, *args, **kwargs)

    with (
        mock.patch.object(builder_module.SoSDatasetBuilder, "download_and_prepare", dies_on_generation),
        pytest.raises(KeyboardInterrupt),
    ):
        build_dataset(manifest, target, test_size=0, lsmdc_target_s=1.0, generation_split="story", progress=False)
    # the old dataset is whole: same card, same tables, and load_dataset reads it
    assert (target / "README.md").read_text() == card_before
    after = _tables(target)
    assert after.keys() == before.keys() and all(after[k].equals(before[k]) for k in after)
    new_files = [p for p in target.glob("*/*.parquet") if p.relative_to(target).as_posix() not in before]
    assert new_files, "the new build's stories files are in place, but no card names them"
    from datasets import load_dataset

    assert sorted(r["id"] for ds in load_dataset(str(target)).values() for r in ds) == ["m_000", "story_b"]
    # what a SIGKILL would leave: a staging folder with the build's mark (removed), beside folders without it, which
    # a build does not own and so keeps: a staging-like name and an old version's sos-build-* folder
    (target / ".staging-0123456789ab-99999").mkdir()
    (target / ".staging-0123456789ab-99999" / STAGING_MARKER).touch()
    (target / ".staging-not-ours").mkdir()
    (target / "sos-build-abc" / "out").mkdir(parents=True)
    report = build_dataset(manifest, target, test_size=0, lsmdc_target_s=1.0, generation_split="story", progress=False)
    assert report.from_cache == 2 and report.splits == {"train": ["m_000", "story_b"], "test": []}
    assert sorted(p.relative_to(target).as_posix() for p in target.glob("*/*.parquet")) == live_data_files(target)
    assert [p.name for p in target.glob(".staging-*")] == [".staging-not-ours"]
    assert (target / "sos-build-abc" / "out").is_dir()
    assert list(load_dataset(str(target))) == ["train"]


def test_a_damaged_cache_entry_is_recomputed(short_story, tmp_path):
    params = ProcessingParams()
    entry, cached = process_story(short_story, params, tmp_path)
    assert not cached and entry.is_complete()
    audio = entry.audio_path.read_bytes()
    for damage in (
        lambda: entry.audio_path.write_bytes(audio[: len(audio) // 2]),  # truncated
        lambda: entry.frame_path(0).unlink(),  # a file missing
        lambda: entry.audio_path.write_bytes(audio[:-1] + bytes([audio[-1] ^ 1])),  # same size, other bytes
        lambda: (entry.path / "done.json").unlink(),  # never finished
    ):
        damage()
        assert not entry.is_complete()
        again, cached = process_story(short_story, params, tmp_path)
        assert (
            not cached and again.path == entry.path and again.is_complete() and again.audio_path.read_bytes() == audio
        )
    assert process_story(short_story, params, tmp_path)[1] is True


def test_the_cache_key_hashes_the_separator_checkpoint_content(short_story, tmp_path):
    checkpoint = tmp_path / "separator.pt"
    checkpoint.write_bytes(b"weights version 1")
    params = ProcessingParams(separation=SpeechRemovalParams(backend="checkpoint", checkpoint=str(checkpoint)))
    first = cache_key(short_story, params)
    checkpoint.write_bytes(b"weights version 2")  # same path, new content
    os.utime(checkpoint, ns=(1, 1))
    second = cache_key(short_story, params)
    assert first != second
    copy = tmp_path / "elsewhere" / "same.pt"
    copy.parent.mkdir()
    shutil.copy(checkpoint, copy)  # same content, other path: same key
    assert (
        cache_key(
            short_story, ProcessingParams(separation=SpeechRemovalParams(backend="checkpoint", checkpoint=str(copy)))
        )
        == second
    )
    assert str(tmp_path) not in json.dumps(params.public_json())


def test_merge_reads_the_shards_parameters_and_refuses_a_mismatch(built, manifest, tmp_path, monkeypatch):
    out, _ = built
    monkeypatch.chdir(tmp_path)
    relative = Path("shards_out")
    shutil.copytree(out / "work" / "cache", relative / "work" / "cache")  # processing is tested above
    ten = ProcessingParams(slice_seconds=10.0)
    for i in range(2):
        build_dataset(manifest, relative, params=ten, lsmdc_target_s=1.0, shard_index=i, num_shards=2, progress=False)
    # merged from another working directory, after the folder moved: paths are relative to it
    moved = tmp_path / "elsewhere" / "out"
    shutil.move(relative, moved)
    monkeypatch.chdir(moved.parent)
    report = merge_shards(moved, test_size=1)
    assert sorted(report.succeeded) == ["m_000", "story_b"]
    card = (moved / "README.md").read_text()
    assert (
        "accumulated up to 10 s" in card and '"slice_seconds": 10.0' in card
    )  # the shards' parameters, not the defaults
    # one shard rebuilt with another slice length: refused, naming the parameter
    build_dataset(
        manifest,
        moved,
        params=ProcessingParams(slice_seconds=12.0),
        lsmdc_target_s=1.0,
        shard_index=1,
        num_shards=2,
        progress=False,
    )
    with pytest.raises(
        ValueError, match=r"params\.slice_seconds is 10\.0 in shard-00000-of-00002\.json but 12\.0 in shard-00001"
    ):
        merge_shards(moved, test_size=1)


# ---------------------------------------------------------------------------------------------
# Nothing private is published
# ---------------------------------------------------------------------------------------------


def test_push_uploads_exactly_the_dataset_and_nothing_private(built, tmp_path):
    out, _ = built
    target = tmp_path / "out"
    shutil.copytree(out, target)
    (target / "stories" / "train-0123456789ab-00000-of-00001.parquet").write_bytes(b"an older build's file")
    (target / "sos-build-x").mkdir()
    (target / "sos-build-x" / "leftover.parquet").write_bytes(b"x")
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    from sound_of_story.app.cli import main

    with mock.patch.object(HfApi, "upload_folder", return_value=mock.Mock(commit_url="https://hf.co/c/1")) as upload:
        assert main(["push", str(target), "--repo-id", "me/sos", "--no-create-repo"]) == 0
    kwargs = upload.call_args.kwargs
    everything = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    uploaded = sorted(
        filter_repo_objects(
            everything, allow_patterns=kwargs["allow_patterns"], ignore_patterns=kwargs.get("ignore_patterns")
        )
    )
    assert uploaded == sorted(["README.md", *live_data_files(target)])
    assert {p.split("/")[0] for p in uploaded} == {"README.md", "stories", "generation"}
    private = [str(target).encode(), str(out).encode(), str(Path.home()).encode() + b"/", b"/tmp/"]
    for name in uploaded:
        data = (target / name).read_bytes()
        assert not [p for p in private if p in data], name
    assert "work/" not in (target / "README.md").read_text()


def test_push_offline_is_a_message_not_a_traceback(built, monkeypatch, capsys):
    """The suite runs with HF_HUB_OFFLINE=1: huggingface_hub refuses to connect (OfflineModeIsEnabled, a
    ConnectionError); the command says so in one line and exits 1 (the input was fine, the Hub is out of reach)."""
    out, _ = built
    from huggingface_hub import constants

    from sound_of_story.app.cli import main

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SystemExit) as exited:
        main(["push", str(out), "--repo-id", "me/sos"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("sound-of-story push: error: the Hugging Face Hub:") and "offline" in err.lower()
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# Bounded memory and bounded inputs
# ---------------------------------------------------------------------------------------------

# below what processing the 700 s clip would take (a fixed ~1 GB plus MEMORY_PER_STORY_SECOND_MB per second of
# story, see docs/building.md): a peak under it means the clip was refused before it was decoded
MEMORY_BOUND_MB = 1500


def test_a_story_over_the_length_limit_fails_clearly_in_bounded_memory(tmp_path):
    long_clip = tmp_path / "long.mkv"
    seconds = MAX_STORY_SECONDS + 100
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:s=16x16:r=1", "-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "flac", str(long_clip)],
        check=True,
    )  # fmt: skip
    _write_manifest(tmp_path / "m.jsonl", [{"id": "long", "video": "long.mkv", "description": "A very long story."}])
    code = f"""
import json, re
from sound_of_story.dataset_builder.manifest import read_manifest
from sound_of_story.dataset_builder.processing import ProcessingParams, StoryJob, run_story_job
stories, _ = read_manifest({str(tmp_path / "m.jsonl")!r})
outcome = run_story_job(StoryJob(0, stories[0], ProcessingParams(), {str(tmp_path / "cache")!r}))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (pytest, GBs) across exec
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({{"reason": outcome.failure.reason, "file": outcome.failure.file, "peak_mb": peak_kb / 1024}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert f"over the limit of {MAX_STORY_SECONDS:g} s" in got["reason"] and "--max-story-seconds" in got["reason"]
    assert got["file"].endswith("long.mkv")
    assert got["peak_mb"] < MEMORY_BOUND_MB, got


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--slice-seconds", "0"], "argument --slice-seconds: must be a number > 0"),
        (["--min-content", "nan"], "argument --min-content: must be a finite number"),
        (["--max-similarity", "nan"], "argument --max-similarity: must be a finite number"),
        (["--test-size", "nan"], "argument --test-size: must be a finite number"),
        (["--max-story-seconds", "-1"], "argument --max-story-seconds: must be a number > 0"),
        (["--num-proc", "0"], "argument --num-proc: must be at least 1"),
        (["--max-shard-size", "lots"], "--max-shard-size must be a size such as 500MB, or a number of bytes > 0"),
        (["--lsmdc-target-seconds", "700"], "--lsmdc-target-seconds (700) is over --max-story-seconds (600)"),
        (["--ray-address", "auto"], "--ray-address needs --engine ray"),
        (["--shard-index", "2", "--num-shards", "2"], "--shard-index must be in [0, --num-shards), got 2 of 2"),
        (["--num-shards", "2"], "--shard-index must be in [0, --num-shards), got None of 2"),
    ],
)
def test_bad_options_are_refused_before_any_work(argv, message, manifest, tmp_path, capsys):
    from sound_of_story.app.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["build", "--manifest", str(manifest), "--out", str(tmp_path / "out"), *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_library_parameters_are_checked_too():
    with pytest.raises(ValueError, match="slice_seconds must be a finite number > 0, got 0"):
        ProcessingParams(slice_seconds=0)
    from sound_of_story.dataset_builder.content_filter import ContentFilterParams

    with pytest.raises(ValueError, match="content.threshold"):
        ProcessingParams(content=ContentFilterParams(threshold=float("nan")))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"configs": ("stories", "audio")}, r"--config must name some of stories, generation, got \['stories', 'audio'\]"),
        ({"configs": ()}, r"--config must name some of stories, generation, got \[\]"),
        ({"test_size": float("nan")}, "--test-size must be a finite number >= 0 .* got nan"),
        ({"generation_test_size": -1}, "--generation-test-size must be a finite number >= 0 .* got -1"),
        ({"generation_split": "movie"}, "--generation-split must be one of random, story, got 'movie'"),
        ({"lsmdc_target_s": 0.0}, "--lsmdc-target-seconds must be a finite number > 0, got 0.0"),
        ({"params": ProcessingParams(max_story_seconds=60.0)}, r"--lsmdc-target-seconds \(150\) is over --max-story-seconds \(60\)"),
        ({"max_shard_size": 0}, "--max-shard-size must be a size such as 500MB, or a number of bytes > 0, got 0"),
        ({"num_proc": 0}, "--num-proc must be at least 1, got 0"),
        ({"engine": "dask"}, "engine must be one of local, ray, got 'dask'"),
        ({"ray_address": "auto"}, "--ray-address needs --engine ray"),
        ({"shard_index": 0}, r"--shard-index must be in \[0, --num-shards\), got 0 of None"),
        ({"shard_index": -1, "num_shards": 2}, r"--shard-index must be in \[0, --num-shards\), got -1 of 2"),
    ],
)  # fmt: skip
def test_build_options_are_checked_in_one_place_naming_the_option(options, message, manifest, tmp_path):
    with pytest.raises(ValueError, match=message):
        BuildOptions(**options)
    with pytest.raises(ValueError, match=message):  # the keyword form goes through the same check, before any work
        build_dataset(manifest, tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


def test_build_options_keywords_replace_single_fields():
    options = with_overrides(
        BuildOptions(test_size=1, generation_split="story"), {"num_proc": 2, "configs": ["generation"]}
    )
    assert options == BuildOptions(configs=("generation",), test_size=1, generation_split="story", num_proc=2)
    assert options.configs == ("generation",)  # any sequence, kept as a tuple in its order
    assert with_overrides(None, {}) == BuildOptions() and BuildOptions(params=None).params == ProcessingParams()
    assert BuildOptions(shard_index=1, num_shards=3).shard_of("abcdefg") == ["b", "e"]
    assert BuildOptions().shard_of("abc") == ["a", "b", "c"]
    with pytest.raises(TypeError, match="options must be BuildOptions, got tuple"):
        with_overrides(("stories",), {})  # the third argument of build_dataset was once the configs
    with pytest.raises(TypeError, match="unexpected keyword argument 'test_share'"):
        with_overrides(None, {"test_share": 1})


def test_out_under_an_existing_file_is_exit_2(manifest, tmp_path, capsys):
    from sound_of_story.app.cli import main

    (tmp_path / "file.txt").write_text("not a folder")
    with pytest.raises(SystemExit) as exc:
        main(["build", "--manifest", str(manifest), "--out", str(tmp_path / "file.txt" / "out"), "--quiet"])
    assert exc.value.code == 2 and "file.txt is a file, not a folder" in capsys.readouterr().err


def test_every_build_ends_with_a_summary_line(built, manifest, tmp_path, capsys):
    out, report = built
    assert report.summary() == (
        "build summary: 2 stories built, 0 from the cache, 4 failed "
        "(duplicate id: 1, id is not valid UTF-8: 1, movie is not valid UTF-8: 1, video path is not valid UTF-8: 1)"
    )
    target = tmp_path / "out"
    shutil.copytree(out / "work", target / "work")
    from sound_of_story.app.cli import main

    args = [
        "build",
        "--manifest",
        str(manifest),
        "--out",
        str(target),
        "--test-size",
        "1",
        "--lsmdc-target-seconds",
        "1",
        "--quiet",
    ]
    assert main(args) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("build summary: 2 stories built, 2 from the cache, 4 failed (duplicate id: 1,")


def test_failure_categories_leave_out_files_and_details():
    assert (
        Failure("x", "/d/a.mp4", "/d/a.mp4: cannot be decoded (truncated or corrupt?): moov").category
        == "cannot be decoded"
    )
    assert Failure("x", "m.jsonl", "line 3 is not valid JSON: Expecting value").category == "is not valid JSON"
    assert Failure("x", "a.mp4", "clip under 1 s (0.50 s)").category == "clip under 1 s"
    # in words, never an exception class: what users see in the summary line
    for reason, category in [
        ("a.mp4: truncated file: it decodes to 9.52 s of audio but states 12.00 s (2.48 s missing)", "truncated file"),
        ("a.mp4: video stream cannot be decoded (ffmpeg: Invalid data found)", "video stream cannot be decoded"),
        ("a.mp4: audio-only file (no video stream; its picture is attached cover art, not video)", "audio-only file"),
        ("URLs are not supported: download the file first (video is 'https://x/a.mp4')", "URLs are not supported"),
        ("internal error (RuntimeError): something unforeseen", "internal error"),
    ]:
        assert Failure("x", "a.mp4", reason).category == category


# ---------------------------------------------------------------------------------------------
# The per-story entry, its typed records, and the worker's typed result
# ---------------------------------------------------------------------------------------------


def test_the_worker_returns_a_typed_picklable_outcome_with_step_timings(built, short_story, tmp_path):
    out, report = built
    job = StoryJob(0, short_story, ProcessingParams(), str(tmp_path))
    outcome = run_story_job(pickle.loads(pickle.dumps(job)))
    assert isinstance(outcome, StoryOutcome) and outcome.ok and outcome.failure is None
    assert pickle.loads(pickle.dumps(outcome)) == outcome
    entry = StoryCacheEntry(Path(outcome.entry))
    assert set(entry.timings) == set(TIMED_STEPS) and all(t > 0 for t in entry.timings.values())
    assert entry.story.id == "x" and len(entry.frame_paths()) == len(entry.story.frame_times) >= 1
    # the record reads and writes story.json's own layout, byte for byte
    on_disk = (entry.path / "story.json").read_text(encoding="utf-8")
    rewritten = json.dumps(
        StoryRecord.from_json(json.loads(on_disk)).to_json(), indent=2, sort_keys=True, ensure_ascii=False
    )
    assert rewritten + "\n" == on_disk
    bad = run_story_job(
        StoryJob(3, StorySource("y", "m", "cmd", "t", ("/nowhere.mp4",)), ProcessingParams(), str(out))
    )
    assert bad.index == 3 and not bad.ok and "file not found" in bad.failure.reason
    assert set(report.assembly_seconds) == {"stories", "generation"} and all(
        t > 0 for t in report.assembly_seconds.values()
    )
    kept = entry.kept_slices()
    assert kept and all(
        entry.slice_audio_path(k).is_file() and entry.slice_spectrogram_path(k).is_file() for k in range(len(kept))
    )
    assert not entry.slice_audio_path(len(kept)).exists()  # one pair per kept slice, no more


def test_story_and_slice_records_round_trip_through_json():
    dropped = SliceRecord(0, 44_100, False, False, 42.5, "centroid_mag 42.5 Hz below 78 Hz")
    kept = SliceRecord(44_100, 88_200, True, True, 812.25, None)
    record = _record("s", (dropped, kept))
    data = record.to_json()
    assert data == {
        "id": "s", "movie": "m", "source": "cmd", "text": "A story.", "clip_ids": ["s"], "sample_rate": 44_100,
        "channels": 2, "num_samples": 88_200, "duration": 2.0, "frame_times": [0.0, 1.25],
        "speech_ratio_before": 0.5, "speech_ratio_after": 0.0625,
        "slices": [
            {"start_sample": 0, "end_sample": 44_100, "long": False, "keep": False, "measure": 42.5,
             "reason": "centroid_mag 42.5 Hz below 78 Hz"},
            {"start_sample": 44_100, "end_sample": 88_200, "long": True, "keep": True, "measure": 812.25,
             "reason": None},
        ],
        "params": {"version": 3}, "timings": {"decode": 0.5},
    }  # fmt: skip
    assert StoryRecord.from_json(json.loads(json.dumps(data))) == record
    assert SliceRecord.from_json(kept.to_json()) == kept
    assert record.kept_slices() == [("s_s000", kept)]  # kept index 0: the dropped slice has no id


# ---------------------------------------------------------------------------------------------
# The generation split
# ---------------------------------------------------------------------------------------------


def test_generation_split_story_inherits_the_story_split(built):
    out, _ = built
    from datasets import load_dataset

    story_split = {r["id"]: name for name, ds in load_dataset(str(out)).items() for r in ds}
    gen = load_dataset(str(out), "generation")
    assert set(story_split.values()) == {"train", "test"}
    assert all(story_split[r["story_id"]] == name for name, ds in gen.items() for r in ds)
    card = (out / "README.md").read_text()
    assert "each slice in its story's split" in card and "`--generation-split story`" in card


def test_generation_split_random_draws_test_slices_over_slices(built, manifest, tmp_path):
    out, _ = built
    shutil.copytree(out / "work", tmp_path / "work")
    build_dataset(
        manifest,
        tmp_path,
        configs=("generation",),
        test_size=1,
        lsmdc_target_s=1.0,
        generation_split="random",
        generation_test_size=1,
        progress=False,
    )
    from datasets import load_dataset

    gen = load_dataset(str(tmp_path), "generation")
    ids = {name: sorted(r["id"] for r in ds) for name, ds in gen.items()}
    assert len(ids["test"]) == 1 and len(ids["train"]) >= 1
    assert split_slices_at_random(ids["train"] + ids["test"], 1) == {
        i: name for name, part in ids.items() for i in part
    }
    card = yaml.safe_load((tmp_path / "README.md").read_text().split("---\n")[1])
    assert [c["config_name"] for c in card["configs"]] == ["generation"]
    assert "at random over slices, as the paper" in (tmp_path / "README.md").read_text()


def test_split_slices_at_random_rule():
    ids = [f"s{i}_s{j:03d}" for i in range(50) for j in range(4)]
    split = split_slices_at_random(ids)  # the paper's share: 879 of 185,341 -> at least one
    assert sum(v == "test" for v in split.values()) == 1
    assert split == split_slices_at_random(list(reversed(ids)))
    tenth = split_slices_at_random(ids, 0.1)
    assert sum(v == "test" for v in tenth.values()) == 20
    in_test = {i.split("_")[0] for i, v in tenth.items() if v == "test"}
    in_train = {i.split("_")[0] for i, v in tenth.items() if v == "train"}
    assert len(in_test) > 1 and in_test & in_train  # drawn over slices: a story can be in both splits
    assert split_slices_at_random(["only"], 5) == {"only": "train"}
    with pytest.raises(ValueError):
        split_slices_at_random(ids, float("nan"))
