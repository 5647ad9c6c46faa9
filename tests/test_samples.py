"""The sample-clip generator: determinism, and media that agree with their ground truth."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import CMD_CLIPS, CMD_DURATION, LSMDC_CLIPS, LSMDC_DURATION, SEED, load_records

from sound_of_story.dataset_builder import samples
from sound_of_story.dataset_builder.samples import FPS, SAMPLE_RATE, generate_samples

CLI = Path(sys.executable).with_name("sound-of-story")


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _ffprobe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def _read_stem(folder: Path, name: str) -> np.ndarray:
    audio, rate = sf.read(folder / name, dtype="float64", always_2d=True)
    assert rate == SAMPLE_RATE
    return audio.T


def _speech_mask(record: dict) -> np.ndarray:
    mask = np.zeros(record["num_samples"], dtype=bool)
    for line in record["dialogue"]:
        mask[line["start_sample"] : line["end_sample"]] = True
    return mask


# ----------------------------------------------------------------------------------------
# Determinism
# ----------------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files_across_processes(cmd_samples, tmp_path):
    folder, _ = cmd_samples
    again = tmp_path / "again"
    result = subprocess.run(
        [str(CLI), "samples", "--out", str(again), "--num-clips", str(CMD_CLIPS), "--seed", str(SEED), "--duration", str(CMD_DURATION), "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    first, second = _digests(folder), _digests(again)
    assert set(first) == {
        f"clip_{i:04d}{ext}" for i in range(CMD_CLIPS) for ext in (".mp4", ".json", ".background.wav", ".speech.wav")
    } | {"manifest.jsonl"}
    assert first == second


def test_a_clip_does_not_depend_on_how_many_are_generated(cmd_samples, tmp_path):
    folder, _ = cmd_samples
    generate_samples(tmp_path, num_clips=1, seed=SEED, duration_s=CMD_DURATION, progress=False)
    for ext in (".json", ".background.wav", ".speech.wav", ".mp4"):
        assert (tmp_path / f"clip_0000{ext}").read_bytes() == (folder / f"clip_0000{ext}").read_bytes()


def test_a_part_from_first_movie_gives_the_same_clips_as_one_run(cmd_samples, tmp_path):
    """The demo makes a large set in parts (first_movie): CMD clips 1.. and the LSMDC runs of the second movie
    must be byte for byte those of one run from movie 0."""
    folder, _ = cmd_samples
    generate_samples(tmp_path / "cmd", num_clips=1, seed=SEED, duration_s=CMD_DURATION, progress=False, first_movie=1)
    assert sorted(p.name for p in (tmp_path / "cmd").glob("*.mp4")) == ["clip_0001.mp4"]
    for ext in (".json", ".background.wav", ".speech.wav", ".mp4"):
        assert (tmp_path / "cmd" / f"clip_0001{ext}").read_bytes() == (folder / f"clip_0001{ext}").read_bytes()
    assert json.loads((tmp_path / "cmd" / "clip_0001.json").read_text())["movie"] == "sample_movie_000"

    # LSMDC: 10 s movies cut into 3-12 s clips; one run until the second movie's first clip, then that movie alone.
    whole = load_records(
        generate_samples(tmp_path / "whole", num_clips=4, seed=SEED, duration_s=10.0, style="lsmdc", progress=False)
    )
    second = [r for r in whole if r["movie"] == "sample_movie_001"]
    assert second, "four clips of 10 s movies reach the second movie"
    generate_samples(
        tmp_path / "part", num_clips=len(second), seed=SEED, duration_s=10.0, style="lsmdc", progress=False,
        first_movie=1,
    )  # fmt: skip
    for record in second:
        assert (tmp_path / "part" / f"{record['id']}.mp4").read_bytes() == (
            tmp_path / "whole" / f"{record['id']}.mp4"
        ).read_bytes()


def test_first_movie_must_be_a_non_negative_integer(tmp_path):
    with pytest.raises(ValueError, match="first_movie must be a non-negative integer, got -1"):
        generate_samples(tmp_path, num_clips=1, first_movie=-1, progress=False)
    result = subprocess.run(
        [str(CLI), "samples", "--out", str(tmp_path), "--first-movie", "-2", "--quiet"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "first_movie must be a non-negative integer" in result.stderr
    assert "Traceback" not in result.stderr


def test_another_seed_gives_other_clips(cmd_samples):
    _, records = cmd_samples
    other = samples.plan_movie(SEED + 1, 0, CMD_DURATION, "cmd")
    assert [s.category for s in other.scenes] != [
        s["category"] for s in records[0]["scenes"]
    ] or other.description != records[0]["description"]
    assert records[0]["description"] != records[1]["description"]


# ----------------------------------------------------------------------------------------
# The media agree with their JSON
# ----------------------------------------------------------------------------------------


def test_container_streams_and_durations_match_json(cmd_samples):
    folder, records = cmd_samples
    for record in records:
        probe = _ffprobe(folder / record["files"]["video"])
        video = next(s for s in probe["streams"] if s["codec_type"] == "video")
        audio = next(s for s in probe["streams"] if s["codec_type"] == "audio")
        assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
        assert (video["width"], video["height"]) == (record["width"], record["height"])
        assert int(video["nb_frames"]) == record["num_frames"] == round(CMD_DURATION * FPS)
        assert audio["codec_name"] == "aac" and int(audio["sample_rate"]) == SAMPLE_RATE and audio["channels"] == 2
        frame = 1.0 / FPS
        assert abs(float(video["duration"]) - record["duration"]) <= frame
        assert abs(float(audio["duration"]) - record["duration"]) <= frame
        assert abs(float(probe["format"]["duration"]) - record["duration"]) <= frame
        assert record["duration"] == pytest.approx(CMD_DURATION)
        assert record["num_samples"] == round(CMD_DURATION * SAMPLE_RATE)
        assert -12 < record["mix_gain_db"] <= 0


def test_scenes_tile_the_clip_with_hard_cuts_at_known_frames(cmd_samples):
    from torchcodec.decoders import VideoDecoder

    folder, records = cmd_samples
    for record in records:
        scenes = record["scenes"]
        assert 3 <= len(scenes) <= 8
        assert scenes[0]["start_frame"] == 0 and scenes[-1]["end_frame"] == record["num_frames"]
        assert all(a["end_frame"] == b["start_frame"] for a, b in zip(scenes, scenes[1:]))
        assert all(a["category"] != b["category"] for a, b in zip(scenes, scenes[1:]))
        assert all(s["end_frame"] - s["start_frame"] >= samples.MIN_SCENE_S * FPS for s in scenes)
        assert record["cuts"] == [s["start_frame"] / FPS for s in scenes[1:]]
        # Decode every frame: the largest frame-to-frame changes are exactly the cuts, and
        # within a scene the camera moves, so consecutive frames differ a little.
        frames = (
            VideoDecoder(str(folder / record["files"]["video"]))
            .get_frames_in_range(0, record["num_frames"])
            .data.float()
        )
        change = (frames[1:] - frames[:-1]).abs().mean(dim=(1, 2, 3)).numpy()
        cut_idx = np.array(record["cut_frames"]) - 1
        within = np.delete(change, cut_idx)
        assert change[cut_idx].min() > 2 * within.max()
        assert np.all(within > 0)


def test_speech_stem_is_centred_and_present_exactly_in_the_dialogue_spans(cmd_samples):
    folder, records = cmd_samples
    for record in records:
        speech = _read_stem(folder, record["files"]["speech"])
        assert speech.shape == (2, record["num_samples"])
        assert np.array_equal(speech[0], speech[1])  # centre-panned, as film dialogue
        mask = _speech_mask(record)
        assert len(record["dialogue"]) >= 2
        assert not np.any(speech[:, ~mask])  # nothing outside the spans
        for line in record["dialogue"]:
            span = speech[0, line["start_sample"] : line["end_sample"]]
            assert line["end"] - line["start"] == pytest.approx(span.size / SAMPLE_RATE)
            assert span[0] != 0 and span[-1] != 0  # the spans are tight
            level = 20 * np.log10(np.sqrt(np.mean(span**2))) - record["mix_gain_db"]
            assert samples.SPEECH_DBFS - 5 < level < samples.SPEECH_DBFS + 5  # dialogue level
            assert line["text"] and line["speaker"] and line["voice"]
        starts = [line["start_sample"] for line in record["dialogue"]]
        ends = [line["end_sample"] for line in record["dialogue"]]
        assert all(e < s for e, s in zip(ends, starts[1:]))  # lines do not overlap


def test_background_stem_is_wide_stereo_at_background_level_in_every_scene(cmd_samples):
    folder, records = cmd_samples
    for record in records:
        bg = _read_stem(folder, record["files"]["background"])
        assert bg.shape == (2, record["num_samples"])
        for scene in record["scenes"]:
            part = bg[
                :, samples.frames_to_samples(scene["start_frame"]) : samples.frames_to_samples(scene["end_frame"])
            ]
            level = 20 * np.log10(np.sqrt(np.mean(part**2))) - record["mix_gain_db"]
            assert samples.BACKGROUND_DBFS - 4 < level < samples.BACKGROUND_DBFS + 4, scene
            assert np.corrcoef(part[0], part[1])[0, 1] < 0.9, scene["category"]  # not a centred image


def test_clip_audio_is_background_plus_centred_speech(cmd_samples):
    """Decoded AAC audio minus the clean background holds speech only where the JSON says."""
    from torchcodec.decoders import AudioDecoder

    folder, records = cmd_samples
    for record in records:
        decoded = AudioDecoder(str(folder / record["files"]["video"])).get_all_samples()
        assert decoded.sample_rate == SAMPLE_RATE
        audio = decoded.data.numpy().astype(np.float64)
        assert audio.shape[0] == 2 and abs(audio.shape[1] - record["num_samples"]) <= SAMPLE_RATE / FPS
        n = record["num_samples"]
        bg = _read_stem(folder, record["files"]["background"])
        speech = _read_stem(folder, record["files"]["speech"])
        audio = audio[:, :n]
        mix = bg + speech
        snr = 10 * np.log10(np.sum(mix**2) / np.sum((audio - mix) ** 2))
        assert snr > 18  # AAC at 192 kb/s, no offset between the stems and the clip
        residual = audio - bg
        mask = _speech_mask(record)
        inside = 10 * np.log10(np.mean(residual[:, mask] ** 2))
        outside = 10 * np.log10(np.mean(residual[:, ~mask] ** 2))
        assert inside - outside > 20
        # The residual is centred: its side (L - R) is small next to its mid during speech.
        mid, side = residual[:, mask].sum(0), residual[0, mask] - residual[1, mask]
        assert np.mean(side**2) < 0.05 * np.mean(mid**2)


def test_descriptions_tell_the_scenes_in_order(cmd_samples):
    folder, records = cmd_samples
    manifest = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    assert [row["id"] for row in manifest] == [r["id"] for r in records]
    for row, record in zip(manifest, records):
        assert set(row) == {"id", "video", "description", "movie"}
        assert (folder / row["video"]).is_file() and row["description"] == record["description"]
        sentences = [s for s in record["description"].split(". ") if s]
        assert len(sentences) == len(record["scenes"])
        assert record["description"][0].isupper() and record["description"].endswith(".")
        speakers = {line["speaker"] for line in record["dialogue"]}
        assert speakers <= {name for name in samples.NAMES if name in record["description"]}
    assert manifest[0]["movie"] == manifest[1]["movie"] == "sample_movie_000"


# ----------------------------------------------------------------------------------------
# LSMDC style
# ----------------------------------------------------------------------------------------


def test_lsmdc_runs_are_short_consecutive_captioned_clips(lsmdc_samples):
    folder, records = lsmdc_samples
    assert len(records) == LSMDC_CLIPS
    manifest = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    assert [set(row) for row in manifest] == [{"id", "movie", "clip_index", "video", "caption"}] * LSMDC_CLIPS
    by_movie: dict[str, list[dict]] = {}
    for record in records:
        by_movie.setdefault(record["movie"], []).append(record)
        assert 3.0 <= record["duration"] <= 12.0
        assert "SOMEONE" in record["caption"]
        assert all(
            0 <= line["start_sample"] < line["end_sample"] <= record["num_samples"] for line in record["dialogue"]
        )
        assert int(_ffprobe(folder / record["files"]["video"])["streams"][0]["nb_frames"]) == record["num_frames"]
    assert all(sum(r["num_frames"] for r in clips) <= round(LSMDC_DURATION * FPS) for clips in by_movie.values())
    for clips in by_movie.values():
        assert [c["clip_index"] for c in clips] == list(range(len(clips)))
        for a, b in zip(clips, clips[1:]):
            assert b["movie_start_frame"] == a["movie_start_frame"] + a["num_frames"]
            # The background runs on across the join: no jump bigger than inside the clips.
            bga, bgb = _read_stem(folder, a["files"]["background"]), _read_stem(folder, b["files"]["background"])
            jump = np.abs(bgb[:, 0] - bga[:, -1]).max()
            assert jump <= np.abs(np.diff(bga, axis=1)).max()
    complete = [
        clips
        for clips in by_movie.values()
        if clips[-1]["movie_start_frame"] + clips[-1]["num_frames"] == round(LSMDC_DURATION * FPS)
    ]
    assert complete  # the first movie is cut completely into clips


def test_lsmdc_clip_boundaries_cover_the_movie():
    timeline = samples.plan_movie(3, 0, 100.0, "lsmdc")
    bounds = timeline.clip_bounds
    assert bounds[0] == 0 and bounds[-1] == timeline.num_frames
    lengths = np.diff(bounds) / FPS
    assert np.all((lengths >= 3.0) & (lengths <= 12.0)), lengths
    for line in timeline.dialogue:  # no dialogue line crosses a clip boundary
        k = np.searchsorted(bounds, line.start_sample * FPS // SAMPLE_RATE, side="right") - 1
        assert samples.frames_to_samples(bounds[k + 1]) >= line.end_sample


# ----------------------------------------------------------------------------------------
# Scene categories
# ----------------------------------------------------------------------------------------


def _spectrum_fraction(x: np.ndarray, lo: float, hi: float) -> float:
    power = np.abs(np.fft.rfft(x.mean(0))) ** 2
    freqs = np.fft.rfftfreq(x.shape[1], 1 / SAMPLE_RATE)
    return float(power[(freqs >= lo) & (freqs < hi)].sum() / power.sum())


def test_at_least_ten_categories_each_with_its_own_picture_and_sound():
    assert len(samples.CATEGORIES) >= 10
    assert len(set(samples.CATEGORY_NAMES)) == len(samples.CATEGORIES)
    assert len({c.texture for c in samples.CATEGORIES}) == len(samples.CATEGORIES)
    assert len({c.palette for c in samples.CATEGORIES}) == len(samples.CATEGORIES)
    n = 4 * SAMPLE_RATE
    sounds = {}
    for category in samples.CATEGORIES:
        audio = category.synth(np.random.default_rng(0), n)
        assert audio.shape == (2, n) and np.all(np.isfinite(audio))
        assert np.sqrt(np.mean(audio**2)) == pytest.approx(1.0)
        assert np.corrcoef(audio[0], audio[1])[0, 1] < 0.9, category.name  # stereo width
        assert len(category.descriptions) == 3 and len(category.captions) == 3
        sounds[category.name] = audio
    # Each category sounds like what it is called.
    assert _spectrum_fraction(sounds["engine"], 0, 600) > 0.8
    assert _spectrum_fraction(sounds["sea"], 0, 1500) > 0.8
    assert _spectrum_fraction(sounds["rain"], 900, 10000) > 0.7
    assert _spectrum_fraction(sounds["night_crickets"], 3500, 5500) > 0.5
    assert _spectrum_fraction(sounds["forest_birds"], 2000, 12000) > 0.4
    # Not bare sines: energy spreads over many frequency bins.
    for name, audio in sounds.items():
        power = np.sort(np.abs(np.fft.rfft(audio.mean(0))) ** 2)[::-1]
        assert power[:20].sum() < 0.9 * power.sum(), name


def test_music_categories_have_rhythm():
    """Festive and tense music carry a beat: their envelope is periodic at the tempo."""
    n = 8 * SAMPLE_RATE
    for name, (lo_bpm, hi_bpm) in {"festive_music": (108, 132), "tense_music": (58, 72)}.items():
        audio = samples.CATEGORIES_BY_NAME[name].synth(np.random.default_rng(1), n).mean(0)
        hop = SAMPLE_RATE // 100
        env = np.sqrt(np.mean(audio[: n // hop * hop].reshape(-1, hop) ** 2, axis=1))
        env = env - env.mean()
        ac = np.correlate(env, env, "full")[env.size - 1 :]
        lags = np.arange(ac.size) / 100
        window = (lags >= 60 / hi_bpm * 0.95) & (lags <= 60 / lo_bpm * 1.05)
        assert ac[window].max() > 0.3 * ac[0], name
