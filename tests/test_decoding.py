"""The pinned decoders read what the generator writes: torchcodec (audio and video), datasets.Audio."""

from __future__ import annotations

import numpy as np
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
