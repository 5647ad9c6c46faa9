"""``sound-of-story recommend --video``: the key frames of a video made here with ffmpeg (known cuts), read in bounded
memory, and the videos it refuses before decoding a picture (too long, frames too large or too wide, too many key
frames).

The pictures are blocks of grey levels whose left-right order the negative reverses, so the key-frame step's
difference hash of a shot and of its negative disagree in every bit: each cut is a key frame, and a video that
alternates them has a key frame at every sampled frame.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sound_of_story.app import recommend_command
from sound_of_story.app.cli import main
from sound_of_story.app.frame_reader import MAX_FRAME_PIXELS, fit_frame
from sound_of_story.app.recommend_command import MAX_VIDEO_KEY_FRAMES, MAX_VIDEO_SECONDS, _video_key_frames
from sound_of_story.dataset_builder import key_frames
from sound_of_story.recommendation import MAX_STORY_SCENES

SIDE = 224  # the retrieval frame side (CLIP's)


def _blocks(seed: int) -> np.ndarray:
    """9 x 8 grey blocks (the difference hash's grid), neighbours in a row at least 25 levels apart."""
    rng = np.random.default_rng(seed)
    rows = [rng.permutation(9) * 25 + 28 for _ in range(8)]
    return np.stack(rows).astype(np.uint8)


LOSSLESS = ("-qp", "0", "-pix_fmt", "yuv444p")  # the pictures' grey levels exactly
SMALL = ("-pix_fmt", "yuv420p")  # what most videos are: less to decode


def _video(
    path: Path, pictures: list[np.ndarray], size: tuple[int, int], rate: float, encoding: tuple = LOSSLESS
) -> Path:
    """An H.264 video of ``pictures`` (grey, each one frame at ``rate``), scaled to ``size`` by repeating pixels."""
    height, width = pictures[0].shape
    raw = np.ascontiguousarray(np.stack([np.repeat(p[..., None], 3, axis=-1) for p in pictures]))
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
         "-r", str(rate), "-i", "-", "-vf", f"scale={size[0]}:{size[1]}:flags=neighbor", "-c:v", "libx264",
         "-preset", "ultrafast", *encoding, str(path)],
        input=raw.tobytes(), check=True,
    )  # fmt: skip
    return path


