"""The build's key-frame path (one ffmpeg pass that samples, downscales and hashes, then full-size
pictures of the kept frames only) against the reference path (every sampled frame decoded full
size by torchcodec and hashed through PIL)."""

from __future__ import annotations

import pytest

from sound_of_story.dataset_builder import key_frames


def _reference(video, params, duration=None):
    from torchcodec.decoders import VideoDecoder

    if duration is None:
        duration = VideoDecoder(str(video)).metadata.duration_seconds
    return key_frames.select_key_frames(
        key_frames.decode_frames(video, key_frames.sample_times(duration, params.fps)), params
    )


def test_scan_samples_the_frame_shown_at_each_time(cmd_samples):
    """ffmpeg's fps filter (round=up) gives one hash per sampled time, of the very frame shown then: at
    each cut (a sampled time, 3 fps on cuts every 3 s) the new shot, not the frame one 24 fps step before."""
    folder, records = cmd_samples
    record = records[0]
    video = folder / record["files"]["video"]
    params = key_frames.KeyFrameParams(fps=3.0)
    scan = key_frames.scan_video(video, params)
    times = list(key_frames.sample_times(scan.end, params.fps))
    assert len(scan.hashes) == len(times) > 0

    def hashes_at(ts):
        return [
            key_frames.HASHES[params.hash](key_frames._analysis_image(im))
            for _, im in key_frames.decode_frames(video, ts)
        ]

    exact, before = hashes_at(times), hashes_at([max(t - 1 / 24, 0.0) for t in times])
    close = [key_frames.similarity(a, b) for a, b in zip(scan.hashes, exact)]
    # the scalers round differently: a few bits of 64 (more in the low-contrast shots of the sample clips)
    assert min(close) >= 0.8 and sum(close) / len(close) >= 0.95, close
    cuts = [times.index(t) for t in times if any(abs(t - c) < 1e-6 for c in record["cuts"])]
    assert cuts
    for i in cuts:
        assert key_frames.similarity(scan.hashes[i], exact[i]) > key_frames.similarity(scan.hashes[i], before[i]) + 0.3


@pytest.mark.parametrize("fps", [10.0, 4.0])
def test_default_hash_keeps_the_same_frames_as_the_reference_path(cmd_samples, lsmdc_samples, fps):
    params = key_frames.KeyFrameParams(fps=fps)
    for folder, records in (cmd_samples, lsmdc_samples):
        for record in records:
            video = folder / record["files"]["video"]
            fast = key_frames.extract_key_frames(video, params)
            slow = _reference(video, params)
            assert [f.time for f in fast] == [f.time for f in slow], video
            assert [f.jpeg for f in fast] == [f.jpeg for f in slow]  # the same full-size pictures


def test_clips_of_one_story_are_one_stream_of_hashes(cmd_samples):
    """As in the build: the second clip's first frame is compared with the last key frame of the first
    clip, and times are shifted by each clip's offset."""
    folder, records = cmd_samples
    video = folder / records[0]["files"]["video"]
    params = key_frames.KeyFrameParams()
    scan = key_frames.scan_video(video, params)
    one = key_frames.key_frames_from_scans([scan], params)
    two = key_frames.key_frames_from_scans([scan, scan], params, offsets=[0.0, 100.0], durations=[None, None])
    # the same clip again: its first frame differs from the last kept one unless the clip starts as it ends
    assert [f.time for f in two[: len(one)]] == [f.time for f in one]
    assert all(f.time >= 100.0 for f in two[len(one) :])
    reference = key_frames.select_key_frames(
        [(t, image) for t, image in key_frames.decode_frames(video, list(key_frames.sample_times(scan.end, 10.0)))]
        + [
            (t, image)
            for t, image in key_frames.decode_frames(video, list(key_frames.sample_times(scan.end, 10.0)), 100.0)
        ],
        params,
    )
    assert [f.time for f in two] == [f.time for f in reference]
    short = key_frames.key_frames_from_scans([scan], params, durations=[5.0])  # the audio ends before the video
    assert [f.time for f in short] == [f.time for f in one if f.time < 5.0]


def test_a_corrupt_video_is_reported_by_name(tmp_path, cmd_samples):
    folder, records = cmd_samples
    video = folder / records[0]["files"]["video"]
    broken = tmp_path / "broken.mp4"
    data = video.read_bytes()
    broken.write_bytes(data[: len(data) // 3])  # header kept, most of the frames gone
    try:
        scan = key_frames.scan_video(broken)
    except ValueError as err:
        assert str(broken) in str(err)
    else:  # ffmpeg decodes what is there: fewer hashes than the header's length promises, never more
        assert len(scan.hashes) < len(key_frames.sample_times(scan.end, 10.0))
