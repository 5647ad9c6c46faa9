"""Key frames: the salient images of a story (paper section 3.3).

Frames are sampled at no more than ``fps`` frames per second, downscaled, and fingerprinted
with an imagehash perceptual hash. Walking in time order, a frame is kept when its
similarity to the *last kept* frame is at most ``max_similarity`` (similarity = 1 -
normalised Hamming distance of the hashes); the first frame is always kept. This sequential
rule gives about one frame per shot; comparing against *all* kept frames would drop far too
many (see the reference notes on imagecluster and imagededup).

Kept frames are returned as JPEG bytes, long side at most ``max_side`` pixels, with their
presentation timestamps in seconds.

The build's path (:func:`scan_video` + :func:`key_frames_from_scan`) lets one ffmpeg process
do the sampling and the downscaling while it decodes (``fps`` filter rounding up, so slot
``k`` holds the frame shown at ``k / fps``, exactly what :func:`decode_frames` picks; ``scale``
to the analysis width; ``gray``), so Python only hashes small gray pictures, and decodes
full-size pictures for the kept frames alone. It can run in a background thread beside the
audio work. Its hashes can differ from the PIL path's in a bit here and there (ffmpeg's and
PIL's scalers round differently); the kept frames are the same on the sample clips (tested).
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

HASHES: dict[str, Callable[..., imagehash.ImageHash]] = {
    "dhash": imagehash.dhash,
    "phash": imagehash.phash,
    "whash": imagehash.whash,
    "ahash": imagehash.average_hash,
}
ANALYSIS_WIDTH = 160  # pixels: hashes look at 8x8 to 32x32 anyway
DECODE_BATCH = 32  # frames decoded at once: bounded memory at any resolution


@dataclasses.dataclass(frozen=True)
class KeyFrameParams:
    fps: float = 10.0
    hash: str = "dhash"
    hash_size: int = 8
    max_similarity: float = 0.5
    max_side: int = 512
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.hash not in HASHES:
            raise ValueError(f"hash must be one of {', '.join(HASHES)}, got {self.hash!r}")
        if not 0 < self.fps <= 10:
            raise ValueError(
                f"key-frame sampling fps must be in (0, 10] (the paper samples at most 10 fps), got {self.fps}"
            )
        if not 0.0 <= self.max_similarity <= 1.0:
            raise ValueError(f"max_similarity must be in [0, 1], got {self.max_similarity}")


@dataclasses.dataclass(frozen=True)
class KeyFrame:
    time: float  # seconds from the start of the story
    jpeg: bytes


def similarity(a: imagehash.ImageHash, b: imagehash.ImageHash) -> float:
    """1 - normalised Hamming distance between two hashes of the same size."""
    return 1.0 - (a - b) / a.hash.size


def _analysis_image(image: Image.Image) -> Image.Image:
    if image.width <= ANALYSIS_WIDTH:
        return image
    return image.resize(
        (ANALYSIS_WIDTH, max(1, round(image.height * ANALYSIS_WIDTH / image.width))), Image.Resampling.BILINEAR
    )


def to_jpeg(image: Image.Image, max_side: int, quality: int) -> bytes:
    """JPEG bytes of ``image`` with its long side at most ``max_side`` pixels."""
    scale = max_side / max(image.size)
    if scale < 1:
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS
        )
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def select_key_frames(
    frames: Iterable[tuple[float, Image.Image]], params: KeyFrameParams = KeyFrameParams()
) -> list[KeyFrame]:
    """Apply the sequential similarity rule to ``(time, image)`` pairs in time order."""
    hash_fn = HASHES[params.hash]
    kept: list[KeyFrame] = []
    pending: list[tuple[float, Image.Image]] = []

    def hashed() -> Iterator[imagehash.ImageHash]:
        for time, image in frames:
            pending.append((time, image))
            yield hash_fn(_analysis_image(image), hash_size=params.hash_size)

    for keep in _sequential_rule(hashed(), params.max_similarity):
        time, image = pending.pop()
        if keep:
            kept.append(KeyFrame(float(time), to_jpeg(image, params.max_side, params.jpeg_quality)))
    return kept


def _sequential_rule(hashes: Iterable[imagehash.ImageHash], max_similarity: float) -> Iterator[bool]:
    """For each hash in time order: is it kept (at most ``max_similarity`` like the last kept one)?"""
    last = None
    for h in hashes:
        keep = last is None or similarity(h, last) <= max_similarity
        if keep:
            last = h
        yield keep


def sample_times(duration: float, fps: float) -> np.ndarray:
    """Times ``k / fps`` for k = 0, 1, ... strictly before ``duration`` (integer steps, no drift)."""
    count = int(np.ceil(duration * fps - 1e-9))
    return np.arange(max(count, 0)) / fps


def decode_frames(
    path: str | Path, times: Sequence[float], offset: float = 0.0
) -> Iterable[tuple[float, Image.Image]]:
    """Decode the frames shown at ``times`` (seconds) of a video, in batches; yields (offset + t, image)."""
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(
        str(path), seek_mode="exact", dimension_order="NHWC"
    )  # HWC rows are what PIL reads: no copy per frame
    end = decoder.metadata.end_stream_seconds or decoder.metadata.duration_seconds
    times = [t for t in times if t < end]
    for i in range(0, len(times), DECODE_BATCH):
        batch = decoder.get_frames_played_at(times[i : i + DECODE_BATCH])
        for t, frame in zip(times[i : i + DECODE_BATCH], batch.data):
            yield offset + float(t), Image.fromarray(frame.numpy())


@dataclasses.dataclass(frozen=True)
class VideoScan:
    """The perceptual hashes of a video's frames shown at ``k / fps`` (k = 0, 1, ...), from :func:`scan_video`."""

    path: str
    fps: float
    hashes: list[imagehash.ImageHash]
    end: float  # seconds: the end of the video stream; no frame is sampled at or after it
    seconds: float  # wall time the scan took


