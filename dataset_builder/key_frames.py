"""Key frames: the salient images of a story (paper section 3.3).

Two methods, chosen by ``KeyFrameParams.method`` (``--key-frames``):

* ``hash`` (the default, below): a perceptual hash of each sampled frame, a frame kept when its similarity to the
  last kept frame is at most ``max_similarity``. No weights, about one frame per shot, and the frames' pictures are
  hashed small and gray while the video decodes, so it costs little beyond the decoding.
* ``imagecluster``: what the paper did (:mod:`.image_clusters`): VGG16 ``fc2`` fingerprints of the frames the
  release's OpenCV loop sampled, imagecluster's average-linkage clusters cut at ``(1 - max_similarity)`` times the
  story's largest fingerprint distance, and one frame per distinct cluster size. ``max_similarity`` (0.5, the
  paper's value) is that relative cut here, not an absolute similarity to the last kept frame. A VGG16 forward per
  sampled frame (about 15 GFLOPs; a 150 s story at 10 fps has 1,500, minutes of CPU time per story).

The default stays ``hash``: it needs no weights and runs at decoding speed, and its keep-or-drop decision is
local in time, so every shot gets a frame; ``imagecluster`` reproduces the paper's selection.

A story of the released metadata lists its frames by name (``frameH-MM-SS.cc.jpg``: the time of a frame on
OpenCV's clock, frame count over the container's frame rate, to a hundredth of a second): :func:`release_frames`
takes frame ``round(t * fps)`` of the story's frames (its clips' frames one after the other, as the release's
joined file holds them), which is the frame the release saved.

The ``hash`` method in detail: frames are sampled at no more than ``fps`` frames per second, downscaled, and fingerprinted
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

Times are on the video's own clock: 0 s is its first frame, whatever timestamp the container gives it (an
MPEG-TS or DVD stream starts at 0.5-1.5 s, a Matroska one a few ms in), so that the audio, decoded from that
same frame on (:mod:`sound_of_story.audio.decoding`), and the key frames share one clock. The stream is the
file's video, never an attached picture (cover art). Pictures are stored at their display aspect ratio: an
anamorphic frame (720x576 with square-pixel ratio 16:15 or 64:45) is stretched as ffmpeg's players show it.
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

from sound_of_story.audio.decoding import VideoStreamInfo, decoder_message, ffmpeg_input, probe_media

HASHES: dict[str, Callable[..., imagehash.ImageHash]] = {
    "dhash": imagehash.dhash,
    "phash": imagehash.phash,
    "whash": imagehash.whash,
    "ahash": imagehash.average_hash,
}
ANALYSIS_WIDTH = 160  # pixels: hashes look at 8x8 to 32x32 anyway
DECODE_BATCH = 32  # frames decoded at once (at most: see decode_batch_frames)
# ... and at most this many bytes of decoded RGB pictures (but one frame at least): 32 frames of 1080p fit, 10 of 4K,
# 2 of 8K, so that the memory of decoding is bounded at any resolution
DECODE_BATCH_BYTES = 256 * 2**20


KEY_FRAME_METHODS = ("hash", "imagecluster")
DEFAULT_METHOD = "hash"


@dataclasses.dataclass(frozen=True)
class KeyFrameParams:
    fps: float = 10.0
    hash: str = "dhash"
    hash_size: int = 8
    # hash: keep a frame when its similarity to the last kept one is at most this; imagecluster: its ``sim``, the
    # dendrogram cut at (1 - max_similarity) x the story's largest fingerprint distance
    max_similarity: float = 0.5
    max_side: int = 512
    jpeg_quality: int = 90
    method: str = DEFAULT_METHOD
    # imagecluster: VGG16 weights (a file, or torchvision's id "IMAGENET1K_V1") and the input they expect
    vgg16_weights: str | None = None
    vgg16_input: str = "auto"  # "auto": as the weights file says (Keras' converted: caffe; torchvision's: torchvision)

    # fields that enter a build's cache key only with their method (ProcessingParams.to_json), so that the keys of
    # the default method's builds stay what they were before imagecluster existed
    METHOD_ONLY_FIELDS = {"method": "imagecluster", "vgg16_weights": "imagecluster", "vgg16_input": "imagecluster"}

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        for field, method in self.METHOD_ONLY_FIELDS.items():
            if self.method != method:
                del data[field]
        return data

    def __post_init__(self) -> None:
        from .image_clusters import VGG16_INPUTS

        if self.method not in KEY_FRAME_METHODS:
            raise ValueError(f"key-frame method must be one of {', '.join(KEY_FRAME_METHODS)}, got {self.method!r}")
        if self.method == "imagecluster" and not self.vgg16_weights:
            raise ValueError(
                "the imagecluster key frames need VGG16 weights (--vgg16-weights): a file converted from Keras' "
                "vgg16_weights_tf_dim_ordering_tf_kernels.h5 with `sound-of-story convert-vgg16` (the release's "
                "network), or IMAGENET1K_V1 (torchvision's, a different network)"
            )
        if self.vgg16_input not in VGG16_INPUTS:
            raise ValueError(f"VGG16 input must be one of {', '.join(VGG16_INPUTS)}, got {self.vgg16_input!r}")
        if self.hash not in HASHES:
            raise ValueError(f"hash must be one of {', '.join(HASHES)}, got {self.hash!r}")
        if not 0 < self.fps <= 10:
            raise ValueError(
                f"key-frame sampling fps must be in (0, 10] (the release scripts sample at most 10 fps: extract_frames.py, min(fps, 10)), got {self.fps}"
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


def to_jpeg(image: Image.Image, max_side: int, quality: int, display_size: tuple[int, int] | None = None) -> bytes:
    """JPEG bytes of ``image`` with its long side at most ``max_side`` pixels.

    ``display_size``: the (width, height) the picture is shown at when its pixels are not square; the picture
    is stretched to that aspect ratio in the same resize.
    """
    width, height = display_size if display_size is not None else image.size
    scale = min(max_side / max(width, height), 1.0)
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    if target != image.size:
        image = image.resize(target, Image.Resampling.LANCZOS)
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


def decode_batch_frames(width: int, height: int) -> int:
    """How many ``width`` x ``height`` frames are decoded at once: `DECODE_BATCH`, fewer when their RGB pictures
    would take more than `DECODE_BATCH_BYTES`, and one at least."""
    return max(1, min(DECODE_BATCH, DECODE_BATCH_BYTES // (3 * width * height)))


def _display(video: VideoStreamInfo | None, image: Image.Image) -> tuple[int, int] | None:
    """The size ``image`` is shown at (None: as it is, square pixels)."""
    return None if video is None or video.pixel_aspect == 1 else video.display_size_of(image.size)


def video_stream(path: str | Path) -> VideoStreamInfo:
    """The video stream of ``path`` (never an attached picture); ``ValueError`` naming the file when it has none."""
    video = probe_media(path).video
    if video is None:
        raise ValueError(f"{path}: no video stream")
    return video


def _frame_decoder(path: str | Path, video: VideoStreamInfo):
    from torchcodec.decoders import VideoDecoder

    # HWC rows are what PIL reads: no copy per frame
    try:
        return VideoDecoder(ffmpeg_input(path), stream_index=video.index, seek_mode="exact", dimension_order="NHWC")
    except Exception:  # noqa: BLE001 - a cut file defeats the exact scan; pts-based access works without it
        return VideoDecoder(
            ffmpeg_input(path), stream_index=video.index, seek_mode="approximate", dimension_order="NHWC"
        )


def decode_frames(
    path: str | Path, times: Sequence[float], offset: float = 0.0, video: VideoStreamInfo | None = None
) -> Iterable[tuple[float, Image.Image]]:
    """Decode the frames shown at ``times`` (seconds from the first frame) of a video, in batches; yields
    (offset + t, image) with the picture as stored (see :func:`to_jpeg` for its display aspect ratio).

    ``video``: the stream (:func:`video_stream`) when the caller has probed it. Raises ``ValueError`` naming the
    file when the stream cannot be decoded.
    """
    video = video_stream(path) if video is None else video
    try:
        decoder = _frame_decoder(path, video)
        meta = decoder.metadata
        first = meta.begin_stream_seconds if meta.begin_stream_seconds is not None else video.start
        end = meta.end_stream_seconds or ((meta.duration_seconds or 0.0) + video.start)
        times = [t for t in times if video.start + t < end]
        step = decode_batch_frames(video.width, video.height)
        for i in range(0, len(times), step):
            batch = decoder.get_frames_played_at([max(video.start + t, first) for t in times[i : i + step]])
            for t, frame in zip(times[i : i + step], batch.data):
                yield offset + float(t), Image.fromarray(frame.numpy())
            batch = frame = None  # freed before the next batch is decoded: one batch in memory at a time
    except (RuntimeError, IndexError, ValueError) as err:  # torchcodec's errors for undecodable data
        raise ValueError(f"{path}: video stream cannot be decoded: {decoder_message(err)}") from err


@dataclasses.dataclass(frozen=True)
class VideoScan:
    """The perceptual hashes of a video's frames shown at ``k / fps`` (k = 0, 1, ...), from :func:`scan_video`."""

    path: str
    fps: float
    hashes: list[imagehash.ImageHash]
    end: float  # seconds from the first frame: the end of the video stream; no frame is sampled at or after it
    seconds: float  # wall time the scan took
    video: VideoStreamInfo | None = None  # the stream scanned (its first frame is 0 s; its display size)

    @property
    def decoded_seconds(self) -> float:
        """How much of the video the scan decoded (the fps filter fills its slots up to the last frame's end)."""
        return len(self.hashes) / self.fps


