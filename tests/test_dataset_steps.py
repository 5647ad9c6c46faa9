"""The dataset builder's steps, each through its plain function: speech removal, key frames,
slicing, the low-content filter, manifest reading."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sound_of_story.dataset_builder import content_filter, key_frames, manifest, slicing, speech_removal
from sound_of_story.dataset_builder.media import decode_audio

SR = 44_100


# ----------------------------------------------------------------------------------------
# Speech removal
# ----------------------------------------------------------------------------------------


def _clip_audio(folder, record):
    mix, rate = decode_audio(folder / record["files"]["video"])
    bg, _ = sf.read(folder / record["files"]["background"], dtype="float32", always_2d=True)
    return mix[:, : bg.shape[0]], bg.T, rate


def test_center_backend_meets_the_quality_targets_on_sample_clips(cmd_samples):
    folder, records = cmd_samples
    for record in records:
        mix, bg, rate = _clip_audio(folder, record)
        estimate = speech_removal.remove_speech(mix, rate)
        assert estimate.shape == mix.shape and estimate.dtype == np.float32
        gain = speech_removal.si_sdr(estimate, bg) - speech_removal.si_sdr(mix, bg)
        assert gain >= 10.0, f"{record['id']}: SI-SDR improved by only {gain:.2f} dB"
        before, after = speech_removal.speech_ratio(mix, estimate, sample_rate=rate)
        assert (before, after) == pytest.approx(
            (
                speech_removal.speech_ratio(mix, sample_rate=rate),
                speech_removal.speech_ratio(estimate, sample_rate=rate),
            ),
            abs=0.002,
        )
        assert before > 0.15  # the clips do hold dialogue
        assert after <= 0.2 * before, f"{record['id']}: speech ratio {before:.3f} -> {after:.3f}"


def test_center_backend_keeps_side_content_and_removes_a_centred_tone():
    t = np.arange(SR * 2) / SR
    rng = np.random.default_rng(0)
    side = rng.standard_normal((2, t.size)) * 0.05  # independent left/right: nothing centred
    centred = 0.2 * np.sin(2 * math.pi * 440 * t)
    out = speech_removal.remove_center(side + centred, SR)
    body = slice(SR // 4, -SR // 4)
    assert speech_removal.si_sdr(out[:, body], side[:, body]) > 15
    # bins outside the speech band are untouched: a centred 40 Hz hum stays
    hum = 0.2 * np.sin(2 * math.pi * 40 * t)
    kept = speech_removal.remove_center(np.stack([hum, hum]), SR)
    assert np.sqrt(np.mean(kept[:, body] ** 2)) == pytest.approx(0.2 / math.sqrt(2), rel=0.02)


def test_center_backend_rejects_non_stereo_and_mono_falls_back_to_vad(cmd_samples):
    with pytest.raises(ValueError, match="stereo"):
        speech_removal.remove_center(np.zeros((3, 1000)), SR)
    folder, records = cmd_samples
    mix, bg, rate = _clip_audio(folder, records[0])
    mono = mix.mean(axis=0, keepdims=True)
    out = speech_removal.remove_speech(mono, rate)
    assert out.shape == mono.shape
    np.testing.assert_allclose(out, speech_removal.attenuate_speech_spans(mono, rate), atol=0)
    assert speech_removal.speech_ratio(out, sample_rate=rate) < 0.5 * speech_removal.speech_ratio(
        mono, sample_rate=rate
    )


def test_vad_backend_attenuates_where_silero_hears_speech(cmd_samples):
    folder, records = cmd_samples
    record = records[0]
    mix, bg, rate = _clip_audio(folder, record)
    params = speech_removal.SpeechRemovalParams(backend="vad")
    out = speech_removal.remove_speech(mix, rate, params)
    # Where silero hears no speech (beyond padding and fades), nothing changes at all.
    probs = speech_removal.speech_probabilities(mix, sample_rate=rate)
    heard = np.repeat(probs > params.vad_threshold, speech_removal.VAD_WINDOW)
    near = np.zeros(mix.shape[1], bool)
    margin = int((params.vad_padding_s + params.vad_fade_s) * rate) + 2
    for k in np.flatnonzero(heard[:: speech_removal.VAD_WINDOW]):
        a = k * speech_removal.VAD_WINDOW * rate // speech_removal.VAD_SAMPLE_RATE
        near[max(0, a - margin) : a + speech_removal.VAD_WINDOW * rate // speech_removal.VAD_SAMPLE_RATE + margin] = (
            True
        )
    np.testing.assert_array_equal(out[:, ~near], mix[:, ~near])
    # Every dialogue line is heard and lowered by tens of dB.
    for line in record["dialogue"]:
        inner = slice(line["start_sample"] + rate // 5, line["end_sample"] - rate // 5)
        drop = 10 * np.log10(np.mean(mix[:, inner] ** 2) / max(np.mean(out[:, inner] ** 2), 1e-20))
        assert drop > 20, line["text"]
    # What it lowers is mostly dialogue.
    dialogue = np.zeros(mix.shape[1], bool)
    for line in record["dialogue"]:
        dialogue[max(0, line["start_sample"] - rate // 2) : line["end_sample"] + rate // 2] = True
    changed = np.any(out != mix, axis=0)
    assert np.mean(dialogue[changed]) > 0.8


def test_a_centre_channel_takes_the_dialogue_out_of_a_surround_mix(cmd_samples):
    """A 5.1 film mix from a sample clip's stems: the background in front and (lower) in the surrounds, the
    dialogue in the centre over half the background's level. Taking the dialogue out where it lives (the centre
    channel, gated by what silero hears there) beats the stereo separator on the downmix by far."""
    from sound_of_story.audio.decoding import CHANNEL_LAYOUTS, downmix_matrix

    folder, records = cmd_samples
    bg, _ = sf.read(folder / records[0]["files"]["background"], dtype="float32", always_2d=True)
    sp, _ = sf.read(folder / records[0]["files"]["speech"], dtype="float32", always_2d=True)
    bg, sp = bg.T, sp.T
    matrix = downmix_matrix(CHANNEL_LAYOUTS["5.1(side)"])

    def surround(dialogue: bool) -> np.ndarray:
        centre = 0.5 * bg.mean(0) + (sp.mean(0) if dialogue else 0.0)
        return np.stack([bg[0], bg[1], centre, np.zeros_like(centre), 0.5 * bg[0], 0.5 * bg[1]]).astype(np.float32)

    clean, film = matrix @ surround(False), surround(True)
    mix = matrix @ film
    base = speech_removal.si_sdr(mix, clean)
    centred = speech_removal.remove_centre_channel_speech(mix, film[2] * matrix[0, 2], SR)
    stereo = speech_removal.remove_speech_and_measure(mix, SR)
    gain_centre = speech_removal.si_sdr(centred.background, clean) - base
    gain_stereo = speech_removal.si_sdr(stereo.background, clean) - base
    assert gain_centre >= 15.0 and gain_centre >= gain_stereo + 5.0, (gain_centre, gain_stereo)
    assert centred.speech_ratio_after <= 0.1 * centred.speech_ratio_before
    # outside what silero hears in the centre (beyond padding and fades) the mix is kept as it is
    same = np.all(centred.background == mix, axis=0)
    assert same.mean() > 0.3
    with pytest.raises(ValueError, match="centre channel must have shape"):
        speech_removal.remove_centre_channel_speech(mix, film[2][:-1], SR)


class _FakeSeparator(torch.nn.Module):
    """Splits its input into known stems: vocals = the centre (mid), others = what is left."""

    sources = ["drums", "bass", "other", "vocals"]

    def forward(self, x):
        mid = x.mean(dim=1, keepdim=True).expand_as(x)
        rest = x - mid
        return torch.stack([rest * 0.5, rest * 0.25, rest * 0.25, mid], dim=1)


def test_checkpoint_backend_keeps_all_stems_but_vocals_across_segments():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, SR * 3)).astype(np.float32) * 0.1
    params = speech_removal.SpeechRemovalParams(segment_s=1.0, overlap_s=0.25)
    out = speech_removal.separate_with_model(_FakeSeparator(), x, SR, params)
    expected = x - x.mean(axis=0, keepdims=True)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_checkpoint_backend_loads_a_local_hdemucs_state_dict(tmp_path):
    from torchaudio.models import hdemucs_high

    with pytest.raises(ValueError, match="needs a local HDemucs checkpoint"):
        speech_removal.SpeechRemovalParams(backend="checkpoint")
    torch.manual_seed(0)
    model = hdemucs_high(sources=list(speech_removal.HDEMUCS_SOURCES))
    path = tmp_path / "hdemucs.pt"
    torch.save(model.state_dict(), path)
    x = np.random.default_rng(2).standard_normal((2, SR // 2)).astype(np.float32) * 0.1
    params = speech_removal.SpeechRemovalParams(backend="checkpoint", checkpoint=str(path), segment_s=1.0)
    out = speech_removal.remove_speech(x, SR, params)
    direct = speech_removal.separate_with_model(model.eval(), x, SR, params)
    np.testing.assert_allclose(out, direct, atol=1e-5)
    bad = tmp_path / "bad.pt"
    torch.save({"weight": torch.zeros(3)}, bad)
    with pytest.raises(ValueError, match="is not an HDemucs"):
        speech_removal.remove_speech(
            x, SR, speech_removal.SpeechRemovalParams(backend="checkpoint", checkpoint=str(bad))
        )


def test_si_sdr_values():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal(10_000)
    ref -= ref.mean()
    assert speech_removal.si_sdr(3.0 * ref, ref) > 100  # scale-invariant
    noise = rng.standard_normal(10_000)
    noise -= noise.mean()
    noise -= (noise @ ref) / (ref @ ref) * ref  # orthogonal: exactly 0 dB at equal energy
    noise *= np.linalg.norm(ref) / np.linalg.norm(noise)
    assert speech_removal.si_sdr(ref + noise, ref) == pytest.approx(0.0, abs=1e-6)
    assert speech_removal.si_sdr(ref + 0.1 * noise, ref) == pytest.approx(20.0, abs=1e-6)


# ----------------------------------------------------------------------------------------
# Key frames
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("hash_name", ["dhash", "phash"])
def test_every_cut_is_followed_by_a_key_frame_within_one_second(cmd_samples, hash_name):
    folder, records = cmd_samples
    for record in records:
        frames = key_frames.extract_key_frames(
            folder / record["files"]["video"], key_frames.KeyFrameParams(hash=hash_name)
        )
        times = [f.time for f in frames]
        assert times[0] == 0.0 and times == sorted(times)
        for cut in record["cuts"]:
            assert any(0 <= t - cut <= 1.0 for t in times), (hash_name, cut, times)
        per_150 = len(frames) * 150 / record["duration"]
        assert len(frames) <= 2 * len(record["scenes"]), per_150  # about one per shot, not per sampled frame


def test_key_frames_are_jpegs_no_larger_than_max_side(cmd_samples):
    from PIL import Image

    folder, records = cmd_samples
    frames = key_frames.extract_key_frames(
        folder / records[0]["files"]["video"], key_frames.KeyFrameParams(max_side=128, fps=2)
    )
    for f in frames:
        image = Image.open(io.BytesIO(f.jpeg))
        assert image.format == "JPEG" and max(image.size) == 128
        assert f.time * 2 == int(f.time * 2)  # sampled at 2 fps: times are multiples of 0.5 s


def test_sequential_rule_compares_with_the_last_kept_frame():
    from PIL import Image

    rng = np.random.default_rng(0)
    a = Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8))
    b = Image.fromarray(255 - np.asarray(a))  # inverted: every dhash bit flips
    seq = [(0.0, a), (0.1, a), (0.2, b), (0.3, b), (0.4, a)]
    kept = key_frames.select_key_frames(seq, key_frames.KeyFrameParams(hash="dhash"))
    assert [k.time for k in kept] == [0.0, 0.2, 0.4]
    assert key_frames.select_key_frames(seq, key_frames.KeyFrameParams(max_similarity=1.0)).__len__() == 5


def test_key_frame_params_are_validated():
    with pytest.raises(ValueError, match="hash must be one of"):
        key_frames.KeyFrameParams(hash="md5")
    with pytest.raises(ValueError, match="at most 10 fps"):
        key_frames.KeyFrameParams(fps=25)
    assert list(key_frames.sample_times(1.0, 10)) == pytest.approx([k / 10 for k in range(10)])


# ----------------------------------------------------------------------------------------
# Slicing
# ----------------------------------------------------------------------------------------


def _brute_force_slices(n, sr, times, max_s, keep_long):
    """Independent re-statement of the rule, over the unit list."""
    bounds = sorted({0, n, *[round(t * sr) for t in times if 0 < round(t * sr) < n]})
    units = list(zip(bounds[:-1], bounds[1:]))
    limit = round(max_s * sr)
    out, current = [], []
    for a, b in units:
        if b - a > limit:
            if current:
                out.append((current[0][0], current[-1][1], False))
            out.append((a, b, True))
            current = []
        elif current and b - current[0][0] > limit:
            out.append((current[0][0], current[-1][1], False))
            current = [(a, b)]
        else:
            current.append((a, b))
    if current:
        out.append((current[0][0], current[-1][1], False))
    return [s for s in out if keep_long or not s[2]]


def test_slicing_matches_a_brute_force_statement_on_random_frames():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 200)) * 1000
        sr = 1000
        times = list(rng.uniform(-2, n / sr + 2, size=int(rng.integers(0, 25))))
        times += times[: int(rng.integers(0, 3))]  # duplicates
        keep = bool(rng.integers(2))
        got = [(s.start, s.end, s.long) for s in slicing.slice_story(n, sr, times, 15.0, keep)]
        assert got == _brute_force_slices(n, sr, times, 15.0, keep)
        if keep:  # slices tile the story with no gap and no overlap
            assert got[0][0] == 0 and got[-1][1] == n and all(a[1] == b[0] for a, b in zip(got, got[1:]))


def test_slicing_edge_cases():
    sr = SR
    n = 40 * sr
    # no frames: one unit of 40 s, kept alone as a long slice (or dropped)
    assert slicing.slice_story(n, sr, []) == [slicing.Slice(0, n, True)]
    assert slicing.slice_story(n, sr, [], keep_long=False) == []
    # one frame at 10 s: head 10 s, tail 30 s (long)
    assert slicing.slice_story(n, sr, [10.0]) == [slicing.Slice(0, 10 * sr, False), slicing.Slice(10 * sr, n, True)]
    # duplicate times and frames past the end change nothing
    assert slicing.slice_story(n, sr, [10.0, 10.0, 55.0, -1.0]) == slicing.slice_story(n, sr, [10.0])
    # exactly 15.0 s fits in one slice; one sample more does not
    frames = [5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0]
    assert [(s.start, s.end) for s in slicing.slice_story(n, sr, frames)] == [
        (0, 15 * sr),
        (15 * sr, 30 * sr),
        (30 * sr, n),
    ]
    tiny = 1 / sr
    got = slicing.slice_story(n, sr, [5.0, 10.0, 15.0 + tiny, 20.0])
    assert [(s.start, s.end) for s in got][:2] == [(0, 10 * sr), (10 * sr, 20 * sr)]
    # float times that are not exact in binary still land on the right sample
    assert slicing.unit_bounds(3 * sr, sr, [0.1 * 3, 1.1]) == [0, 13230, 48510, 3 * sr]
    assert slicing.slice_story(0, sr, [1.0]) == []


# ----------------------------------------------------------------------------------------
# Low-content filter
# ----------------------------------------------------------------------------------------


def test_content_filter_measures_and_decisions():
    t = np.arange(SR * 2) / SR
    hum = 0.3 * np.sin(2 * math.pi * 50 * t)
    tone = 0.3 * np.sin(2 * math.pi * 440 * t)
    silence = np.zeros_like(t)
    for measure in content_filter.MEASURES[:3]:
        params = content_filter.ContentFilterParams(measure=measure)
        assert not content_filter.check_content(hum[None], SR, params).keep, measure
        assert content_filter.check_content(tone[None], SR, params).keep, measure
        decision = content_filter.check_content(np.stack([silence, silence]), SR, params)
        assert not decision.keep and decision.reason == "digital silence"
    value = content_filter.check_content(tone[None], SR).value
    assert 430 < value < 480  # magnitude-weighted centroid of a pure 440 Hz tone
    # stereo is mixed to mono first: interleaving L/R would read 50 Hz as ~75 Hz
    segment = content_filter.to_audio_segment(np.stack([hum, hum]), SR)
    assert content_filter.measure_content(segment, "centroid_power") == pytest.approx(50, abs=1)
    decision = content_filter.check_content(hum[None], SR)
    assert decision.reason.startswith("centroid_mag ") and "below 78 Hz" in decision.reason
    rms = content_filter.check_content((tone * 1e-3)[None], SR, content_filter.ContentFilterParams(measure="rms"))
    assert not rms.keep and rms.value < 78
    with pytest.raises(ValueError, match="content measure must be one of"):
        content_filter.ContentFilterParams(measure="loudness")


# ----------------------------------------------------------------------------------------
# Manifest
# ----------------------------------------------------------------------------------------


def test_manifest_formats_and_bad_rows(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    rows = [
        b'{"id": "c1", "video": "a.mp4", "description": "A story.", "movie": "m1"}',
        b'{"id": "c1", "video": "a.mp4", "description": "Again."}',
        b'{"id": "c2", "video": "a.mp4", "description": "  "}',
        b'{"id": "c3", "video": "a.mp4", "description": "caf\xe9 in latin-1"}',
        b'{"Movie": "m2", "Desc": "Released row.", "Frames": ["frame0-00-01.50.jpg", "frame0:01:02.00.jpg"], "video": "a.mp4"}',
        b'{"Movie": "m3", "Desc": "Bad frames.", "Frames": ["cover.jpg"], "video": "a.mp4"}',
        b"not json",
        b'{"title": "unknown format"}',
    ]
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    stories, failures = manifest.read_manifest(path)
    assert [(s.id, s.source, s.movie) for s in stories] == [("c1", "cmd", "m1"), ("m2_000005", "sos", "m2")]
    assert stories[1].frame_times == (1.5, 62.0)
    assert stories[0].videos == (str(tmp_path / "a.mp4"),)
    reasons = {f.id: f.reason for f in failures}
    assert reasons["c1"] == "duplicate id: line 2 (a.mp4) has the id of line 1 (a.mp4)"
    assert reasons["c2"] == "empty description"
    assert reasons["c3"] == "description is not valid UTF-8"
    assert "encodes no timestamp" in reasons["m3_000006"]
    assert "not valid JSON" in reasons["line 7"]
    assert "matching no manifest format" in reasons["line 8"]


def test_a_url_row_is_a_failure_in_words_and_a_colon_is_part_of_a_name(tmp_path):
    rows = [
        {"id": "web", "video": "https://example.com/a.mp4", "description": "A story."},
        {"movie": "m", "clip_index": 0, "video": "s3://bucket/b.mp4", "caption": "SOMEONE runs."},
        {"Movie": "M", "Desc": "A story.", "Frames": ["frame0-00-01.50.jpg"], "video": "ftp://host/c.mp4", "id": "r"},
        {"id": "colon", "video": "S01E01:Pilot.mp4", "description": "A story."},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stories, failures = manifest.read_manifest(path)
    assert [f.reason for f in failures] == [
        "URLs are not supported: download the file first (video is 'https://example.com/a.mp4')",
        "URLs are not supported: download the file first (video is 's3://bucket/b.mp4')",
        "URLs are not supported: download the file first (video is 'ftp://host/c.mp4')",
    ]
    assert {f.category for f in failures} == {"URLs are not supported"}
    assert [s.videos for s in stories] == [(str(tmp_path / "S01E01:Pilot.mp4"),)]


def test_every_bad_value_of_every_row_format_is_one_failure_in_row_order(tmp_path):
    rows = [
        {"Movie": "M", "Desc": 5, "Frames": ["frame0-00-01.50.jpg"], "video": "a.mp4", "id": "sos_text"},
        {"Movie": "M", "Desc": "A story.", "Frames": 5, "video": "a.mp4", "id": "sos_frames"},
        {"Movie": "M", "Desc": "A story.", "Frames": ["frame0-00-01.50.jpg"], "id": "sos_video"},
        {"movie": "m", "clip_index": None, "video": "a.mp4", "caption": "A clip."},
        {"movie": "m", "clip_index": [1], "video": "a.mp4", "caption": "A clip.", "id": "list_index"},
        {"movie": "m", "clip_index": 0, "video": "a.mp4", "caption": 3},
        {"movie": "m", "clip_index": 1, "video": "a.mp4", "caption": "Kept."},
        {"movie": "m", "clip_index": 2, "video": "b.mp4", "caption": "Same id.", "id": "m_clip_1"},
        {"id": "cmd_text", "video": "a.mp4", "description": None},
    ]
    lines = [json.dumps(r).encode() for r in rows]
    lines.insert(4, b'{"movie": "m", "clip_index": 1e999, "video": "a.mp4", "caption": "A clip.", "id": "inf_index"}')
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    stories, failures = manifest.read_manifest(path, lsmdc_target_s=10.0, clip_duration=lambda video: 5.0)
    assert [(s.id, s.source, s.text, s.clip_ids) for s in stories] == [("m_000", "lsmdc", "Kept.", ("m_clip_1",))]
    assert [(f.id, f.file, f.reason) for f in failures] == [
        ("sos_text", "a.mp4", "empty description (Desc)"),
        ("sos_frames", "a.mp4", "'int' object is not iterable"),
        (
            "sos_video",
            str(path),
            "no video path (add a 'video' field, or 'videos' for an LSMDC story, to the released row)",
        ),
        ("m_clip_None", "a.mp4", "clip_index None is not an integer"),
        ("inf_index", "a.mp4", "clip_index inf is not an integer"),
        ("list_index", "a.mp4", "clip_index [1] is not an integer"),
        ("m_clip_0", "a.mp4", "empty caption"),
        ("m_clip_1", "b.mp4", "duplicate clip id (line 9; first at line 8)"),
        ("cmd_text", "a.mp4", "empty description"),
    ]
    csv_path = tmp_path / "m.csv"  # a CSV row lacking a value reads it as empty, the header is line 1
    csv_path.write_text("id,video,description,movie\nc1,a.mp4,A story.,m1\nc2,a.mp4,,m1\nc3,a.mp4\n")
    stories, failures = manifest.read_manifest(csv_path)
    assert [(s.id, s.movie, s.text) for s in stories] == [("c1", "m1", "A story.")]
    assert [(f.id, f.reason) for f in failures] == [("c2", "empty description"), ("c3", "empty description")]


def test_lsmdc_clips_are_joined_in_order_up_to_the_target(tmp_path):
    lines = [{"movie": "m", "clip_index": i, "video": f"{i}.mp4", "caption": f"Caption {i}."} for i in (3, 0, 2, 1, 4)]
    lines.append({"movie": "n", "clip_index": 0, "video": "broken.mp4", "caption": "Broken."})
    path = tmp_path / "l.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))

    def duration(video):
        if "broken" in video:
            raise ValueError("cannot be decoded")
        return 5.0

    stories, failures = manifest.read_manifest(path, lsmdc_target_s=10.0, clip_duration=duration)
    assert [(s.id, s.text) for s in stories] == [
        ("m_000", "Caption 0. Caption 1."),
        ("m_001", "Caption 2. Caption 3."),
        ("m_002", "Caption 4."),
    ]
    assert [Path(v).name for v in stories[0].videos] == ["0.mp4", "1.mp4"]
    assert [(f.id, f.reason) for f in failures] == [("n_clip_0", "cannot read clip: cannot be decoded")]
