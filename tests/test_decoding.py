"""The pinned decoders read what the generator writes: torchcodec (audio and video), datasets.Audio; and the
package's one audio-file decoder (audio/decoding.py) reads what film and sound libraries hold: cover art, 5.1 and
7.1, 96 kHz, Opus and Vorbis in Ogg, WebM and Matroska, start offsets, truncated, empty and very long files."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf

from sound_of_story.dataset_builder.samples import FPS, SAMPLE_RATE


def test_torchcodec_decodes_clip_frames_at_timestamps(cmd_samples):
    from torchcodec.decoders import VideoDecoder

    folder, records = cmd_samples
    record = records[0]
    decoder = VideoDecoder(str(folder / record["files"]["video"]))
    assert decoder.metadata.num_frames == record["num_frames"]
    assert decoder.metadata.average_fps == FPS
    assert abs(decoder.metadata.duration_seconds - record["duration"]) <= 1 / FPS
    # One frame in the middle of each scene, by timestamp.
    mids = [(s["start"] + s["end"]) / 2 for s in record["scenes"]]
    batch = decoder.get_frames_played_at(mids)
    assert tuple(batch.data.shape) == (len(mids), 3, record["height"], record["width"])
    assert np.allclose(batch.pts_seconds.numpy(), np.floor(np.array(mids) * FPS) / FPS, atol=1e-6)
    # Scenes of different categories have different pictures.
    means = batch.data.float().mean(dim=(2, 3)).numpy()
    assert all(np.abs(a - b).max() > 3 for a, b in zip(means, means[1:]))


def test_torchcodec_decodes_clip_audio_with_resampling(cmd_samples):
    from torchcodec.decoders import AudioDecoder

    folder, records = cmd_samples
    record = records[0]
    native = AudioDecoder(str(folder / record["files"]["video"]))
    assert native.metadata.sample_rate == SAMPLE_RATE and native.metadata.num_channels == 2
    at16k = AudioDecoder(str(folder / record["files"]["video"]), sample_rate=16_000, num_channels=1).get_all_samples()
    assert at16k.sample_rate == 16_000 and at16k.data.shape[0] == 1
    assert abs(at16k.data.shape[1] / 16_000 - record["duration"]) <= 1 / FPS
    # A window inside the first dialogue line is louder than the background around it.
    line = record["dialogue"][0]
    x = at16k.data[0].numpy()
    inside = x[int(line["start"] * 16_000) : int(line["end"] * 16_000)]
    before = x[: int(line["start"] * 16_000)]  # the generator starts dialogue 0.5 s in at the earliest
    assert before.size >= 8_000
    assert np.sqrt(np.mean(inside**2)) > 1.5 * np.sqrt(np.mean(before**2))


def test_datasets_audio_decodes_a_generated_wav(cmd_samples):
    from datasets import Audio, Dataset

    folder, records = cmd_samples
    path = str(folder / records[0]["files"]["background"])
    expected, rate = sf.read(path, dtype="float32", always_2d=True)
    ds = Dataset.from_dict({"audio": [path]}).cast_column("audio", Audio())
    decoded = ds[0]["audio"]
    assert decoded["sampling_rate"] == rate == SAMPLE_RATE
    # datasets 5 downmixes to mono by the channel mean; the values are the file's.
    np.testing.assert_allclose(decoded["array"], expected.mean(axis=1), atol=1e-6)
    stereo = decoded.get_all_samples()
    np.testing.assert_allclose(stereo.data.numpy(), expected.T, atol=1e-6)
    resampled = Dataset.from_dict({"audio": [path]}).cast_column("audio", Audio(sampling_rate=16_000))[0]["audio"]
    assert resampled["sampling_rate"] == 16_000
    assert abs(len(resampled["array"]) - records[0]["num_samples"] * 16_000 / SAMPLE_RATE) <= 16


# ---------------------------------------------------------------------------------------------
# The one audio-file decoder (audio/decoding.py) on library-like files made here with ffmpeg
# ---------------------------------------------------------------------------------------------

LIBRARY_SECONDS = 4.0


def _ffmpeg(*args) -> None:
    import subprocess

    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *map(str, args)], check=True)


@pytest.fixture(scope="module")
def library(cmd_samples, tmp_path_factory):
    """Audio files as a sound library holds them, from a sample clip's mix (4 s), and the mix itself."""
    folder, records = cmd_samples
    record = records[0]
    d = tmp_path_factory.mktemp("library")
    n = round(LIBRARY_SECONDS * SAMPLE_RATE)
    bg, _ = sf.read(folder / record["files"]["background"], dtype="float32", always_2d=True)
    sp, _ = sf.read(folder / record["files"]["speech"], dtype="float32", always_2d=True)
    mix = (bg[:n] + sp[:n]).T
    sf.write(d / "mix.wav", mix.T, SAMPLE_RATE, subtype="FLOAT")
    _ffmpeg("-i", folder / record["files"]["video"], "-frames:v", 1, d / "cover.png")
    wav, cover = d / "mix.wav", d / "cover.png"
    art = ("-map", 0, "-map", 1, "-disposition:v", "attached_pic")
    _ffmpeg("-i", wav, "-i", cover, *art, "-c:a", "libmp3lame", "-c:v", "mjpeg", d / "cover.mp3")
    _ffmpeg("-i", wav, "-i", cover, *art, "-c:a", "aac", "-c:v", "png", d / "cover.m4a")
    _ffmpeg("-i", wav, "-ar", 96_000, "-c:a", "flac", d / "hires.flac")
    _ffmpeg("-i", wav, "-c:a", "libopus", d / "voice.opus")
    _ffmpeg("-i", wav, "-c:a", "libvorbis", d / "vorbis.ogg")
    _ffmpeg("-i", wav, "-c:a", "libopus", d / "opus.webm")
    _ffmpeg("-i", wav, "-c:a", "libvorbis", d / "vorbis.mka")
    _ffmpeg("-itsoffset", 1.5, "-i", wav, "-c:a", "flac", d / "offset.mka")
    _ffmpeg("-i", wav, "-c:a", "aac", "-movflags", "+faststart", d / "whole.m4a")
    whole = (d / "whole.m4a").read_bytes()
    (d / "partial.m4a").write_bytes(whole[: len(whole) // 2])
    (d / "empty.mp3").write_bytes(b"")
    # 5.1 and 7.1: every channel a different tone, so that each channel's weight in a downmix can be read back
    t = np.arange(SAMPLE_RATE * 2) / SAMPLE_RATE
    tones = np.stack([0.1 * np.sin(2 * np.pi * (150 + 70 * k) * t) for k in range(8)]).astype(np.float32)
    for layout, count in (("5.1", 6), ("5.1(side)", 6), ("7.1", 8)):
        (d / f"{layout}.f32").write_bytes(np.ascontiguousarray(tones[:count].T).tobytes())
        _ffmpeg("-f", "f32le", "-ar", SAMPLE_RATE, "-ch_layout", layout, "-i", d / f"{layout}.f32", "-c:a", "flac", d / f"{layout}.flac")  # fmt: skip
    loud = (np.full((6, SAMPLE_RATE), 0.9) * np.sign(np.sin(2 * np.pi * 100 * t[:SAMPLE_RATE]))).astype(np.float32)
    (d / "loud.f32").write_bytes(np.ascontiguousarray(loud.T).tobytes())
    _ffmpeg("-f", "f32le", "-ar", SAMPLE_RATE, "-ch_layout", "5.1", "-i", d / "loud.f32", "-c:a", "flac", d / "loud51.flac")  # fmt: skip
    return d, mix, tones


def test_decoding_equals_torchcodec_bit_for_bit(cmd_samples):
    from torchcodec.decoders import AudioDecoder

    from sound_of_story.audio.decoding import decode_audio_file

    folder, records = cmd_samples
    video = folder / records[0]["files"]["video"]
    decoded = decode_audio_file(video, origin=0.0)
    reference = AudioDecoder(str(video)).get_all_samples()
    assert decoded.sample_rate == reference.sample_rate and decoded.start == 0.0 and decoded.layout == ("FL", "FR")
    assert np.array_equal(decoded.samples, reference.data.numpy())


@pytest.mark.parametrize(
    ("name", "rate"),
    [("cover.mp3", SAMPLE_RATE), ("cover.m4a", SAMPLE_RATE), ("hires.flac", 96_000), ("voice.opus", 48_000),
     ("vorbis.ogg", SAMPLE_RATE), ("opus.webm", 48_000), ("vorbis.mka", SAMPLE_RATE)],
)  # fmt: skip
def test_library_formats_decode_to_their_sound(library, name, rate):
    from sound_of_story.audio import resample
    from sound_of_story.audio.decoding import decode_audio_file, probe_media

    d, mix, _ = library
    info = probe_media(d / name)
    assert info.video is None and info.attached_pictures == (1 if name.startswith("cover") else 0)
    decoded = decode_audio_file(d / name)
    assert decoded.sample_rate == rate and decoded.samples.shape[0] == 2 and not decoded.truncated
    assert decoded.duration == pytest.approx(LIBRARY_SECONDS, abs=0.06)
    # the same sound: correlation with the source mix at its best lag (codec delays) over 0.9
    x = resample(decoded.samples.mean(0), rate, 8_000, method="polyphase")
    y = resample(mix.mean(0), SAMPLE_RATE, 8_000, method="polyphase")
    n = min(x.size, y.size) - 400
    best = max(np.corrcoef(x[lag : lag + n], y[:n])[0, 1] for lag in range(0, 400, 2))
    assert best > 0.9, (name, best)


def test_a_start_offset_is_kept_on_the_clock_or_read_as_it_starts(library):
    from sound_of_story.audio.decoding import decode_audio_file

    d, mix, _ = library
    as_it_starts = decode_audio_file(d / "offset.mka")
    on_the_clock = decode_audio_file(d / "offset.mka", origin=0.0)
    assert as_it_starts.start == pytest.approx(1.5) and as_it_starts.duration == pytest.approx(
        LIBRARY_SECONDS, abs=0.01
    )
    pad = round(1.5 * SAMPLE_RATE)
    assert on_the_clock.samples.shape[1] == pytest.approx(pad + as_it_starts.samples.shape[1], abs=2)
    assert not on_the_clock.samples[:, : pad - 2].any()
    np.testing.assert_array_equal(on_the_clock.samples[:, -1000:], as_it_starts.samples[:, -1000:])
    later = decode_audio_file(d / "offset.mka", origin=2.5)  # a later origin trims
    np.testing.assert_allclose(
        later.samples[:, 1000:2000], as_it_starts.samples[:, round(SAMPLE_RATE) + 1000 : round(SAMPLE_RATE) + 2000]
    )


@pytest.mark.parametrize("layout", ["5.1", "5.1(side)", "7.1"])
def test_many_channels_downmix_with_the_standard_coefficients(library, layout):
    """ITU-R BS.775 (front 1, centre and surrounds -3 dB, LFE left out), equal to ffmpeg's own downmix."""
    from torchcodec.decoders import AudioDecoder

    from sound_of_story.audio.decoding import CHANNEL_LAYOUTS, DOWNMIX_LEVEL, decode_audio_file

    d, _, tones = library
    decoded = decode_audio_file(d / f"{layout}.flac", separate_centre=True)
    names = CHANNEL_LAYOUTS[layout]
    assert decoded.samples.shape[0] == 2 and decoded.source_layout == names and decoded.gain == 1.0
    weights = np.linalg.lstsq(tones[: len(names)].T, decoded.samples.T, rcond=None)[0]  # (channels, 2)
    expected = {"FL": (1, 0), "FR": (0, 1), "FC": (DOWNMIX_LEVEL,) * 2, "LFE": (0, 0)}
    for k, name in enumerate(names):
        left, right = expected.get(name, (DOWNMIX_LEVEL, 0) if name.endswith("L") else (0, DOWNMIX_LEVEL))
        assert weights[k] == pytest.approx([left, right], abs=1e-4), (name, weights[k])
    ffmpeg = AudioDecoder(str(d / f"{layout}.flac"), num_channels=2).get_all_samples().data.numpy()
    np.testing.assert_allclose(decoded.samples, ffmpeg, atol=1e-5)
    np.testing.assert_allclose(decoded.centre, tones[names.index("FC")], atol=1e-4)  # the centre channel alone
    assert decoded.centre_gain == pytest.approx(DOWNMIX_LEVEL)


def test_a_loud_downmix_is_scaled_never_clipped(library):
    from sound_of_story.audio.decoding import decode_audio_file

    d, _, _ = library
    decoded = decode_audio_file(d / "loud51.flac", separate_centre=True)
    # 0.9 in every channel: 0.9 * (1 + 2 * 0.7071) = 2.17 in each side of the downmix, scaled to a peak of 1
    assert decoded.gain == pytest.approx(1 / (0.9 * (1 + 2 * 0.70710678)), rel=1e-3)
    assert np.abs(decoded.samples).max() == pytest.approx(1.0, abs=1e-6)


def test_truncated_empty_missing_and_unreadable_files_are_named_failures(library, tmp_path):
    from sound_of_story.audio.decoding import (
        MediaFileError,
        MediaFileNotFoundError,
        TruncatedMediaError,
        decode_audio_file,
    )

    d, _, _ = library
    with pytest.raises(TruncatedMediaError, match=r"partial\.m4a: truncated file: it decodes to [\d.]+ s of audio but states 4\.0\d s") as exc:  # fmt: skip
        decode_audio_file(d / "partial.m4a")
    assert exc.value.decoded_seconds < LIBRARY_SECONDS - 1 and isinstance(exc.value, ValueError)
    partial = decode_audio_file(d / "partial.m4a", allow_truncated=True)
    assert partial.truncated and partial.duration == pytest.approx(exc.value.decoded_seconds, abs=0.01)
    with pytest.raises(MediaFileError, match=r"empty\.mp3: empty file \(0 bytes\)"):
        decode_audio_file(d / "empty.mp3")
    with pytest.raises(MediaFileNotFoundError, match="nowhere.flac: file not found") as missing:
        decode_audio_file(d / "nowhere.flac")
    assert isinstance(missing.value, FileNotFoundError)
    (tmp_path / "noise.mp3").write_bytes(b"this is a text file, not a sound\n" * 200)
    with pytest.raises(MediaFileError, match=r"noise\.mp3: cannot be decoded \(truncated or corrupt\?\)") as bad:
        decode_audio_file(tmp_path / "noise.mp3")
    assert ".cpp" not in str(bad.value)
    with pytest.raises(MediaFileError, match="URLs are not supported: download the file first"):
        decode_audio_file("https://example.com/sound.mp3")


def test_a_very_long_file_is_read_only_up_to_the_cap(tmp_path, monkeypatch):
    """Counted, not timed: the decoder reads ffmpeg's output up to the cap and no further, then stops ffmpeg while it
    still runs. ffmpeg writes into a pipe, which holds at most a few pages (64 KiB on Linux), and waits while it is
    full, so it can have decoded little more than what was read: 30 s of a three-hour file, not three hours."""
    import signal
    import subprocess

    from sound_of_story.audio.decoding import decode_audio_file

    class CountingReader:
        """ffmpeg's stdout, counting the bytes the decoder reads from it."""

        def __init__(self, raw):
            self.raw, self.bytes_read = raw, 0

        def read(self, size=-1):
            data = self.raw.read(size)
            self.bytes_read += len(data)
            return data

        def close(self):
            self.raw.close()

    decoders = []

    class RecordingPopen(subprocess.Popen):
        def __init__(self, args, *rest, **kwargs):
            super().__init__(args, *rest, **kwargs)
            if args[0] == "ffmpeg":
                self.stdout = CountingReader(self.stdout)
                decoders.append(self)

    # a WAV file that states three hours of 8 kHz 16-bit silence (sparse on disk: written in no time)
    rate, samples = 8_000, 3 * 3600 * 8_000
    long_file = tmp_path / "three_hours.wav"
    with open(long_file, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + 2 * samples) + b"WAVEfmt ")
        f.write(struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16) + b"data" + struct.pack("<I", 2 * samples))
        f.truncate(44 + 2 * samples)
    monkeypatch.setattr(subprocess, "Popen", RecordingPopen)  # the real ffprobe and ffmpeg run, ffmpeg recorded
    decoded = decode_audio_file(long_file, max_seconds=30.0)
    assert decoded.samples.shape == (1, 30 * rate) and not decoded.truncated and decoded.stated_end == 3 * 3600
    (ffmpeg,) = decoders  # one decoding pass
    assert ffmpeg.stdout.bytes_read == 30 * rate * 4  # 30 s of mono float32 read, not a byte more
    assert ffmpeg.returncode == -signal.SIGKILL  # stopped there, while it still had hours to decode


def test_bytes_decode_like_the_file(library):
    from sound_of_story.audio.decoding import MediaFileError, decode_audio_file

    d, _, _ = library
    from_bytes = decode_audio_file((d / "cover.m4a").read_bytes(), name="library/cover.m4a")
    np.testing.assert_array_equal(from_bytes.samples, decode_audio_file(d / "cover.m4a").samples)
    with pytest.raises(MediaFileError, match=r"^library/bad\.flac: (cannot be decoded|no audio stream)"):
        decode_audio_file(b"not audio at all", name="library/bad.flac")


def test_decoder_messages_leave_out_the_decoders_source_locations():
    from sound_of_story.audio.decoding import decoder_message

    raw = (
        "getFramesPlayedAt, /__w/torchcodec/torchcodec/meta-pytorch/torchcodec/src/torchcodec/_core/"
        "SingleStreamDecoder.cpp:896, frame pts is 0.000000; must be greater than or equal to 0.023000."
    )
    assert decoder_message(RuntimeError(raw)) == "frame pts is 0.000000; must be greater than or equal to 0.023000."
    ffprobe = (
        "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55b859f67180] moov atom not found\nInvalid data found when processing input"
    )
    assert decoder_message(ffprobe) == "moov atom not found Invalid data found when processing input"
