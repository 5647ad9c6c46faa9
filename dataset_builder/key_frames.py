"""Key frames: the salient images of a story (paper section 3.3).

Frames are sampled at no more than ``fps`` frames per second, downscaled, and fingerprinted
with an imagehash perceptual hash. Walking in time order, a frame is kept when its
similarity to the *last kept* frame is at most ``max_similarity`` (similarity = 1 -
normalised Hamming distance of the hashes); the first frame is always kept. This sequential
rule gives about one frame per shot; comparing against *all* kept frames would drop far too
many (see the reference notes on imagecluster and imagededup).

Kept frames are returned as JPEG bytes, long side at most ``max_side`` pixels, with their
presentation timestamps in seconds.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Iterable, Sequence
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
    last = None
    for time, image in frames:
        h = hash_fn(_analysis_image(image), hash_size=params.hash_size)
        if last is None or similarity(h, last) <= params.max_similarity:
            kept.append(KeyFrame(float(time), to_jpeg(image, params.max_side, params.jpeg_quality)))
            last = h
    return kept


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


def extract_key_frames(
    path: str | Path, params: KeyFrameParams = KeyFrameParams(), offset: float = 0.0, duration: float | None = None
) -> list[KeyFrame]:
    """Key frames of one video file (times shifted by ``offset`` seconds)."""
    from torchcodec.decoders import VideoDecoder

    if duration is None:
        meta = VideoDecoder(str(path)).metadata
        duration = meta.duration_seconds
    return select_key_frames(decode_frames(path, sample_times(duration, params.fps), offset), params)


def frames_at(
    path: str | Path, times: Sequence[float], params: KeyFrameParams = KeyFrameParams(), offset: float = 0.0
) -> list[KeyFrame]:
    """Frames at given times (e.g. the released SoS ``Frames`` list), without any selection."""
    return [
        KeyFrame(t, to_jpeg(img, params.max_side, params.jpeg_quality))
        for t, img in decode_frames(path, [t - offset for t in times], offset)
    ]
