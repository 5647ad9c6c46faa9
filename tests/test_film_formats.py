"""Real film folders: every common container, stream layout and damage builds the right story or fails clearly.

A corpus of files is made here with ffmpeg from one sample clip's video and its clean stems (so the truth is
known): MKV, WebM, MPEG-TS and DVD VOB with the start offsets ffmpeg gives them, audio delayed or early against
the video, anamorphic pictures, 5.1 and 7.1 sound with the dialogue in the centre channel, a colon in a file
name, and the inputs that must fail: audio files with cover art, a partial download and a cut MKV, a URL row.
One build over the corpus, then each story is checked: duration, sample rate, channels, picture shape, the
sound's alignment with the clean background (cross-correlation, within one video frame) and key frames at the
cuts of the video (on the video's clock); each failure by its stated reason, and the summary by reason in words.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from scipy import signal

from sound_of_story.audio import resample
from sound_of_story.audio.decoding import CHANNEL_LAYOUTS, downmix_matrix
from sound_of_story.dataset_builder.build import build_dataset
from sound_of_story.dataset_builder.samples import FPS
from sound_of_story.dataset_builder.speech_removal import si_sdr
from sound_of_story.dataset_builder.story_cache import StoryCacheEntry

SECONDS = 8.0  # of the sample clip each file is made from
FRAME = 1.0 / FPS  # one video frame: the alignment the sound must meet
ALIGN_RATE = 8_000
ANALYSIS = "analysis"  # the 5.1 file's clean downmix, for the SI-SDR check


def _ffmpeg(*args) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *map(str, args)], check=True)


def _wav(path: Path, audio: np.ndarray, rate: int) -> Path:
    sf.write(path, audio.T, rate, subtype="FLOAT")
    return path


def _video_with_sound(out: Path, video: Path, sound: Path, *options, sound_input=(), video_input=()) -> Path:
    _ffmpeg(*video_input, "-i", video, *sound_input, "-i", sound, "-map", "0:v:0", "-map", "1:a:0", *options, out)
    return out  # fmt: skip


H264 = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")


@pytest.fixture(scope="module")
def corpus(cmd_samples, tmp_path_factory):
    """The files, the manifest rows (relative paths: the build runs from the corpus folder) and the truth."""
    folder, records = cmd_samples
    record = records[0]
    d = tmp_path_factory.mktemp("films")
    rate = record["sample_rate"]
    n = round(SECONDS * rate)
    bg, _ = sf.read(folder / record["files"]["background"], dtype="float32", always_2d=True)
    sp, _ = sf.read(folder / record["files"]["speech"], dtype="float32", always_2d=True)
    bg, sp = bg.T[:, :n], sp.T[:, :n]
    mix = _wav(d / "mix.wav", bg + sp, rate)
    clip = folder / record["files"]["video"]
    silent = d / "picture.mp4"
    _ffmpeg("-i", clip, "-an", "-t", SECONDS, "-c", "copy", silent)

    # 5.1 and 7.1 film mixes: the dialogue alone in the centre with a little of the background, the background
    # in the front and (lower) in the surrounds
    def surround(layout: str, speech: bool) -> np.ndarray:
        names = CHANNEL_LAYOUTS[layout]
        level = {"FL": bg[0], "FR": bg[1], "FC": 0.5 * bg.mean(0) + (sp.mean(0) if speech else 0.0)}
        level |= {"SL": 0.5 * bg[0], "SR": 0.5 * bg[1], "BL": 0.3 * bg[0], "BR": 0.3 * bg[1]}
        return np.stack([level.get(name, np.zeros(n, np.float32)) for name in names]).astype(np.float32)

    def raw(layout: str) -> tuple:
        path = d / f"{layout}.f32"
        path.write_bytes(np.ascontiguousarray(surround(layout, True).T).tobytes())
        return ("-f", "f32le", "-ar", rate, "-ch_layout", layout)

    files = {
        "mp4": _video_with_sound(d / "plain.mp4", silent, mix, *H264, "-c:a", "aac"),
        "delayed_audio": _video_with_sound(d / "delayed_audio.mp4", silent, mix, *H264, "-c:a", "aac", sound_input=("-itsoffset", 2)),
        "early_audio": _video_with_sound(d / "early_audio.mp4", silent, mix, *H264, "-c:a", "aac", "-fps_mode", "passthrough", video_input=("-itsoffset", 1)),
        "mkv_opus": _video_with_sound(d / "opus.mkv", silent, mix, *H264, "-c:a", "libopus"),
        "mkv_aac": _video_with_sound(d / "aac.mkv", silent, mix, *H264, "-c:a", "aac"),
        "webm": _video_with_sound(d / "film.webm", silent, mix, "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", 8, "-b:v", "400k", "-c:a", "libopus"),
        "mpegts": _video_with_sound(d / "broadcast.ts", silent, mix, *H264, "-c:a", "aac"),
        "dvd": _video_with_sound(d / "VTS_01_1.VOB", silent, mix, "-vf", "scale=720:576,setsar=64/45", "-c:v", "mpeg2video", "-c:a", "ac3", "-f", "vob"),
        "anamorphic_4x3": _video_with_sound(d / "pal_4x3.mp4", silent, mix, "-vf", "scale=720:576,setsar=16/15", *H264, "-c:a", "aac"),
        "anamorphic_16x9": _video_with_sound(d / "pal_16x9.mp4", silent, mix, "-vf", "scale=720:576,setsar=64/45", *H264, "-c:a", "aac"),
        "surround_5.1": _video_with_sound(d / "surround51.mkv", silent, d / "5.1(side).f32", *H264, "-c:a", "ac3", "-b:a", "448k", sound_input=raw("5.1(side)")),
        "surround_7.1": _video_with_sound(d / "surround71.mkv", silent, d / "7.1.f32", *H264, "-c:a", "flac", sound_input=raw("7.1")),
        "colon": _video_with_sound(d / "S01E01:Pilot.mp4", silent, mix, *H264, "-c:a", "aac"),
    }  # fmt: skip
    _ffmpeg("-i", clip, "-frames:v", 1, d / "cover.png")
    _ffmpeg("-i", mix, "-i", d / "cover.png", "-map", 0, "-map", 1, "-c:a", "libmp3lame", "-c:v", "mjpeg", "-disposition:v", "attached_pic", d / "song.mp3")  # fmt: skip
    _ffmpeg("-i", mix, "-i", d / "cover.png", "-map", 0, "-map", 1, "-c:a", "aac", "-c:v", "png", "-disposition:v", "attached_pic", d / "song.m4a")  # fmt: skip
    web_ready = _video_with_sound(d / "web_ready.mp4", silent, mix, *H264, "-c:a", "aac", "-movflags", "+faststart")
    (d / "partial.mp4").write_bytes(web_ready.read_bytes()[: web_ready.stat().st_size * 6 // 10])
    (d / "cut.mkv").write_bytes(files["mkv_aac"].read_bytes()[: files["mkv_aac"].stat().st_size * 6 // 10])
    _ffmpeg("-i", files["mkv_aac"], "-c", "copy", "-bsf:v", "noise=amount=2", d / "broken_video.mkv")  # garbled video
    failing = {
        "cover_mp3": (
            d / "song.mp3",
            "audio-only file (no video stream; its picture is attached cover art, not video)",
        ),
        "cover_m4a": (
            d / "song.m4a",
            "audio-only file (no video stream; its picture is attached cover art, not video)",
        ),
        "partial_download": (d / "partial.mp4", "truncated file: it decodes to "),
        "cut_mkv": (d / "cut.mkv", "truncated file: it decodes to "),
        "broken_video": (d / "broken_video.mkv", "video stream cannot be decoded (ffmpeg: "),
        "url": ("https://example.com/films/clip.mp4", "URLs are not supported: download the file first"),
    }
    rows = [
        {"id": name, "video": Path(path).name, "description": "A story.", "movie": name}
        for name, path in files.items()
    ]
    rows += [{"id": name, "video": path if name == "url" else path.name, "description": "A story."} for name, (path, _) in failing.items()]  # fmt: skip
    (d / "films.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    clean51 = downmix_matrix(CHANNEL_LAYOUTS["5.1(side)"]) @ surround("5.1(side)", False)
    mix51 = downmix_matrix(CHANNEL_LAYOUTS["5.1(side)"]) @ surround("5.1(side)", True)
    cuts = [c for c in record["cuts"] if c < SECONDS - 0.5]
    assert cuts, "the sample clip must cut within the corpus length"
    return {
        "dir": d,
        "files": files,
        "failing": failing,
        "bg": bg,
        "rate": rate,
        "cuts": cuts,
        ANALYSIS: (mix51, clean51),
    }


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("films_out")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(corpus["dir"])  # the manifest and every path in it relative: S01E01:Pilot.mp4 must not be a protocol
        report = build_dataset("films.jsonl", out, test_size=1, generation_split="story", progress=False)
    entries = {p.name.rsplit("-", 1)[0]: StoryCacheEntry(p) for p in (out / "work" / "cache").iterdir() if p.is_dir()}
    return out, report, entries


def _story_audio(entry: StoryCacheEntry) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(entry.path / "audio.flac", dtype="float32", always_2d=True)
    return audio.T, rate


def _lag_seconds(story: np.ndarray, story_rate: int, truth: np.ndarray, truth_rate: int) -> float:
    """Where the truth sits in the story: ``story[t] ~ truth[t - lag]`` (mono, at 8 kHz)."""
    x = resample(story.mean(0), story_rate, ALIGN_RATE, method="polyphase")
    y = resample(truth.mean(0), truth_rate, ALIGN_RATE, method="polyphase")
    correlation = signal.correlate(x, y, mode="full", method="fft")
    return float(signal.correlation_lags(x.size, y.size)[np.argmax(correlation)] / ALIGN_RATE)


# name -> (story seconds, audio lag against the clean stem, sample rate, picture (width, height))
EXPECTED = {
    "mp4": (SECONDS, 0.0, 44_100, (320, 180)),
    "delayed_audio": (SECONDS + 2, 2.0, 44_100, (320, 180)),  # the first 2 s silent
    "early_audio": (SECONDS - 1, -1.0, 44_100, (320, 180)),  # the sound before the first frame trimmed
    "mkv_opus": (SECONDS, 0.0, 48_000, (320, 180)),
    "mkv_aac": (SECONDS, 0.0, 44_100, (320, 180)),
    "webm": (SECONDS, 0.0, 48_000, (320, 180)),
    "mpegts": (SECONDS, 0.0, 44_100, (320, 180)),
    "dvd": (SECONDS, 0.0, 44_100, (512, 288)),  # 720x576 at 64:45 is 16:9
    "anamorphic_4x3": (SECONDS, 0.0, 44_100, (512, 384)),  # 720x576 at 16:15 is 4:3
    "anamorphic_16x9": (SECONDS, 0.0, 44_100, (512, 288)),
    "surround_5.1": (SECONDS, 0.0, 44_100, (320, 180)),
    "surround_7.1": (SECONDS, 0.0, 44_100, (320, 180)),
    "colon": (SECONDS, 0.0, 44_100, (320, 180)),
}


def test_every_valid_file_builds_on_one_clock(corpus, built):
    out, report, entries = built
    assert set(report.succeeded) == set(EXPECTED), report.summary()
    for name, (seconds, lag, rate, shape) in EXPECTED.items():
        story = entries[name].story
        assert story.sample_rate == rate and story.channels == 2, (name, story.sample_rate, story.channels)
        assert story.duration == pytest.approx(seconds, abs=0.1), (name, story.duration)
        audio, flac_rate = _story_audio(entries[name])
        measured = _lag_seconds(audio, flac_rate, corpus["bg"], corpus["rate"])
        assert measured == pytest.approx(lag, abs=FRAME), (name, measured)
        if lag > 0:  # audio that starts after the first frame: silence before it
            assert np.abs(audio[:, : round((lag - FRAME) * flac_rate)]).max() == 0.0, name
        frames = sorted((entries[name].path / "frames").iterdir())
        assert {Image.open(f).size for f in frames} == {shape}, name
        # key frames on the video's clock: a new shot is kept within a few samples of each cut
        for cut in corpus["cuts"]:
            assert any(cut - FRAME <= t <= cut + 0.25 for t in story.frame_times), (name, cut, story.frame_times)


def test_a_centre_channel_dialogue_is_removed_there(corpus, built):
    """The 5.1 film mix (AC-3) with its dialogue in the centre: the story's background against the clean
    background's downmix, as SI-SDR gain over the downmixed input (docs/building.md has the measurement)."""
    mix, clean = corpus[ANALYSIS]
    audio, _ = _story_audio(built[2]["surround_5.1"])
    # SI-SDR needs the samples aligned (AC-3's encoder delay, which the container's offsets undo to within a few
    # samples): the lag that best matches the clean background, within one video frame
    x, y = audio.mean(0), clean.mean(0)
    lags = signal.correlation_lags(x.size, y.size)
    correlation = signal.correlate(x, y, mode="full", method="fft")
    near = np.abs(lags) <= round(FRAME * corpus["rate"])
    lag = int(lags[near][np.argmax(correlation[near])])
    audio = audio[:, lag:] if lag >= 0 else np.pad(audio, ((0, 0), (-lag, 0)))
    n = min(audio.shape[1], clean.shape[1])
    gain = si_sdr(audio[:, :n], clean[:, :n]) - si_sdr(mix[:, :n], clean[:, :n])
    assert gain >= 12.0, (gain, lag)
    story = built[2]["surround_5.1"].story
    assert story.speech_ratio_after <= 0.1 * story.speech_ratio_before, story


