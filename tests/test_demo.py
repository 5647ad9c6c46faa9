"""The offline demo (`make demo`) and the atomic writes the generator relies on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sound_of_story.app.demo import PENDING_STAGES
from sound_of_story.dataset_builder.atomic_files import atomic_path, write_json_atomic

CLI = Path(sys.executable).with_name("sound-of-story")


def test_demo_makes_samples_and_says_what_is_not_built(tmp_path):
    result = subprocess.run([str(CLI), "demo", "--out", str(tmp_path), "--quiet"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    for style, count in (("cmd", 4), ("lsmdc", 8)):
        rows = (tmp_path / "samples" / style / "manifest.jsonl").read_text().splitlines()
        assert len(rows) == count
        for row in map(json.loads, rows):
            assert (tmp_path / "samples" / style / row["video"]).stat().st_size > 10_000
    assert result.stdout.count("[done]") == 5
    wavs = sorted((tmp_path / "generated").glob("*.wav"))
    assert [w.name.split("_s000_")[-1] for w in wavs] == ["text.wav", "text_and_frames.wav"]
    for wav in wavs:
        audio, rate = sf.read(wav)
        assert rate == 8000 and 4.5 <= len(audio) / rate <= 5.5 and np.abs(audio).max() > 0
        assert wav.with_suffix(".png").is_file()
    assert "RANDOM-initialised" in result.stdout and "meaningless as a score" in result.stdout
    for direction in ("audio_to_video", "video_to_audio", "audio_to_text", "text_to_audio"):
        line = next(line for line in result.stdout.splitlines() if line.strip().startswith(direction))
        r1, r5, r10 = (float(line.split(k)[1].split()[0]) for k in ("R@1", "R@5", "R@10"))
        assert 0 <= r1 <= r5 <= r10 <= 100
    from datasets import load_dataset

    stories = load_dataset(str(tmp_path / "sos"))
    assert sum(len(s) for s in stories.values()) == int(result.stdout.split("dataset build: ")[1].split(" stories")[0]) >= 6
    assert len(stories["test"]) >= 1
    for name, _ in PENDING_STAGES:
        assert f"[not built]  {name}:" in result.stdout
    assert "nothing was run for them" in result.stdout


def test_atomic_path_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "sub" / "file.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists() and list((tmp_path / "sub").iterdir()) == []
    write_json_atomic(target, {"b": 1, "a": [1, 2]})
    assert target.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]
