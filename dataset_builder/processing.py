"""Processing one story, with a resumable on-disk cache.

``process_story`` runs, for one story: decoding (audio at the source rate, channels kept),
speech removal, speech ratios before and after, key frames, generation slices, the
low-content filter, and each kept slice's FLAC and Riffusion spectrogram image (so that the
Parquet assembly only copies bytes, and the costly images are spread over the workers). Its
result is a :class:`.story_cache.StoryCacheEntry` in ``<cache_dir>/<story>-<key>/``, where the
key hashes the input files' *content* (and the separator checkpoint's), the story's text and
frame times, and every processing parameter; an entry is used only when it is whole (done
marker, sizes and hashes), so a killed build, run again, redoes only what is missing.

``run_story_job`` is the worker every engine runs (a local process pool, Ray): it never raises,
and returns a :class:`StoryOutcome`. The entry records each step's time in its ``timings``.

One clock: each clip's story time 0 is its first video frame (a stream's timestamps may start anywhere: 0.5-1.5 s
in MPEG-TS and DVD files, a few ms in Matroska), and its audio is decoded from that frame on (padded with silence
when the sound starts later, trimmed when it starts earlier), so the sound of a slice is the sound of its
pictures. Audio with more than two channels is downmixed to stereo (ITU-R BS.775); with the ``center``
separator, a centre channel (5.1, 7.1: where film dialogue lives) is handed to the separator on its own. A clip
that decodes to less than its container states is a failure naming both lengths, unless ``allow_truncated``.

Decoding: the audio is decoded once (ffmpeg, :mod:`sound_of_story.audio.decoding`); the video once, by the ffmpeg process of
:func:`.key_frames.scan_video` that samples, downscales and hashes it, plus full-size pictures of
the kept key frames only. When the worker has two or more threads (torch's thread count, which
the engines set to its share of the cores) that scan runs in a background thread beside the
audio work (speech removal, VAD, slicing, FLAC), which itself runs on one thread; with one
thread the scan runs after it, so N workers of one thread each use N cores, not 2N.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import io
import math
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from sound_of_story.audio.decoding import (
    TRUNCATION_TOLERANCE_S,
    MediaFileError,
    TruncatedMediaError,
    decode_audio_file,
    decoder_message,
)
from sound_of_story.core.hashing import file_sha256, json_sha256

from .content_filter import ContentFilterParams, check_content
from .image_clusters import is_weights_file
from .key_frames import (
    KeyFrame,
    KeyFrameParams,
    VideoScan,
    frame_timeline,
    imagecluster_key_frames,
    key_frames_from_scans,
    release_frames,
    scan_video,
)
from .manifest import Failure, StorySource
from .media import MediaError, MediaInfo, probe
from .slicing import slice_story
from .speech_removal import (
    SpeechRemovalParams,
    bytesep_checkpoint_file,
    remove_centre_channel_speech,
    remove_speech_and_measure,
)
from .story_cache import SliceRecord, StoryCacheEntry, StoryRecord

PNG_COMPRESS_LEVEL = 3
GENERATION_WIDTH = 1536  # spectrogram columns of a 15 s slice (100 per second, padded to a multiple of 8)
PROCESSING_VERSION = 3  # bump when the processing changes its output for equal parameters (2: cache entry layout;
# 3: the kept slices' FLAC and spectrogram images are computed here and stored in the entry)
MIN_STORY_SECONDS = 1.0
# Peak memory grows with story length (decoded audio, its STFTs and the separated copy): about
# MEMORY_PER_STORY_SECOND_MB per second of 44.1 kHz stereo story over a fixed ~1.1 GB with the center
# separator and one torch thread (docs/building.md has the measurements and benchmarks/build_memory.py makes
# them). 600 s, four times the paper's 150 s stories, keeps one worker near 2.5 GB; --max-story-seconds raises
# it on a machine with more memory.
MAX_STORY_SECONDS = 600.0
MEMORY_PER_STORY_SECOND_MB = 2.3


class StoryError(ValueError):
    """A story cannot be built; ``file`` names the input at fault."""

    def __init__(self, file: str, reason: str):
        super().__init__(reason)
        self.file = file
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class ProcessingParams:
    separation: SpeechRemovalParams = SpeechRemovalParams()
    key_frames: KeyFrameParams = KeyFrameParams()
    slice_seconds: float = 15.0
    keep_long_slices: bool = True
    content: ContentFilterParams = ContentFilterParams()
    max_story_seconds: float = MAX_STORY_SECONDS
    # build a truncated file (less decodes than its container states) as the shorter story it decodes to,
    # instead of failing; part of the cache key only when set, so the keys of other builds stay what they were
    allow_truncated: bool = False

    def __post_init__(self) -> None:
        # checked once, before any work; NaN passes every comparison, so finiteness is explicit
        for name, value in (("slice_seconds", self.slice_seconds), ("max_story_seconds", self.max_story_seconds)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        if not math.isfinite(self.content.threshold):
            raise ValueError(
                f"content.threshold (the low-content threshold) must be a finite number, got {self.content.threshold}"
            )
        if not math.isfinite(self.key_frames.max_similarity):
            raise ValueError(
                f"key_frames.max_similarity must be a finite number in [0, 1], got {self.key_frames.max_similarity}"
            )

    def to_json(self) -> dict:
        """The parameters as the cache key sees them. A method's own fields (the bytesep window, the imagecluster
        key frames' VGG16 weights) appear only when that method is chosen, so the keys of other builds stay what
        they were before the method existed."""
        data = {"version": PROCESSING_VERSION, **dataclasses.asdict(self)}
        data["separation"] = self.separation.to_json()
        data["key_frames"] = self.key_frames.to_json()
        if not self.allow_truncated:
            del data["allow_truncated"]
        return data

    def public_json(self) -> dict:
        """:meth:`to_json` with the separator checkpoint and the VGG16 weights file named by content (SHA-256), not
        by their local paths or URLs.

        This is what the dataset card shows and what cluster shards compare: it holds no local path.
        """
        data = self.to_json()
        if self.separation.checkpoint:
            checkpoint = self.separation.checkpoint
            if self.separation.backend == "bytesep":  # a URL names its download
                checkpoint = str(bytesep_checkpoint_file(checkpoint))
            data["separation"]["checkpoint"] = f"sha256:{_checkpoint_digest(checkpoint)}"
        weights = data["key_frames"].get("vgg16_weights")
        if weights and is_weights_file(weights):
            data["key_frames"]["vgg16_weights"] = f"sha256:{_checkpoint_digest(weights)}"
        return data


@dataclasses.dataclass(frozen=True)
class StoryJob:
    """One story to process: what :func:`run_story_job` takes (picklable, for process pools and Ray)."""

    index: int  # the story's position in the build: results are keyed by it, never by id
    source: StorySource
    params: ProcessingParams
    cache_dir: str


@dataclasses.dataclass(frozen=True)
class StoryOutcome:
    """What :func:`run_story_job` returns: a cache entry, or the failure that stopped the story."""

    index: int
    story_id: str
    entry: str | None  # the cache entry's folder when the story was processed
    from_cache: bool
    failure: Failure | None

    @property
    def ok(self) -> bool:
        return self.entry is not None

    @classmethod
    def failed(cls, job: StoryJob, reason: str, file: str | None = None) -> StoryOutcome:
        """The outcome of a story that failed; ``file`` names the input at fault (default: its first clip)."""
        source = job.source
        if file is None:
            file = source.videos[0] if source.videos else ""
        return cls(job.index, source.id, None, False, Failure(source.id, file, reason))


def run_story_job(job: StoryJob) -> StoryOutcome:
    """The per-story worker: process one story, never raise (a bad story must not stop the build)."""
    try:
        entry, cached = process_story(job.source, job.params, job.cache_dir)
        return StoryOutcome(job.index, job.source.id, str(entry.path), cached, None)
    except StoryError as err:
        return StoryOutcome.failed(job, err.reason, err.file)
    except Exception as err:  # noqa: BLE001 - one bad story must not stop the build
        return StoryOutcome.failed(job, f"internal error ({type(err).__name__}): {decoder_message(err)}")


def _checkpoint_digest(path: str) -> str:
    """SHA-256 of a separator checkpoint or weights file, hashed once per file version (it is large, and every
    story's key needs it)."""
    st = Path(path).stat()
    return _digest_of_version(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _digest_of_version(path: str, mtime_ns: int, size: int) -> str:
    return file_sha256(path)


def cache_key(source: StorySource, params: ProcessingParams, infos: list[MediaInfo] | None = None) -> str:
    """Hash of the inputs' content, the story fields and the parameters (the separator checkpoint's content).

    ``infos``: the clips' probes; a clip whose streams do not both start at 0 s, whose pixels are not square or
    whose audio has more than two channels adds that layout to the key (its processing changed when the builder
    learnt to put such files on one clock), while a plain clip's key stays what it always was.
    """
    layouts = [info.layout_key() for info in infos or ()]
    payload = {
        "files": [file_sha256(v) for v in source.videos],
        "story": {
            "id": source.id,
            "movie": source.movie,
            "source": source.source,
            "text": source.text,
            "frame_times": source.frame_times,
        },
        "params": params.public_json(),  # the separator checkpoint by content: a new file at the same path is a new key
    }
    if any(layouts):
        payload["layouts"] = layouts
    if source.frame_times is not None:  # the released frames are taken by frame index (they were taken by time)
        payload["release_frames"] = "by index"
    return json_sha256(payload)[:20]


def _check_inputs(source: StorySource) -> list[MediaInfo]:
    infos = []
    for video in source.videos:
        try:
            info = probe(video)
        except MediaError as err:
            raise StoryError(video, str(err)) from err
        if not info.has_video:
            cover = info.probe is not None and info.probe.attached_pictures
            why = "; its picture is attached cover art, not video" if cover else ""
            raise StoryError(video, f"{video}: audio-only file (no video stream{why})")
        infos.append(info)
    return infos


@dataclasses.dataclass
class StoryAudio:
    """A story's sound: its clips decoded one after the other, each from its first video frame on."""

    samples: np.ndarray  # (channels, samples) float32: at most two channels
    rate: int
    offsets: list[float]  # each clip's start in the story
    ends: list[float]  # each clip's decoded audio end on its container's clock
    centre: np.ndarray | None  # (samples,): the part of ``samples`` (in each channel) that is a centre channel


def _output_channels(info: MediaInfo) -> int:
    return min(info.channels, 2)


def _story_audio(source: StorySource, infos: list[MediaInfo], params: ProcessingParams) -> StoryAudio:
    """The story's audio (clips joined in order by decoding, each on its video's clock) and each clip's start."""
    rate, channels = infos[0].sample_rate, _output_channels(infos[0])
    separate_centre = params.separation.backend == "center"
    parts, centres, lengths, offsets, ends, total = [], [], [], [], [], 0
    for video, info in zip(source.videos, infos):
        try:
            decoded = decode_audio_file(
                video,
                origin=info.origin,
                sample_rate=None if info.sample_rate == rate else rate,
                channels="stereo" if _output_channels(info) == channels else channels,
                separate_centre=separate_centre,
                allow_truncated=params.allow_truncated,
                probe=info.probe,
            )
        except TruncatedMediaError as err:
            raise StoryError(video, f"{err}; --allow-truncated (allow_truncated) builds what decodes") from err
        except MediaFileError as err:
            raise StoryError(video, str(err)) from err
        offsets.append(total / rate)
        lengths.append(decoded.samples.shape[1])
        ends.append(decoded.end)
        parts.append(decoded.samples)
        centres.append(None if decoded.centre is None else decoded.centre * np.float32(decoded.centre_gain))
        total += decoded.samples.shape[1]
        del decoded
    samples = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    del parts
    centre = None
    if any(c is not None for c in centres):
        centre = np.concatenate([np.zeros(n, np.float32) if c is None else c for c, n in zip(centres, lengths)])
    return StoryAudio(samples, rate, offsets, ends, centre)


def _check_complete(source: StorySource, infos: list[MediaInfo], audio: StoryAudio, scans, params) -> None:
    """A clip whose sound and pictures both end before the end it states (beyond the tolerance) is truncated.

    The audio decoder has compared the audio with its own stream's stated length already; this compares the
    clip as a whole (the later of the decoded audio's and the scanned video's ends) with the later of its
    streams' stated ends (the container's when a stream states none), so a video that legitimately outlasts its
    sound, or the reverse, is not taken for a cut file, nor is a subtitle track that outlasts both.
    """
    if params.allow_truncated or not scans:
        return
    for clip, (video, info) in enumerate(zip(source.videos, infos)):
        if info.probe is None:
            continue
        ends = [stream.stated_end for stream in (info.probe.audio, info.probe.video) if stream is not None]
        stated = max(ends) if ends and None not in ends else info.probe.stated_end
        if stated is None:
            continue
        decoded = max(audio.ends[clip], info.origin + scans[clip].decoded_seconds)
        if decoded < stated - TRUNCATION_TOLERANCE_S:
            error = TruncatedMediaError(video, stated - info.origin, decoded - info.origin, what="sound and pictures")
            raise StoryError(video, f"{error}; --allow-truncated (allow_truncated) builds what decodes")


def _stale_truncated_entry(infos: list[MediaInfo], story: StoryRecord) -> bool:
    """A cached story shorter than its clips' audio streams state (an entry built from a cut file before cut files
    were refused): it is built again, by the rules above."""
    stated = [info.probe.audio.stated_end for info in infos if info.probe is not None and info.probe.audio]
    if len(stated) != len(infos) or any(end is None for end in stated):
        return False
    expected = sum(end - info.origin for end, info in zip(stated, infos))
    return story.duration < expected - TRUNCATION_TOLERANCE_S * len(infos)


def _scan_videos(source: StorySource, infos: list[MediaInfo], params: KeyFrameParams, threads: int) -> list[VideoScan]:
    """Each clip's frame hashes (one ffmpeg pass per clip); a clip that cannot be decoded is the story's fault."""
    scans = []
    for video, info in zip(source.videos, infos):
        try:
            scans.append(scan_video(video, params, threads, info.probe.video if info.probe else None))
        except ValueError as err:
            raise StoryError(video, str(err)) from err
    return scans


def _story_frames(
    source: StorySource,
    infos: list[MediaInfo],
    offsets: list[float],
    durations: list[float],
    params: KeyFrameParams,
    scans: list[VideoScan] | None,
) -> list[KeyFrame]:
    try:
        if source.frame_times is not None or params.method == "imagecluster":
            videos = [info.probe.video if info.probe else None for info in infos]
            timeline = frame_timeline(source.videos, videos, offsets, durations)
            if source.frame_times is not None:  # the released SoS metadata lists its frames
                return release_frames(timeline, source.frame_times, params)
            return imagecluster_key_frames(timeline, params)
        assert scans is not None
        return key_frames_from_scans(scans, params, offsets, durations)
    except ValueError as err:  # the message names the clip whose video cannot be decoded
        clip = next((v for v in source.videos if str(err).startswith(f"{v}: ")), source.videos[0])
        raise StoryError(clip, str(err)) from err


def flac_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit FLAC of a (channels, samples) float array."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio.T, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def spectrogram_png(audio: np.ndarray, sample_rate: int) -> bytes:
    """The Riffusion image of a slice, through :mod:`sound_of_story.audio.spectrogram` (the project's only converter)."""
    from sound_of_story.audio.spectrogram import SpectrogramParams, audio_to_image

    params = SpectrogramParams()
    natural = params.width_for_num_samples(round(audio.shape[-1] * params.sample_rate / sample_rate))
    width = max(GENERATION_WIDTH, -(-natural // 8) * 8)
    image = audio_to_image(audio, sample_rate, params, width=width)
    buf = io.BytesIO()
    # zlib level 3: PNG is lossless, so the pixels are those of PIL's default level 6, written in less than half
    # the time and no larger; level 1 gives larger files (docs/building.md has the measurements)
    image.save(buf, format="PNG", exif=image.getexif(), compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def _slice_files(audio_flac: bytes, slices: list[SliceRecord], timings: dict[str, float]) -> list[tuple[bytes, bytes]]:
    """(FLAC, spectrogram PNG) of every kept slice, cut from the story's FLAC as the dataset reads it back.

    Done here, in the worker, rather than in the Parquet assembly, so that ``--num-proc`` and Ray
    spread it over the cores: it is about 40% of a story's work (spectrograms above all). A worker with
    two or more torch threads encodes that many slices at once (the FFTs, the mel product and zlib release
    the GIL); ``timings`` then sums each thread's seconds, so the two steps add up to more than their wall time.
    """
    import torch

    decoded, rate = sf.read(io.BytesIO(audio_flac), dtype="float32", always_2d=True)
    decoded = decoded.T
    kept = [s for s in slices if s.keep]
    busy = {"slice_flac_encoding": [0.0] * len(kept), "spectrograms": [0.0] * len(kept)}

    def encode(k: int) -> tuple[bytes, bytes]:
        part = decoded[:, kept[k].start_sample : kept[k].end_sample]
        start = time.perf_counter()
        flac = flac_bytes(part, rate)
        middle = time.perf_counter()
        png = spectrogram_png(part, rate)
        busy["slice_flac_encoding"][k] = middle - start
        busy["spectrograms"][k] = time.perf_counter() - middle
        return flac, png

    threads = min(torch.get_num_threads(), len(kept))
    if threads <= 1:
        files = [encode(k) for k in range(len(kept))]
    else:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            files = list(pool.map(encode, range(len(kept))))
    for step, seconds in busy.items():
        timings[step] = sum(seconds)
    return files


@contextlib.contextmanager
def _timed(timings: dict[str, float], step: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[step] = timings.get(step, 0.0) + time.perf_counter() - start


def _check_length(source: StorySource, seconds: float, params: ProcessingParams) -> None:
    if seconds > params.max_story_seconds:
        raise StoryError(
            source.videos[0],
            f"story is {seconds:.0f} s long, over the limit of {params.max_story_seconds:g} s that bounds memory "
            f"(about {MEMORY_PER_STORY_SECOND_MB:g} MB per second of story); raise it with --max-story-seconds "
            "(max_story_seconds) on a machine with more memory",
        )


def process_story(
    source: StorySource, params: ProcessingParams, cache_dir: str | Path
) -> tuple[StoryCacheEntry, bool]:
    """Process one story, or load it from the cache. Returns (entry, came_from_cache)."""
    infos = _check_inputs(source)
    _check_length(source, sum(info.duration for info in infos), params)  # before decoding anything
    entry = StoryCacheEntry.at(cache_dir, source.id, cache_key(source, params, infos))
    if entry.is_complete() and (params.allow_truncated or not _stale_truncated_entry(infos, entry.story)):
        return entry, True
    entry.discard()  # unfinished, damaged or cut short: recomputed below

    import torch

    timings: dict[str, float] = {}
    threads = torch.get_num_threads()  # this worker's share of the cores (the engines set it)
    scan_here = source.frame_times is None and params.key_frames.method == "hash"
    background_scan = scan_here and threads >= 2
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # the video's one decoding pass runs beside the audio work when the worker has a core to spare for it
        scanning = (
            pool.submit(_scan_videos, source, infos, params.key_frames, threads - 1) if background_scan else None
        )
        with _timed(timings, "decode"):
            story_audio = _story_audio(source, infos, params)
        rate, offsets = story_audio.rate, story_audio.offsets
        duration = story_audio.samples.shape[1] / rate
        if duration < MIN_STORY_SECONDS:
            raise StoryError(source.videos[0], f"clip under {MIN_STORY_SECONDS:g} s ({duration:.2f} s)")
        _check_length(source, duration, params)  # a container may understate its length
        durations = [b - a for a, b in zip(offsets, [*offsets[1:], duration])]
        # one VAD pass over the input (ratio before, and the centre separator's gate), one over the result
        if story_audio.centre is not None:  # a film mix's centre channel: its dialogue is removed there
            separated = remove_centre_channel_speech(
                story_audio.samples, story_audio.centre, rate, params.separation, timings
            )
        else:
            separated = remove_speech_and_measure(story_audio.samples, rate, params.separation, timings)
        background = separated.background
        story_audio.samples = story_audio.centre = None  # freed: the background replaces them
        with _timed(timings, "flac_encoding"):  # before the key frames: more time for a background scan
            audio_flac = flac_bytes(background, rate)
        with _timed(timings, "key_frames"):  # with a background scan: the wait for it, and the kept frames' decoding
            scans = (
                (scanning.result() if scanning else _scan_videos(source, infos, params.key_frames, 1))
                if scan_here
                else None
            )
            _check_complete(source, infos, story_audio, scans, params)
            frames = _story_frames(source, infos, offsets, durations, params.key_frames, scans)
            if source.frame_times is None and not frames:  # a story without pictures is no story of SoS
                raise StoryError(source.videos[0], f"{source.videos[0]}: video stream cannot be decoded (no picture)")
        if scans:
            timings["key_frame_scan"] = sum(scan.seconds for scan in scans)
    frame_times = [f.time for f in frames]

    with _timed(timings, "slicing"):
        slices = []
        for s in slice_story(background.shape[1], rate, frame_times, params.slice_seconds, params.keep_long_slices):
            decision = check_content(background[:, s.start : s.end], rate, params.content)
            slices.append(SliceRecord(s.start, s.end, s.long, decision.keep, decision.value, decision.reason))

    slice_files = _slice_files(audio_flac, slices, timings)
    story = StoryRecord(
        id=source.id,
        movie=source.movie,
        source=source.source,
        text=source.text,
        clip_ids=tuple(source.clip_ids),
        sample_rate=rate,
        channels=int(background.shape[0]),
        num_samples=int(background.shape[1]),
        duration=duration,
        frame_times=tuple(frame_times),
        speech_ratio_before=separated.speech_ratio_before,
        speech_ratio_after=separated.speech_ratio_after,
        slices=tuple(slices),
        params=params.public_json(),
        timings=timings,
    )
    return StoryCacheEntry.write(entry, story, audio_flac, [f.jpeg for f in frames], slice_files), False
