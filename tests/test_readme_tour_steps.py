"""The README tour's steps (clips, build, load, train, evaluate, generate, recommend, push), run as written.

The README section comes from readme_parts/tour.md. Every command runs in one fresh folder, one after the
other as a reader would, next to the quick demo's ``demo_quick`` (made once per session by
``demo_fixtures.run_quick_demo``) and a ``train`` link to the repository's ``train/``. Only the Hub upload of
``push`` is mocked: no hub is reachable here.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile
from demo_fixtures import run_quick_demo

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
TIMEOUT_S = 600

# The tour's examples, exactly as the README writes them.
CLIPS_COMMAND = "sound-of-story samples --out clips --num-clips 8 --duration 10"
BUILD_COMMAND = "sound-of-story build --manifest clips/manifest.jsonl --out sos --test-size 4 --generation-split story"
BUILD_OUTPUT = "8 stories built (train: 4, test: 4; 0 from the cache), 0 failed inputs"
LOAD_BLOCK = """from datasets import load_dataset

stories = load_dataset("sos")  # the default config, "stories"
slices = load_dataset("sos", "generation")
print(stories.num_rows, slices.num_rows)
story = stories["test"][0]
print(story["id"], [round(t, 1) for t in story["frame_times"]])
"""
LOAD_OUTPUT = ("{'train': 4, 'test': 4} {'train': 4, 'test': 4}", "clip_0000 [0.0, 3.5, 6.8]")
TRAIN_COMMAND = """ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 train/retrieval.py \\
    --dataset sos --pair audio-video --init_from demo_quick/models/init/retrieval --output_dir runs/av \\
    --max_train_steps 3 --train_batch_size 2 --eval_split none --report_to none"""
EVALUATE_COMMAND = "sound-of-story evaluate retrieval --model runs/av --baseline random --dataset sos --out table2"
GENERATE_COMMAND = (
    "sound-of-story generate --model demo_quick/models/sosgen --text "
    '"rain on a tin roof" --duration 5 --steps 10 --out rain.wav'
)
INDEX_COMMAND = (
    "sound-of-story index --library demo_quick/library --model demo_quick/models/retrieval-audio-video "
    "--out library-index"
)
RECOMMEND_COMMAND = "sound-of-story recommend --index library-index --video clips/clip_0001.mp4 --top-k 3"
PUSH_COMMAND = "sound-of-story push sos --repo-id you/sos"
EXAMPLES = (
    CLIPS_COMMAND,
    BUILD_COMMAND,
    BUILD_OUTPUT,
    LOAD_BLOCK.strip(),
    *LOAD_OUTPUT,
    TRAIN_COMMAND,
    EVALUATE_COMMAND,
    GENERATE_COMMAND,
    INDEX_COMMAND,
    RECOMMEND_COMMAND,
    PUSH_COMMAND,
)

TEST_IDS = ["clip_0000", "clip_0001", "clip_0002", "clip_0003"]  # movies 000 and 001, held out by --test-size 4
TRAIN_IDS = ["clip_0004", "clip_0005", "clip_0006", "clip_0007"]
PAPER_DIRECTIONS = ("A2V", "V2A", "A2T", "T2A")
RECOMMEND_ROW = re.compile(r"^\s*(\d+)\s+(-?\d+\.\d+)\s+(-?\d+\.\d+)\s+(\S+)\s+\((.+)\)$")
SCENE_ROW = re.compile(r"^\s*(\d+\.\d+)s\s+-\s+(\d+\.\d+)s\s+(-?\d+\.\d+)\s+(\S+)$")


def _environment() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def _run(command: str | list[str], cwd: Path) -> subprocess.CompletedProcess:
    """One README example: a command line as a reader pastes it into a shell, or a Python block's argv."""
    return subprocess.run(
        command,
        shell=isinstance(command, str),
        cwd=cwd,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def _succeeded(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


# The steps build on each other as in the README, so each is a module fixture used by the next.


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    demo_cwd, demo = run_quick_demo(tmp_path_factory)
    assert demo.returncode == 0, demo.stderr[-4000:]
    here = tmp_path_factory.mktemp("tour_steps")
    (here / "demo_quick").symlink_to(demo_cwd / "demo_quick", target_is_directory=True)
    (here / "train").symlink_to(REPO / "train", target_is_directory=True)
    return here


@pytest.fixture(scope="module")
def built(folder) -> subprocess.CompletedProcess:
    _succeeded(_run(CLIPS_COMMAND, folder))
    return _succeeded(_run(BUILD_COMMAND, folder))


@pytest.fixture(scope="module")
def trained(built, folder) -> subprocess.CompletedProcess:
    return _succeeded(_run(TRAIN_COMMAND, folder))


@pytest.fixture(scope="module")
def indexed(built, folder) -> subprocess.CompletedProcess:
    return _succeeded(_run(INDEX_COMMAND, folder))


def test_quick_demo_saved_what_the_tour_uses(folder):
    # Its own test, so that the demo's run (shared with test_demo.py) is not timed against the first step.
    models = folder / "demo_quick" / "models"
    for name in ("init/retrieval", "retrieval-audio-video", "sosgen"):
        assert (models / name / "model_index.json").is_file() or (models / name / "config.json").is_file(), name
    assert any((folder / "demo_quick" / "library").iterdir())
    assert (folder / "train" / "retrieval.py").is_file()


def test_readme_holds_the_tour_as_tested():
    text = README.read_text()
    for example in EXAMPLES:
        assert example in text, f"README.md lacks the tested example {example!r}"
    tour = text.index("## A tour: build, load, train, evaluate, generate, recommend, push")
    assert text.index("make demo") < tour < text.index("## Benchmarks")


def test_clips_and_build_give_both_configs_split_by_movie(built, folder):
    clips = json.loads((folder / "clips" / "manifest.jsonl").read_text().splitlines()[0])
    assert clips["id"] == "clip_0000" and len(list((folder / "clips").glob("clip_*.mp4"))) == 8
    assert BUILD_OUTPUT in built.stdout
    sos = folder / "sos"

    def rows(config: str, split: str, column: str) -> list:
        (shard,) = (sos / config).glob(f"{split}-*.parquet")
        return pq.read_table(shard, columns=[column]).column(column).to_pylist()

    assert rows("stories", "test", "id") == TEST_IDS and rows("stories", "train", "id") == TRAIN_IDS
    assert not set(rows("stories", "test", "movie")) & set(rows("stories", "train", "movie"))
    # --generation-split story: every 10 s clip is one slice, in its story's split
    assert rows("generation", "test", "story_id") == TEST_IDS
    assert rows("generation", "train", "story_id") == TRAIN_IDS
    assert (sos / "failures.jsonl").read_text().strip() == ""
    assert "generation" in (sos / "README.md").read_text()


def test_load_block_prints_what_the_readme_says(built, folder):
    result = _succeeded(_run([sys.executable, "-c", LOAD_BLOCK], folder))
    assert tuple(result.stdout.strip().splitlines()) == LOAD_OUTPUT
    # the printed key frames open the clip's scenes: each ground-truth cut has one within 0.1 s after it
    truth = json.loads((folder / "clips" / "clip_0000.json").read_text())
    times = [float(t) for t in LOAD_OUTPUT[1].split(" ", 1)[1].strip("[]").split(", ")]
    assert len(times) == len(truth["scenes"])
    for cut in truth["cuts"]:
        assert any(0.0 <= t - cut <= 0.1 for t in times), (cut, times)


def test_training_writes_a_loadable_model_with_changed_weights(trained, folder):
    from sound_of_story.modeling import SoSRetrievalModel, SoSRetrievalProcessor

    out = folder / "runs" / "av"
    history = json.loads((out / "training_history.json").read_text())
    assert [h["step"] for h in history] == [1, 2, 3]
    assert all(math.isfinite(h["loss"]) and h["loss"] > 0 for h in history)
    model = SoSRetrievalModel.from_pretrained(out)
    SoSRetrievalProcessor.from_pretrained(out)  # the processor is saved next to it
    start = SoSRetrievalModel.from_pretrained(folder / "demo_quick" / "models" / "init" / "retrieval").state_dict()
    changed = {
        name.split(".")[0]
        for name, weights in model.state_dict().items()
        if weights.is_floating_point() and not np.allclose(weights.numpy(), start[name].numpy(), rtol=0, atol=1e-7)
    }
    assert {"temporal_encoder", "audio_projection"} <= changed, changed
    assert all(np.isfinite(w.numpy()).all() for w in model.state_dict().values() if w.is_floating_point())
    assert (out / "README.md").is_file()


def test_evaluation_writes_table2_on_the_held_out_stories(trained, folder):
    result = _succeeded(_run(EVALUATE_COMMAND, folder))
    assert "Table 2: retrieval on 4 test stories" in result.stdout
    table = json.loads((folder / "table2" / "table2.json").read_text())
    assert set(table) == {"av", "random"}
    for model in ("av", "random"):
        assert set(table[model]) == set(PAPER_DIRECTIONS)
        for direction, figures in table[model].items():
            if model == "av":  # the random baseline is the mean of five runs
                assert figures["num_queries"] == len(TEST_IDS)
            for name in ("R@1", "R@5", "R@10"):
                low, high = figures["ci"][name]
                assert 0.0 <= low <= figures[name] <= high <= 100.0, (model, direction, name)
            assert figures["R@5"] == 100.0  # 4 candidates: the right one is always in the top 5
            for name in ("MdR", "MnR"):
                assert 1.0 <= figures[name] <= len(TEST_IDS)
    assert (folder / "table2" / "av_A2V.npy").is_file()
    assert np.load(folder / "table2" / "av_A2V.npy").shape == (4, 4)


def test_generate_writes_five_seconds_of_sound(folder):
    result = _succeeded(_run(GENERATE_COMMAND, folder))
    assert "wrote rain.wav (5.00 s, 16000 Hz) and rain.png" in result.stdout
    audio, rate = soundfile.read(folder / "rain.wav")
    assert rate == 16000 and audio.shape == (80000,)
    assert np.sqrt(np.mean(audio**2)) > 1e-3
    assert (folder / "rain.png").stat().st_size > 0


def test_recommend_lists_library_sounds_and_one_per_scene(indexed, folder):
    library = {p.name for p in (folder / "demo_quick" / "library").iterdir()}
    assert f"{len(library)} clips" in indexed.stdout and len(library) >= 3
    result = _succeeded(_run(RECOMMEND_COMMAND, folder))
    lines = result.stdout.splitlines()
    ranked = [m.groups() for m in map(RECOMMEND_ROW.match, lines) if m]
    assert [int(r[0]) for r in ranked] == [1, 2, 3]
    scores = [float(r[1]) for r in ranked]
    assert scores == sorted(scores, reverse=True)
    assert {r[3] for r in ranked} <= library and len({r[3] for r in ranked}) == 3
    assert all(Path(r[4]).name == r[3] and Path(r[4]).is_file() for r in ranked)
    scenes = [m.groups() for m in map(SCENE_ROW.match, lines[lines.index("story: one sound per scene") :]) if m]
    truth = json.loads((folder / "clips" / "clip_0001.json").read_text())
    starts, ends = [float(s[0]) for s in scenes], [float(s[1]) for s in scenes]
    assert starts[0] == 0.0 and starts[1:] == ends[:-1] and ends[-1] == pytest.approx(truth["duration"], abs=0.05)
    assert len(scenes) == len(truth["scenes"])
    assert all(0.0 <= start - cut <= 0.1 for start, cut in zip(starts[1:], truth["cuts"])), (starts, truth["cuts"])
    assert len({s[3] for s in scenes}) == len(scenes) and {s[3] for s in scenes} <= library  # no sound twice


def test_push_uploads_exactly_the_card_and_the_parquet_files(built, folder, monkeypatch, capsys):
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    from sound_of_story.app.cli import main

    argv = shlex.split(PUSH_COMMAND)
    assert argv[0] == "sound-of-story"
    monkeypatch.chdir(folder)
    commit = mock.Mock(commit_url="https://huggingface.co/datasets/you/sos/commit/1")
    with (
        mock.patch.object(HfApi, "create_repo") as create_repo,
        mock.patch.object(HfApi, "upload_folder", return_value=commit) as upload_folder,
    ):
        assert main(argv[1:]) == 0
    create_repo.assert_called_once()
    assert create_repo.call_args.args == ("you/sos",)
    assert create_repo.call_args.kwargs["repo_type"] == "dataset"
    upload_folder.assert_called_once()
    kwargs = upload_folder.call_args.kwargs
    assert (kwargs["folder_path"], kwargs["repo_id"], kwargs["repo_type"]) == ("sos", "you/sos", "dataset")
    sos = folder / "sos"
    everything = sorted(p.relative_to(sos).as_posix() for p in sos.rglob("*") if p.is_file())
    uploaded = sorted(
        filter_repo_objects(
            everything, allow_patterns=kwargs["allow_patterns"], ignore_patterns=kwargs.get("ignore_patterns")
        )
    )
    shards = sorted(p.relative_to(sos).as_posix() for p in sos.glob("*/*.parquet"))
    assert [s.split("-")[0] for s in shards] == [
        f"{c}/{split}" for c in ("generation", "stories") for split in ("test", "train")
    ]
    assert uploaded == sorted(["README.md", *shards])
    assert any(p.startswith("work/") for p in everything) and "failures.jsonl" in everything  # there, not uploaded
    assert capsys.readouterr().out.strip() == f"uploaded sos to {commit.commit_url}"