def _analysis_size(width: int, height: int) -> tuple[int, int]:
    """What :func:`_analysis_image` makes of a ``width`` x ``height`` picture."""
    if width <= ANALYSIS_WIDTH:
        return width, height
    return ANALYSIS_WIDTH, max(1, round(height * ANALYSIS_WIDTH / width))


def stream_length(path: str | Path, video: VideoStreamInfo) -> float:
    """Seconds from the first frame to the stream's stated end (the container's when the stream states none)."""
    if video.duration is not None:
        return video.duration
    container = probe_media(path)
    return max((container.stated_end or 0.0) - video.start, 0.0)


def scan_video(
    path: str | Path, params: KeyFrameParams = KeyFrameParams(), threads: int = 1, video: VideoStreamInfo | None = None
) -> VideoScan:
    """Hash the frames shown at ``k / params.fps`` s after the first frame, in one ffmpeg pass that also samples
    and downscales.

    ``threads``: ffmpeg's decoding threads (the build gives it the worker's share of the cores); ``video``: the
    stream (:func:`video_stream`) when the caller has probed it. Raises :class:`ValueError` naming the file when
    ffmpeg fails.
    """
    import time

    start = time.perf_counter()
    video = video_stream(path) if video is None else video  # headers only: no scan of the file
    width, height = _analysis_size(video.width, video.height)
    end = stream_length(path, video)
    command = [
        "ffmpeg", "-v", "error", "-nostdin", "-threads", str(max(threads, 1)),
        "-copyts", "-noautorotate",  # the stream's own timestamps and pixels, as torchcodec sees them
        "-i", ffmpeg_input(path), "-map", f"0:{video.index}", "-an", "-sn", "-dn",
        # round=up: slot k holds the last frame whose pts <= first + k / fps (the frame shown then);
        # start_time: slots count from the first frame's timestamp (0 s on the video's own clock)
        "-vf", f"fps=fps={params.fps!r}:round=up:start_time={video.start!r},scale={width}:{height}:flags=bilinear,format=gray",
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
        raise ValueError(f"{path}: video stream cannot be decoded (ffmpeg: {decoder_message(error[-500:])})")
    return VideoScan(str(path), params.fps, hashes, float(end), time.perf_counter() - start, video)


def kept_frame_times(
    scans: Sequence[VideoScan],
    params: KeyFrameParams = KeyFrameParams(),
    durations: Sequence[float | None] | None = None,
) -> list[tuple[int, float]]:
    """(clip, time in the clip) of the frames the sequential rule keeps in scanned clips played one after the
    other, in story order: the frames :func:`key_frames_from_scans` decodes, known before any is decoded.
    ``durations`` as there."""
    durations = [None] * len(scans) if durations is None else durations
    stream: list[tuple[int, float]] = []  # (clip, time in the clip) of each hash, in story order
    hashes: list[imagehash.ImageHash] = []
    for clip, (scan, duration) in enumerate(zip(scans, durations)):
        times = sample_times(scan.end if duration is None else duration, params.fps)
        times = times[times < scan.end][: len(scan.hashes)]
        stream.extend((clip, float(t)) for t in times)
        hashes.extend(scan.hashes[: len(times)])
    return [where for where, keep in zip(stream, _sequential_rule(hashes, params.max_similarity)) if keep]


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
    kept = kept_frame_times(scans, params, durations)
    frames: list[KeyFrame] = []
    for clip, scan in enumerate(scans):
        times = [t for c, t in kept if c == clip]
        frames.extend(
            KeyFrame(t, to_jpeg(image, params.max_side, params.jpeg_quality, _display(scan.video, image)))
            for t, image in decode_frames(scan.path, times, offsets[clip], scan.video)
        )
    return frames


def extract_key_frames(
    path: str | Path, params: KeyFrameParams = KeyFrameParams(), offset: float = 0.0, duration: float | None = None
) -> list[KeyFrame]:
    """Key frames of one video file (times shifted by ``offset`` seconds)."""
    return key_frames_from_scans([scan_video(path, params)], params, [offset], [duration])


def frames_at(
    path: str | Path,
    times: Sequence[float],
    params: KeyFrameParams = KeyFrameParams(),
    offset: float = 0.0,
    video: VideoStreamInfo | None = None,
) -> list[KeyFrame]:
    """Frames at given times (e.g. the released SoS ``Frames`` list), without any selection."""
    video = video_stream(path) if video is None else video
    return [
        KeyFrame(t, to_jpeg(img, params.max_side, params.jpeg_quality, _display(video, img)))
        for t, img in decode_frames(path, [t - offset for t in times], offset, video)
    ]


# ----------------------------------------------------------------------------------------
# Frames by index on the story's frame timeline (the release's clock), for imagecluster and the released frames
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClipFrames:
    """One clip's video frames: how many, at what rate, and where the clip starts in the story."""

    path: str
    video: VideoStreamInfo
    count: int
    fps: float
    offset: float  # the clip's start in the story (seconds)
    duration: float | None  # frames at or after this many seconds of the clip are not the story's (its audio ends)


@dataclasses.dataclass(frozen=True)
class FrameTimeline:
    """A story's frames as the release's OpenCV loop saw them: its clips' frames one after the other (the release
    joined LSMDC clips into one file with ffmpeg's concat protocol), counted at the first clip's frame rate (the
    joined file's)."""

    clips: tuple[ClipFrames, ...]

    @property
    def fps(self) -> float:
        return self.clips[0].fps

    @property
    def count(self) -> int:
        return sum(clip.count for clip in self.clips)

    def locate(self, index: int) -> tuple[int, int] | None:
        """(clip, frame in the clip) of the story's frame ``index``; None past the last frame."""
        for number, clip in enumerate(self.clips):
            if index < clip.count:
                return number, index
            index -= clip.count
        return None


def _clip_frames(path: str, video: VideoStreamInfo, offset: float, duration: float | None) -> ClipFrames:
    decoder = _frame_decoder(path, video)
    meta = decoder.metadata
    count = int(meta.num_frames or 0)
    fps = video.frame_rate or meta.average_fps or 0.0  # OpenCV's CAP_PROP_FPS is the stream's average frame rate
    if count <= 0 or not fps > 0:
        raise ValueError(f"{path}: video stream states no frames or frame rate")
    return ClipFrames(str(path), video, count, float(fps), offset, duration)


def frame_timeline(
    paths: Sequence[str],
    videos: Sequence[VideoStreamInfo | None] | None = None,
    offsets: Sequence[float] | None = None,
    durations: Sequence[float | None] | None = None,
) -> FrameTimeline:
    """The frame timeline of clips played one after the other (``offsets``: their starts in the story, default 0;
    ``durations``: their audio lengths). Raises ``ValueError`` naming a clip whose video cannot be read."""
    videos = videos or [None] * len(paths)
    offsets = offsets or [0.0] * len(paths)
    durations = durations or [None] * len(paths)
    clips = []
    for path, video, offset, duration in zip(paths, videos, offsets, durations):
        video = video_stream(path) if video is None else video
        try:
            clips.append(_clip_frames(str(path), video, offset, duration))
        except (RuntimeError, IndexError) as err:
            raise ValueError(f"{path}: video stream cannot be decoded: {decoder_message(err)}") from err
    return FrameTimeline(tuple(clips))


def _frames_by_index(
    timeline: FrameTimeline, indices: Sequence[int]
) -> Iterator[tuple[int, ClipFrames, float, Image.Image]]:
    """(story frame index, its clip, its time in the story, picture) of the frames ``indices`` (ascending), decoded
    by index in presentation order; frames past a clip's audio are left out."""
    by_clip: dict[int, list[tuple[int, int]]] = {}
    for index in indices:
        where = timeline.locate(index)
        if where is not None:
            by_clip.setdefault(where[0], []).append((index, where[1]))
    for number, wanted in sorted(by_clip.items()):
        clip = timeline.clips[number]
        try:
            decoder = _frame_decoder(clip.path, clip.video)
            step = decode_batch_frames(clip.video.width, clip.video.height)
            for i in range(0, len(wanted), step):
                part = wanted[i : i + step]
                batch = decoder.get_frames_at([local for _, local in part])
                for (index, _), frame, pts in zip(part, batch.data, batch.pts_seconds.tolist()):
                    time = max(float(pts) - clip.video.start, 0.0)
                    if clip.duration is not None and time >= clip.duration:
                        continue
                    yield index, clip, clip.offset + time, Image.fromarray(frame.numpy())
                batch = frame = None  # freed before the next batch is decoded: one batch in memory at a time
        except (RuntimeError, IndexError) as err:  # torchcodec's errors for undecodable data
            raise ValueError(f"{clip.path}: video stream cannot be decoded: {decoder_message(err)}") from err


def release_frame_indices(timeline: FrameTimeline, times: Sequence[float]) -> list[int]:
    """The story frames the released names stand for: frame ``round(t * fps)`` for each time ``t`` (the release
    named frame ``count`` by ``count / fps`` rounded to a hundredth of a second, so below 100 fps the nearest
    frame is that frame), without repeats, ascending."""
    return sorted({round(t * timeline.fps) for t in times if t >= 0})


def release_frames(
    timeline: FrameTimeline, times: Sequence[float], params: KeyFrameParams = KeyFrameParams()
) -> list[KeyFrame]:
    """The frames a released story's ``Frames`` names (their times ``times``), decoded by index, with their times on
    the story's clock (the clip's start plus the frame's own timestamp)."""
    return [
        KeyFrame(time, to_jpeg(image, params.max_side, params.jpeg_quality, _display(clip.video, image)))
        for _, clip, time, image in _frames_by_index(timeline, release_frame_indices(timeline, times))
    ]


def imagecluster_key_frames(timeline: FrameTimeline, params: KeyFrameParams) -> list[KeyFrame]:
    """The paper's key frames (:mod:`.image_clusters`): the frames the release's loop samples at ``min(fps,
    params.fps)``, fingerprinted with VGG16, clustered at ``params.max_similarity`` and one kept per cluster size;
    decoded again, full size, for their JPEGs."""
    from .image_clusters import key_frame_rows, load_vgg16, sos_sample_indices

    model, weights_input = load_vgg16(str(params.vgg16_weights))
    vgg16_input = weights_input if params.vgg16_input == "auto" else params.vgg16_input
    sampled: list[int] = []

    def pictures() -> Iterator[Image.Image]:
        for index, _, _, image in _frames_by_index(
            timeline, sos_sample_indices(timeline.count, timeline.fps, params.fps)
        ):
            sampled.append(index)
            yield image

    rows = key_frame_rows(pictures(), model, vgg16_input, params.max_similarity)
    kept = [sampled[row] for row in rows]
    return [
        KeyFrame(time, to_jpeg(image, params.max_side, params.jpeg_quality, _display(clip.video, image)))
        for _, clip, time, image in _frames_by_index(timeline, kept)
    ]