def test_inputs_that_cannot_be_used_fail_with_their_reason_in_words(corpus, built):
    out, report, _ = built
    rows = {r["id"]: r for r in map(json.loads, (out / "failures.jsonl").read_text().splitlines())}
    assert set(rows) == set(corpus["failing"])
    for name, (_, reason) in corpus["failing"].items():
        assert reason in rows[name]["reason"], rows[name]
    for name in ("partial_download", "cut_mkv"):  # both lengths named, and the way to accept it
        reason = rows[name]["reason"]
        decoded, stated = (
            float(x)
            for x in (reason.split("decodes to ")[1].split(" s")[0], reason.split("states ")[1].split(" s")[0])
        )
        assert stated == pytest.approx(SECONDS, abs=0.1) and decoded < stated - 1, reason  # fmt: skip
        assert "--allow-truncated" in reason
    assert report.failures_by_reason() == {
        "audio-only file": 2,
        "truncated file": 2,
        "video stream cannot be decoded": 1,
        "URLs are not supported": 1,
    }
    summary = report.summary()
    assert summary.startswith(f"build summary: {len(EXPECTED)} stories built, 0 from the cache, 6 failed (")
    assert ".cpp" not in (out / "failures.jsonl").read_text() and "Error" not in summary


def test_allow_truncated_builds_what_decodes_and_a_stale_entry_is_not_served(corpus, tmp_path):
    from sound_of_story.dataset_builder.manifest import StorySource
    from sound_of_story.dataset_builder.processing import ProcessingParams, StoryJob, cache_key, run_story_job

    source = StorySource("partial", "m", "cmd", "A story.", (str(corpus["dir"] / "partial.mp4"),), ("partial",))
    params = ProcessingParams(allow_truncated=True)
    outcome = run_story_job(StoryJob(0, source, params, str(tmp_path)))
    assert outcome.ok, outcome.failure
    story = StoryCacheEntry(Path(outcome.entry)).story
    assert 1.0 < story.duration < SECONDS - 1
    assert story.params["allow_truncated"] is True  # stated in the story's parameters (and the card's)
    assert "allow_truncated" not in ProcessingParams().to_json()  # other builds keep their keys
    assert cache_key(source, params) != cache_key(source, ProcessingParams())
    # an entry that a build before this check made of the cut file, under the key it had then, is not served
    Path(outcome.entry).rename(tmp_path / f"partial-{cache_key(source, ProcessingParams())}")
    again = run_story_job(StoryJob(0, source, ProcessingParams(), str(tmp_path)))
    assert not again.ok and "truncated file" in again.failure.reason


def test_the_empty_build_summary_reads_well(corpus, tmp_path, capsys):
    from sound_of_story.app.cli import main

    manifest = tmp_path / "only_bad.jsonl"
    manifest.write_text(
        json.dumps({"id": "u", "video": "https://example.com/a.mp4", "description": "A story."}) + "\n"
    )
    assert main(["build", "--manifest", str(manifest), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    printed = capsys.readouterr().out
    assert "0 stories built (0 from the cache), 1 failed inputs" in printed and "(;" not in printed
    assert (
        printed.strip().splitlines()[-1]
        == "build summary: 0 stories built, 0 from the cache, 1 failed (URLs are not supported: 1)"
    )
