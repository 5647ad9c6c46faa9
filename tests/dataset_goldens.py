"""What the dataset goldens (tests/golden/bytesep, tests/golden/imagecluster, tests/golden/release_frames) were made
from: their random-weight checkpoints' seeds, their inputs, and the numbered test videos. Shared by
tests/test_paper_dataset_methods.py and by tests/golden/make_dataset_goldens.py, which ran the original code on
them (see tests/golden/README.md, "bytesep, imagecluster and the release's frames").
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

BYTESEP_SEED = 2
IMAGECLUSTER_SEED = 3
BYTESEP_RATE = 44_100
# bytesep's windows are 30 s; these tests use 0.2 s windows (a multiple of 4 samples, as bytesep requires): the
# model is fully convolutional, the stitching is the same arithmetic at any length, and a 30 s window of the 103 M
# parameter model takes minutes on a 2-core CPU.
BYTESEP_TEST_SEGMENT = 8_820
# one window (shorter than a segment: padded to one) and five windows (0.5 s padded to three segments, hop S/2)
BYTESEP_CASES = {"single_window": 6_615, "stitched": 22_050}
# Numbered test videos: each frame shows its number in the story (the clips' frames one after the other) as 10
# black or white bars, so a saved JPEG or a decoded picture says which frame it is.
FRAME_BITS = 10
FRAME_WIDTH, FRAME_HEIGHT = 80, 24
RELEASE_VIDEOS = {
    # name: (frame rate as ffmpeg takes it, frames, container and codec arguments)
    "ntsc_film.mp4": (
        "24000/1001",
        100,
        ["-c:v", "libx264", "-preset", "veryfast", "-crf", "10", "-pix_fmt", "yuv420p"],
    ),
    "pal.mp4": ("25", 60, ["-c:v", "libx264", "-preset", "veryfast", "-crf", "10", "-pix_fmt", "yuv420p"]),
    # an LSMDC story: two AVI clips (MPEG-4 part 2, as LSMDC's), joined by the release with ffmpeg's concat protocol
    "lsmdc_a.avi": ("25", 37, ["-c:v", "mpeg4", "-q:v", "2"]),
    "lsmdc_b.avi": ("25", 41, ["-c:v", "mpeg4", "-q:v", "2"]),
}
LSMDC_CLIPS = ("lsmdc_a.avi", "lsmdc_b.avi")


def bytesep_inputs() -> dict[str, np.ndarray]:
    """Stereo test signals at 44.1 kHz, (2, samples) float32: a chirp on the left, gated tones on the right, and
    noise in both, peak below 1."""
    out = {}
    for seed, (name, samples) in enumerate(BYTESEP_CASES.items()):
        t = np.arange(samples) / BYTESEP_RATE
        rng = np.random.default_rng(100 + seed)
        left = 0.3 * np.sin(2 * np.pi * (220.0 * t + 4000.0 * t**2))
        right = 0.2 * np.sin(2 * np.pi * 1250.0 * t) * (np.sin(2 * np.pi * 9.0 * t) > 0)
        noise = 0.02 * rng.standard_normal((2, samples))
        out[name] = (np.stack([left, right]) + noise).astype(np.float32)
    return out


def imagecluster_pictures() -> list[np.ndarray]:
    """Fifteen 160 x 90 RGB pictures in time order, uint8 (90, 160, 3): shots of 5, 4, 3, 2 and 1 frames, each a
    pattern with its own colours (a gradient, blue checks, a green disc, grey stripes, a yellow field) moved by a
    few pixels from frame to frame, with noise. On the random network of the golden imagecluster finds clusters
    of 6 (the gradient and the yellow field), 7 (the checks and the disc) and 2 (the stripes), so the release's
    rule keeps three frames, one per size."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:90, 0:160].astype(np.float32)
    stripes = 255.0 * ((y // 6) % 2)
    shots = [
        (5, lambda k: np.stack([x * 1.5 + 3 * k, 0.5 * y, 40 + 0 * x], -1)),
        (4, lambda k: np.stack([30 + 0 * x, 60 + 0 * x, 255.0 * (((x + 2 * k) // 16 + y // 16) % 2)], -1)),
        (3, lambda k: np.stack([0 * x, 220.0 * (np.hypot(x - 80 - 2 * k, y - 45) < 30), 0 * x + 90], -1)),
        (2, lambda k: np.stack([stripes, stripes, stripes], -1)),
        (1, lambda k: np.stack([0 * x + 250, 0 * x + 250, 0 * x + 20], -1)),
    ]
    pictures = []
    for count, pattern in shots:
        for frame in range(count):
            pictures.append(np.clip(pattern(frame) + rng.normal(0, 6, (90, 160, 3)), 0, 255).astype(np.uint8))
    return pictures


def numbered_frames(count: int, first: int = 0) -> np.ndarray:
    """``count`` gray frames numbered ``first``, ``first + 1``, ...: bit k of the number is bar k (white = 1)."""
    frames = np.zeros((count, FRAME_HEIGHT, FRAME_WIDTH), dtype=np.uint8)
    bar = FRAME_WIDTH // FRAME_BITS
    for i in range(count):
        for bit in range(FRAME_BITS):
            if (first + i) >> bit & 1:
                frames[i, :, bit * bar : (bit + 1) * bar] = 255
    return frames


def frame_number(picture: np.ndarray) -> int:
    """The number a decoded or JPEG picture of :func:`numbered_frames` shows (RGB or gray)."""
    gray = np.asarray(picture, dtype=np.float32)
    gray = gray.mean(axis=-1) if gray.ndim == 3 else gray
    height, width = gray.shape
    bar = width // FRAME_BITS
    rows = slice(height // 4, 3 * height // 4)  # away from the edges, where codecs smear
    return sum(
        1 << bit
        for bit in range(FRAME_BITS)
        if gray[rows, bit * bar + bar // 4 : (bit + 1) * bar - bar // 4].mean() > 127
    )


def write_release_videos(folder: Path) -> dict[str, Path]:
    """The numbered test videos (:data:`RELEASE_VIDEOS`), encoded with ffmpeg; the LSMDC clips number their frames
    in the story (the second clip goes on from the first's count)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, story_frames = {}, 0
    for name, (rate, count, codec) in RELEASE_VIDEOS.items():
        first = story_frames if name == LSMDC_CLIPS[1] else 0
        frames = numbered_frames(count, first)
        path = folder / name
        command = [
            "ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{FRAME_WIDTH}x{FRAME_HEIGHT}",
            "-r", rate, "-i", "pipe:0", "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={count}",
            "-map", "0:v", "-map", "1:a", "-shortest", *codec, "-c:a", "pcm_s16le" if name.endswith(".avi") else "aac",
            str(path),
        ]  # fmt: skip
        subprocess.run(command, input=frames.tobytes(), check=True)
        paths[name] = path
        if name == LSMDC_CLIPS[0]:
            story_frames = count
    return paths


__all__ = [
    "BYTESEP_CASES",
    "BYTESEP_RATE",
    "BYTESEP_SEED",
    "BYTESEP_TEST_SEGMENT",
    "IMAGECLUSTER_SEED",
    "LSMDC_CLIPS",
    "RELEASE_VIDEOS",
    "bytesep_inputs",
    "frame_number",
    "imagecluster_pictures",
    "numbered_frames",
    "write_release_videos",
]