def _shown(picture: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """``picture`` as the video shows it at ``size``, read as a query frame is (shorter side 224)."""
    return fit_frame(Image.fromarray(picture).resize(size, Image.Resampling.NEAREST).convert("RGB"), SIDE)


@pytest.fixture
def counted_decodes(monkeypatch) -> list[list[float]]:
    """The times of each full-size decode of the key-frame step (the real decoder, counted)."""
    calls: list[list[float]] = []
    decode = key_frames.decode_frames

    def counting(path, times, *args, **kwargs):
        calls.append([float(t) for t in times])
        return decode(path, times, *args, **kwargs)

    monkeypatch.setattr(key_frames, "decode_frames", counting)
    return calls


def test_video_key_frames_are_its_cuts_read_at_the_model_size(tmp_path, counted_decodes):
    """Three shots of 1.5 s (A, its negative, A again) at 24 fps: key frames at 0, 1.5 and 3 s, the shots' pictures
    shrunk to 224 pixels on the shorter side, the same frames the dataset builder's key-frame step keeps."""
    shot = _blocks(1)
    pictures = [shot] * 36 + [255 - shot] * 36 + [shot] * 36
    size = (720, 400)
    video = _video(tmp_path / "cuts.mp4", pictures, size, 24)

    frames, times, length = _video_key_frames(video, SIDE)

    assert times == [0.0, 1.5, 3.0] and length == pytest.approx(4.5)
    assert counted_decodes == [[0.0, 1.5, 3.0]]  # the key frames alone are decoded at full size
    assert [f.size for f in frames] == [(403, 224)] * 3
    for frame, picture in zip(frames, [shot, 255 - shot, shot]):
        got = np.asarray(frame, dtype=np.float64)
        assert np.abs(got - np.asarray(_shown(picture, size), dtype=np.float64)).mean() < 4  # JPEG's loss
        assert np.abs(got - np.asarray(_shown(255 - picture, size), dtype=np.float64)).mean() > 40
    builder = key_frames.extract_key_frames(video)
    assert [k.time for k in builder] == times


def test_decoding_batches_hold_at_most_256_mib_of_pictures():
    assert key_frames.DECODE_BATCH_BYTES == 256 * 2**20
    assert [key_frames.decode_batch_frames(w, h) for w, h in ((1920, 1080), (3840, 2160), (7680, 4320))] == [32, 10, 2]
    assert key_frames.decode_batch_frames(16_000, 9_000) == 1  # one frame at least
    assert MAX_VIDEO_KEY_FRAMES == MAX_STORY_SCENES


PEAK_MEMORY_SCRIPT = """
import json, re, sys
from pathlib import Path
from sound_of_story.app.recommend_command import _video_key_frames

def peak_mib():
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024

_video_key_frames(Path(sys.argv[1]), 224)  # imports and loads the decoders' libraries
Path("/proc/self/clear_refs").write_text("5")  # the peak resident size starts again from the current one
before = peak_mib()
frames, times, _ = _video_key_frames(Path(sys.argv[2]), 224)
print(json.dumps({"growth_mib": peak_mib() - before, "times": times, "sizes": sorted({f.size for f in frames})}))
"""


def test_a_4k_video_with_20_key_frames_is_read_in_bounded_memory(tmp_path):
    """20 key frames of a 4K video (23.7 MiB a decoded frame): the old reader decoded up to 32 at once at full size,
    with the next batch decoded before the last was freed (567 MiB more at the peak for these 20, measured); now a
    batch holds at most `DECODE_BATCH_BYTES` of pictures (10 of these), one batch at a time (334 MiB measured)."""
    shot = _blocks(2)
    warm = _video(tmp_path / "warm.mp4", [shot, 255 - shot], (720, 400), 10)
    video = _video(tmp_path / "4k.mp4", [shot, 255 - shot] * 10, (3840, 2160), 10, SMALL)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PEAK_MEMORY_SCRIPT), str(warm), str(video)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["times"] == pytest.approx([k / 10 for k in range(20)]) and got["sizes"] == [[398, 224]]
    frame_mib = 3840 * 2160 * 3 / 2**20
    # one batch (10 frames, 237 MiB), and up to 6 frames more: the decoder's reference and output pictures and the
    # one being shrunk
    assert got["growth_mib"] < 16 * frame_mib + 32, got


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        (
            "long.mkv",
            ["-f", "lavfi", "-i", "color=c=gray:s=16x16:r=1", "-t", str(MAX_VIDEO_SECONDS + 1), "-c:v", "libx264"],
            rf"is 601 s long, more than the {MAX_VIDEO_SECONDS:g} s a video query may be",
        ),
        (
            "huge.mkv",
            ["-f", "lavfi", "-i", "color=c=gray:s=7696x4320:r=1", "-t", "1", "-c:v", "mjpeg", "-pix_fmt", "yuvj420p"],
            rf"declares 7696 x 4320 pixels, more than the {MAX_FRAME_PIXELS:,} a frame may have",
        ),
        (
            "wide.mkv",
            ["-f", "lavfi", "-i", "color=c=gray:s=400x80:r=1", "-t", "1", "-c:v", "libx264"],
            "is 400 x 80 pixels: frames may be at most 4 times longer than wide",
        ),
    ],
)
def test_a_video_over_the_caps_is_refused_before_the_index_loads(tmp_path, capsys, name, make, message):
    """Exit code 2 with the file and the limit named, from the stream's header alone: the index named here does not
    exist, and the video is refused first."""
    video = tmp_path / name
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *make, str(video)], check=True)
    with pytest.raises(SystemExit) as exit_info:
        main(["recommend", "--index", str(tmp_path / "no-index"), "--video", str(video)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert f"--video {str(video)!r}" in err and re.search(message, err), err


def test_a_video_with_more_key_frames_than_story_scenes_is_refused_before_decoding_them(tmp_path, counted_decodes):
    """11 s alternating a shot and its negative at 10 fps: 110 key frames, more than story mode's 100 scenes, known
    from the scan's small grey pictures; no frame is decoded at full size."""
    shot = _blocks(3)
    video = _video(tmp_path / "flicker.mp4", [shot, 255 - shot] * 55, (72, 40), 10)
    with pytest.raises(ValueError, match=rf"has 110 key frames \(scenes\), more than the {MAX_STORY_SCENES} story"):
        _video_key_frames(video, SIDE)
    assert counted_decodes == []
    assert recommend_command.MAX_VIDEO_KEY_FRAMES == 100