def _analysis_size(width: int, height: int) -> tuple[int, int]:
    """What :func:`_analysis_image` makes of a ``width`` x ``height`` picture."""
    if width <= ANALYSIS_WIDTH:
        return width, height
    return ANALYSIS_WIDTH, max(1, round(height * ANALYSIS_WIDTH / width))


def scan_video(path: str | Path, params: KeyFrameParams = KeyFrameParams(), threads: int = 1) -> VideoScan:
    """Hash the frames shown at ``k / params.fps`` in one ffmpeg pass that also samples and downscales.

    ``threads``: ffmpeg's decoding threads (the build gives it the worker's share of the cores).
    Raises :class:`ValueError` naming the file when ffmpeg fails.
    """
    import time

    from torchcodec.decoders import VideoDecoder

    start = time.perf_counter()
    try:
        meta = VideoDecoder(str(path), seek_mode="approximate").metadata  # header only: no scan of the file
    except Exception as err:  # noqa: BLE001 - torchcodec raises several types for bad input
        raise ValueError(f"{path}: the video stream cannot be opened: {err}") from err
    width, height = _analysis_size(meta.width, meta.height)
    end = meta.end_stream_seconds or meta.duration_seconds or 0.0
    command = [
        "ffmpeg", "-v", "error", "-nostdin", "-threads", str(max(threads, 1)),
        "-copyts", "-noautorotate",  # the stream's own timestamps and pixels, as torchcodec sees them
        "-i", str(path), "-map", "0:v:0", "-an", "-sn", "-dn",
        # round=up: slot k holds the last frame whose pts <= k / fps (the frame shown then);
        # start_time=0: slots count from 0 s, before the first frame too (it fills them)
        "-vf", f"fps=fps={params.fps!r}:round=up:start_time=0,scale={width}:{height}:flags=bilinear,format=gray",
        "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1",
    ]  # fmt: skip
    hash_fn, size = HASHES[params.hash], width * height
    hashes: list[imagehash.ImageHash] = []
    # ffmpeg's messages go to a file: a damaged video can fill a stderr pipe that nobody reads until the end
    with tempfile.TemporaryFile() as log, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log) as proc:
        assert proc.stdout is not None
        while len(picture := proc.stdout.read(size)) == size:
            hashes.append(hash_fn(Image.frombuffer("L", (width, height), picture), hash_size=params.hash_size))
        proc.stdout.read()  # whatever is left, so that ffmpeg is not stuck writing
        proc.wait()
        log.seek(0)
        error = log.read().decode(errors="replace").strip()
    if proc.returncode:
        raise ValueError(f"{path}: ffmpeg could not decode the video for key frames: {error[-500:]}")
    return VideoScan(str(path), params.fps, hashes, float(end), time.perf_counter() - start)


def key_frames_from_scans(
    scans: Sequence[VideoScan],
    params: KeyFrameParams = KeyFrameParams(),
    offsets: Sequence[float] | None = None,
    durations: Sequence[float | None] | None = None,
) -> list[KeyFrame]:
    """Key frames of scanned clips played one after the other: the sequential rule on their hashes as one
    stream (a clip's first frame is compared with the last kept frame before it), then full-size pictures
    of the kept frames only.

    ``offsets``: each clip's start in the story (seconds, default 0); ``durations``: sample each clip
    only before this many seconds (its audio length in a story; default the whole video). Gives the same
    key frames as ``select_key_frames(decode_frames(...))`` up to the scalers' rounding.
    """
    offsets = [0.0] * len(scans) if offsets is None else offsets
    durations = [None] * len(scans) if durations is None else durations
    stream: list[tuple[int, float]] = []  # (clip, time in the clip) of each hash, in story order
    hashes: list[imagehash.ImageHash] = []
    for clip, (scan, duration) in enumerate(zip(scans, durations)):
        times = sample_times(scan.end if duration is None else duration, params.fps)
        times = times[times < scan.end][: len(scan.hashes)]
        stream.extend((clip, float(t)) for t in times)
        hashes.extend(scan.hashes[: len(times)])
    kept = [where for where, keep in zip(stream, _sequential_rule(hashes, params.max_similarity)) if keep]
    frames: list[KeyFrame] = []
    for clip, scan in enumerate(scans):
        times = [t for c, t in kept if c == clip]
        frames.extend(
            KeyFrame(t, to_jpeg(image, params.max_side, params.jpeg_quality))
            for t, image in decode_frames(scan.path, times, offsets[clip])
        )
    return frames


def extract_key_frames(
    path: str | Path, params: KeyFrameParams = KeyFrameParams(), offset: float = 0.0, duration: float | None = None
) -> list[KeyFrame]:
    """Key frames of one video file (times shifted by ``offset`` seconds)."""
    return key_frames_from_scans([scan_video(path, params)], params, [offset], [duration])


def frames_at(
    path: str | Path, times: Sequence[float], params: KeyFrameParams = KeyFrameParams(), offset: float = 0.0
) -> list[KeyFrame]:
    """Frames at given times (e.g. the released SoS ``Frames`` list), without any selection."""
    return [
        KeyFrame(t, to_jpeg(img, params.max_side, params.jpeg_quality))
        for t, img in decode_frames(path, [t - offset for t in times], offset)
    ]
