"""A sound designer's library as it comes: every common container and damage is indexed with the right audio or
listed in the index's failures.jsonl with its reason (files made here with ffmpeg from a sample clip's stem)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sound_of_story.modeling import SoSRetrievalModel
from sound_of_story.modeling.tiny_random import tiny_retrieval_config, tiny_retrieval_processor
from sound_of_story.recommendation import SoundLibraryIndex
from sound_of_story.recommendation.library import (
    LIBRARY_MAX_SECONDS,
    decode_clip,
    decode_library_file,
    iter_library,
    library_source,
)

RATE = 44_100


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def stem(cmd_samples, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """4 s of a sample clip's clean background, stereo 44.1 kHz, and its samples."""
    folder, _ = cmd_samples
    background = sorted(folder.glob("*background*.wav"))[0]
    audio, rate = sf.read(background, dtype="float32", always_2d=True)
    audio = audio[: 4 * rate]
    if audio.shape[1] == 1:
        audio = np.repeat(audio, 2, axis=1)
    path = tmp_path_factory.mktemp("stem") / "stem.wav"
    sf.write(path, audio, rate)
    return path, audio.T


@pytest.fixture(scope="module")
def library(stem, tmp_path_factory) -> Path:
    src, _ = stem
    root = tmp_path_factory.mktemp("library")
    cover = root.parent / "cover.png"
    _ffmpeg("-f", "lavfi", "-i", "color=c=red:s=64x64", "-frames:v", "1", str(cover))
    _ffmpeg("-i", str(src), "-i", str(cover), "-map", "0:a", "-map", "1", "-c:a", "libmp3lame", "-c:v", "png",
            "-disposition:v", "attached_pic", str(root / "cover.mp3"))  # fmt: skip
    _ffmpeg("-i", str(src), "-i", str(cover), "-map", "0:a", "-map", "1", "-c:a", "aac", "-c:v", "png",
            "-disposition:v", "attached_pic", str(root / "cover.m4a"))  # fmt: skip
    _ffmpeg("-i", str(src), "-af", "pan=5.1|FL=c0|FR=c1|FC=0.5*c0+0.5*c1|LFE=0*c0|BL=c0|BR=c1", "-c:a", "flac",
            str(root / "surround51.flac"))  # fmt: skip
    _ffmpeg("-i", str(src), "-ar", "96000", "-c:a", "pcm_s24le", str(root / "hires96k.wav"))
    _ffmpeg("-i", str(src), "-c:a", "libopus", str(root / "opus.ogg"))
    _ffmpeg("-i", str(src), "-c:a", "libopus", str(root / "opus.webm"))
    _ffmpeg("-i", str(src), "-c:a", "libvorbis", str(root / "vorbis.mka"))
    _ffmpeg("-itsoffset", "1.5", "-i", str(src), "-c:a", "libvorbis", str(root / "offset.mka"))
    _ffmpeg("-i", str(src), "-c:a", "aac", "-movflags", "+faststart", str(root / "whole.m4a"))
    data = (root / "whole.m4a").read_bytes()
    (root / "truncated.m4a").write_bytes(data[: len(data) // 2])
    (root / "empty.mp3").write_bytes(b"")
    (root / "notaudio.wav").write_bytes(b"RIFF this is not a wave file at all")
    # a long file: 11 minutes of quiet noise at 8 kHz mono (10.6 MB), more than what is read of one file
    long = (np.random.default_rng(0).standard_normal(11 * 60 * 8000) * 0.01).astype(np.float32)
    sf.write(root / "long_field_recording.wav", long, 8000, subtype="PCM_16")
    return root


def test_every_library_file_is_indexed_or_listed_with_its_reason(library, tmp_path):
    torch.manual_seed(0)
    model = tmp_path / "model"
    SoSRetrievalModel(tiny_retrieval_config()).save_pretrained(model)
    tiny_retrieval_processor().save_pretrained(model)
    index, report = SoundLibraryIndex.build(
        library, model, tmp_path / "index", index_type="flat", store_dtype="float32", batch_size=4, progress=False
    )
    failures = {Path(f["path"]).name: f["reason"] for f in report.failures}
    assert set(report.added) == {
        "cover.mp3", "cover.m4a", "surround51.flac", "hires96k.wav", "opus.ogg", "opus.webm", "vorbis.mka",
        "offset.mka", "whole.m4a", "long_field_recording.wav",
    }  # fmt: skip
    assert set(failures) == {"truncated.m4a", "empty.mp3", "notaudio.wav"}
    assert "truncated" in failures["truncated.m4a"] and "empty" in failures["empty.mp3"]
    assert "Traceback" not in json.dumps(failures)
    listed = [json.loads(line) for line in (tmp_path / "index" / "failures.jsonl").read_text().splitlines()]
    assert {Path(f["path"]).name for f in listed} == set(failures)


def test_library_audio_is_decoded_right_and_bounded(library, stem):
    _, clean = stem
    clips = {Path(c.path).name: c for c in iter_library(library_source(library))}
    # 5.1 is downmixed to stereo (ITU-R BS.775) and the 96 kHz file keeps its rate; both carry the clean stem
    surround, rate = decode_clip(clips["surround51.flac"])
    assert surround.shape[0] == 2 and rate == RATE and abs(surround.shape[1] - clean.shape[1]) <= 1
    hires, rate = decode_clip(clips["hires96k.wav"])
    assert hires.shape[0] == 2 and rate == 96_000 and abs(hires.shape[1] / rate - 4.0) < 0.01
    # cover art is ignored: the audio of the MP3 is the whole 4 s (encoder padding aside)
    mp3, rate = decode_clip(clips["cover.mp3"])
    assert abs(mp3.shape[1] / rate - 4.0) < 0.1
    # a library file is read as it starts (no video clock): the 1.5 s offset is not silence padded in front
    offset, rate = decode_clip(clips["offset.mka"])
    assert abs(offset.shape[1] / rate - 4.0) < 0.1 and np.abs(offset[:, : rate // 10]).max() > 0
    # what is read of one file is capped
    long, rate = decode_clip(clips["long_field_recording.wav"])
    assert long.shape[1] == int(LIBRARY_MAX_SECONDS * rate)
    # the web app plays a clip through the same capped reader (SoundOfStoryApp.clip_audio)
    played, played_rate = decode_library_file(clips["long_field_recording.wav"].path)
    assert played_rate == rate and np.array_equal(played, long)


def test_library_hashing_reads_files_in_chunks(library, monkeypatch):
    """A file is hashed without reading it whole (a field recording of hours is several GB)."""
    clip = next(c for c in iter_library(library_source(library)) if Path(c.path).name == "long_field_recording.wav")
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"{self} read whole"))
    import hashlib

    with open(clip.path, "rb") as f:
        expected = hashlib.sha256(f.read()).hexdigest()
    assert clip.sha256() == expected
