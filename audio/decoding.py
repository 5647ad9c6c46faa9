"""The one decoder of audio files and of the sound of video files: probe with ffprobe, decode with ffmpeg.

Both the dataset builder and the sound library read audio through :func:`decode_audio_file`, which

* reads the stream ``ffmpeg`` itself would pick (the one torchcodec's ``AudioDecoder`` decodes by default);
  an attached picture (the cover art of an MP3 or M4A) is never taken for a video stream;
* puts the samples on the container's clock: given an ``origin`` (the time, in the container's presentation
  timestamps, that sample 0 must hold; the builder passes the video's first frame), audio that starts later is
  preceded by silence and audio that starts earlier is trimmed, by ffmpeg's ``aresample=first_pts`` (which also
  fills a gap of more than 0.1 s inside the stream with silence, so the sound stays on the clock);
* downmixes more than two channels to stereo with the standard coefficients of ITU-R BS.775 (front left/right
  1, centre and surrounds 0.7071 = -3 dB, LFE left out: what ffmpeg's own downmix does to float audio), and can
  hand back the centre channel on its own (film mixes put their dialogue there);
* reads at most ``max_seconds`` (a stated cap on what is read per file: ffmpeg is stopped once that much is
  decoded), a chunk at a time, so memory holds the result, never the source channels of the whole file;
* compares what it decoded with the duration the file states, and raises :class:`TruncatedMediaError`
  naming both lengths when more than ``TRUNCATION_TOLERANCE_S`` is missing (a partial download, a cut file).

The samples equal torchcodec's ``AudioDecoder(path).get_all_samples()`` bit for bit for a stream that starts at
the origin (both run the same libavcodec decoder; tested), in the package's layout: float32
``(channels, samples)``. Errors are :class:`MediaFileError` (a ``ValueError``) whose message starts with the
file and says what is wrong in words; the message of a decoder is cleaned of its source paths
(:func:`decoder_message`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np

TRUNCATION_TOLERANCE_S = 0.5  # decoded may fall this much short of the stated duration (codec delays, last frames)
DOWNMIX_LEVEL = math.sqrt(0.5)  # ITU-R BS.775: centre and surround channels at -3 dB in a stereo downmix
READ_CHUNK_SECONDS = 10.0  # what is read from ffmpeg at a time: bounds the memory of many-channel sources
STEREO: tuple[str, ...] = ("FL", "FR")
MONO: tuple[str, ...] = ("FC",)

# ffmpeg's standard channel layouts (`ffmpeg -layouts`): the channel order of the decoded samples
CHANNEL_LAYOUTS: dict[str, tuple[str, ...]] = {
    "mono": ("FC",),
    "stereo": ("FL", "FR"),
    "2.1": ("FL", "FR", "LFE"),
    "3.0": ("FL", "FR", "FC"),
    "3.0(back)": ("FL", "FR", "BC"),
    "4.0": ("FL", "FR", "FC", "BC"),
    "quad": ("FL", "FR", "BL", "BR"),
    "quad(side)": ("FL", "FR", "SL", "SR"),
    "3.1": ("FL", "FR", "FC", "LFE"),
    "5.0": ("FL", "FR", "FC", "BL", "BR"),
    "5.0(side)": ("FL", "FR", "FC", "SL", "SR"),
    "4.1": ("FL", "FR", "FC", "LFE", "BC"),
    "5.1": ("FL", "FR", "FC", "LFE", "BL", "BR"),
    "5.1(side)": ("FL", "FR", "FC", "LFE", "SL", "SR"),
    "6.0": ("FL", "FR", "FC", "BC", "SL", "SR"),
    "6.0(front)": ("FL", "FR", "FLC", "FRC", "SL", "SR"),
    "hexagonal": ("FL", "FR", "FC", "BL", "BR", "BC"),
    "6.1": ("FL", "FR", "FC", "LFE", "BC", "SL", "SR"),
    "6.1(back)": ("FL", "FR", "FC", "LFE", "BL", "BR", "BC"),
    "6.1(front)": ("FL", "FR", "LFE", "FLC", "FRC", "SL", "SR"),
    "7.0": ("FL", "FR", "FC", "BL", "BR", "SL", "SR"),
    "7.0(front)": ("FL", "FR", "FC", "FLC", "FRC", "SL", "SR"),
    "7.1": ("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"),
    "7.1(wide)": ("FL", "FR", "FC", "LFE", "BL", "BR", "FLC", "FRC"),
    "7.1(wide-side)": ("FL", "FR", "FC", "LFE", "FLC", "FRC", "SL", "SR"),
    "octagonal": ("FL", "FR", "FC", "BL", "BR", "BC", "SL", "SR"),
}
# (left, right) weight of each channel in the stereo downmix; channels not named here (LFE, top and bottom
# layers) are left out, as ffmpeg does
_DOWNMIX_WEIGHTS: dict[str, tuple[float, float]] = {
    "FL": (1.0, 0.0),
    "FR": (0.0, 1.0),
    "FLC": (1.0, 0.0),
    "FRC": (0.0, 1.0),
    "WL": (1.0, 0.0),
    "WR": (0.0, 1.0),
    "FC": (DOWNMIX_LEVEL, DOWNMIX_LEVEL),
    "BL": (DOWNMIX_LEVEL, 0.0),
    "BR": (0.0, DOWNMIX_LEVEL),
    "SL": (DOWNMIX_LEVEL, 0.0),
    "SR": (0.0, DOWNMIX_LEVEL),
    "BC": (DOWNMIX_LEVEL * DOWNMIX_LEVEL, DOWNMIX_LEVEL * DOWNMIX_LEVEL),
}
# file name endings of audio that ffmpeg decodes (the containers of the formats above)
AUDIO_FILE_EXTENSIONS: tuple[str, ...] = (
    ".wav", ".flac", ".mp3", ".m4a", ".m4b", ".aac", ".ogg", ".oga", ".opus", ".mka", ".webm", ".weba", ".mkv",
    ".aif", ".aiff", ".aifc", ".caf", ".wma", ".ac3", ".eac3", ".dts", ".wv", ".ape", ".mp2", ".amr", ".au",
)  # fmt: skip


class MediaFileError(ValueError):
    """A media file cannot be used; the message is ``"<file>: <what is wrong>"``."""

    def __init__(self, path: str | os.PathLike, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


class MediaFileNotFoundError(MediaFileError, FileNotFoundError):
    """The file does not exist (a ``FileNotFoundError`` and a ``MediaFileError``)."""


class TruncatedMediaError(MediaFileError):
    """Less decodes than the file states (a partial download, a cut file)."""

    def __init__(self, path: str | os.PathLike, stated_seconds: float, decoded_seconds: float, what: str = "audio"):
        self.stated_seconds = stated_seconds
        self.decoded_seconds = decoded_seconds
        super().__init__(
            path,
            f"truncated file: it decodes to {decoded_seconds:.2f} s of {what} but states {stated_seconds:.2f} s "
            f"({stated_seconds - decoded_seconds:.2f} s missing, more than the {TRUNCATION_TOLERANCE_S:g} s tolerated)",
        )


_SOURCE_LOCATION = re.compile(r"(?:\w+, )?(?:[\w.~-]*/)+[\w.-]+\.(?:cpp|cc|cxx|c|h|hpp|py):\d+,?\s*")
_FFMPEG_CONTEXT = re.compile(r"\[[^\]\n]* @ 0x[0-9a-f]+\]\s*")  # "[mov,mp4,... @ 0x55b8...] ": a memory address


def decoder_message(error: BaseException | str) -> str:
    """A decoder's message without the decoder's own source locations, stack and memory addresses (what users
    can act on, and the same every run)."""
    text = str(error)
    text = text.split("Exception raised from", 1)[0]
    text = _FFMPEG_CONTEXT.sub("", _SOURCE_LOCATION.sub("", text))
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines[-3:]) if lines else type(error).__name__


def ffmpeg_input(path: str | os.PathLike) -> str:
    """``path`` as ffmpeg must be given it: absolute, so that a colon in a relative name (``S01E01:Pilot.mp4``)
    is never read as a protocol (``S01E01:``)."""
    return str(Path(path).absolute())


# ----------------------------------------------------------------------------------------
# Probing
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AudioStreamInfo:
    index: int  # in the container, as ffmpeg counts streams
    codec: str
    sample_rate: int
    channels: int
    layout: tuple[str, ...] | None  # the channel names in decoded order (None: a layout ffmpeg does not name)
    start: float  # seconds on the container's clock
    duration: float | None  # seconds the stream states for itself (header or tags); None when it does not

    @property
    def stated_end(self) -> float | None:
        return None if self.duration is None else self.start + self.duration


@dataclasses.dataclass(frozen=True)
class VideoStreamInfo:
    index: int
    codec: str
    width: int  # as shown: after the rotation of the display matrix (as torchcodec decodes it)
    height: int
    pixel_aspect: Fraction  # sample aspect ratio: the width of a pixel over its height (1 when unstated)
    rotation: int  # degrees of the display matrix
    start: float  # seconds on the container's clock: the first frame
    duration: float | None
    frame_rate: float | None

    @property
    def stated_end(self) -> float | None:
        return None if self.duration is None else self.start + self.duration

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) at the display aspect ratio, as ffmpeg's players show the picture."""
        return self.display_size_of((self.width, self.height))

    def display_size_of(self, size: tuple[int, int]) -> tuple[int, int]:
        """The display size of a decoded picture of ``size`` (width, height): the pixels' aspect ratio stretches
        its width (its height when the display matrix turns the picture by 90 degrees)."""
        width, height = size
        if self.pixel_aspect == 1:
            return width, height
        if self.rotation % 180:
            return width, max(1, round(height * self.pixel_aspect))
        return max(1, round(width * self.pixel_aspect)), height


@dataclasses.dataclass(frozen=True)
class MediaProbe:
    """What ffprobe says of a file: the audio stream that is decoded, the video stream (never an attached
    picture), and the container's stated duration."""

    path: str
    format: str
    start: float  # seconds: the container's first timestamp
    duration: float | None  # seconds, as the container states it
    audio: AudioStreamInfo | None
    video: VideoStreamInfo | None
    attached_pictures: int  # cover art and other pictures attached to the file (not video)
    audio_streams: int

    @property
    def stated_end(self) -> float | None:
        """The container's stated end on its own clock (its first timestamp plus its duration)."""
        return None if self.duration is None else self.start + self.duration


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _ticks(stream: dict, key: str, seconds_key: str) -> float | None:
    """A stream time from its ticks and time base (exact), else from ffprobe's rounded seconds."""
    ticks, base = stream.get(key), stream.get("time_base", "")
    if isinstance(ticks, int) and re.fullmatch(r"\d+/\d+", base) and not base.endswith("/0"):
        return float(ticks * Fraction(base))
    return _number(stream.get(seconds_key))


def _tag_end(stream: dict) -> float | None:
    """A Matroska stream's ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``), which ffmpeg and mkvmerge write: the time its
    last frame ends (ffmpeg writes the end timestamp; for a stream that starts at 0 it is also its length)."""
    for key, value in (stream.get("tags") or {}).items():
        if key.upper() in ("DURATION", "DURATION-ENG"):
            match = re.fullmatch(r"(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)", str(value).strip())
            if match:
                h, m, s = match.groups()
                return int(h) * 3600 + int(m) * 60 + float(s)
    return None


def _stream_duration(stream: dict, start: float) -> float | None:
    duration = _ticks(stream, "duration_ts", "duration")
    if duration is not None and duration > 0:
        return duration
    end = _tag_end(stream)
    return None if end is None else max(end - start, 0.0)


def _rotation(stream: dict) -> int:
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            return int(round(float(side["rotation"]))) % 360
    return int(_number((stream.get("tags") or {}).get("rotate")) or 0) % 360


def _pixel_aspect(stream: dict) -> Fraction:
    match = re.fullmatch(r"(\d+):(\d+)", str(stream.get("sample_aspect_ratio", "")))
    if not match or int(match[1]) == 0 or int(match[2]) == 0:
        return Fraction(1)
    return Fraction(int(match[1]), int(match[2]))


def _frame_rate(stream: dict) -> float | None:
    for key in ("avg_frame_rate", "r_frame_rate"):
        match = re.fullmatch(r"(\d+)/(\d+)", str(stream.get(key, "")))
        if match and int(match[1]) and int(match[2]):
            return int(match[1]) / int(match[2])
    return None


def _audio_info(stream: dict, container_start: float) -> AudioStreamInfo:
    channels = int(stream.get("channels") or 0)
    named = CHANNEL_LAYOUTS.get(str(stream.get("channel_layout", "")))
    if named is None and re.fullmatch(r"[A-Z0-9]+(\+[A-Z0-9]+)*", str(stream.get("channel_layout", ""))):
        named = tuple(str(stream["channel_layout"]).split("+"))  # a layout ffmpeg spells out channel by channel
    if named is None and channels in (1, 2):
        named = MONO if channels == 1 else STEREO
    start = _ticks(stream, "start_pts", "start_time")
    start = container_start if start is None else start
    return AudioStreamInfo(
        index=int(stream["index"]),
        codec=str(stream.get("codec_name", "?")),
        sample_rate=int(_number(stream.get("sample_rate")) or 0),
        channels=channels,
        layout=named if named is not None and len(named) == channels else None,
        start=start,
        duration=_stream_duration(stream, start),
    )


def _video_info(stream: dict, container_start: float) -> VideoStreamInfo:
    rotation = _rotation(stream)
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if rotation % 180:
        width, height = height, width
    start = _ticks(stream, "start_pts", "start_time")
    start = container_start if start is None else start
    return VideoStreamInfo(
        index=int(stream["index"]),
        codec=str(stream.get("codec_name", "?")),
        width=width,
        height=height,
        pixel_aspect=_pixel_aspect(stream),
        rotation=rotation,
        start=start,
        duration=_stream_duration(stream, start),
        frame_rate=_frame_rate(stream),
    )


def _preference(stream: dict) -> tuple:
    """ffmpeg's choice of the best stream of a kind (``av_find_best_stream``): default and not for the impaired
    first, then the highest bit rate, then the first."""
    disposition = stream.get("disposition") or {}
    score = (not (disposition.get("hearing_impaired") or disposition.get("visual_impaired"))) + bool(
        disposition.get("default")
    )
    return (-score, -(_number(stream.get("bit_rate")) or 0.0), int(stream["index"]))


def _best_audio_index(path: str, candidates: list[dict]) -> int:
    """The audio stream torchcodec's ``AudioDecoder`` decodes by default (ffmpeg's best stream)."""
    if len(candidates) == 1:
        return int(candidates[0]["index"])
    try:
        from torchcodec.decoders import AudioDecoder

        return int(AudioDecoder(path).stream_index)
    except Exception:  # noqa: BLE001 - fall back to ffmpeg's rule as read from the probe
        return int(min(candidates, key=_preference)["index"])


@contextlib.contextmanager
def _local_file(source: str | os.PathLike | bytes, name: str | None) -> Iterator[tuple[str, str]]:
    """(the path ffmpeg reads, the name messages give) of a path, or of bytes written to a temporary file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        suffix = Path(name).suffix if name and len(Path(name).suffix) <= 8 else ""
        with tempfile.NamedTemporaryFile(prefix="sos-decode-", suffix=suffix) as tmp:
            tmp.write(source)
            tmp.flush()
            yield tmp.name, name or "<bytes>"
        return
    yield ffmpeg_input(source), str(name or source)


def _check_file(path: str, label: str) -> None:
    if "://" in label and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", label):
        raise MediaFileError(label, "URLs are not supported: download the file first")
    if not Path(path).exists():
        raise MediaFileNotFoundError(label, "file not found")
    if Path(path).is_dir():
        raise MediaFileError(label, "is a folder, not a media file")
    if Path(path).stat().st_size == 0:
        raise MediaFileError(label, "empty file (0 bytes)")


def _ffprobe(path: str, label: str) -> dict:
    command = ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", path]
    try:
        result = subprocess.run(command, capture_output=True, timeout=300)
    except FileNotFoundError as err:
        raise RuntimeError("ffprobe is not installed (Debian: apt-get install ffmpeg)") from err
    text = result.stderr.decode(errors="replace").replace(f"{path}: ", "").replace(path, "the file").strip()
    try:
        data = json.loads(result.stdout or b"{}")
    except json.JSONDecodeError:
        data = {}
    if result.returncode or "format" not in data:
        detail = decoder_message(text or "ffprobe could not read it")
        raise MediaFileError(label, f"cannot be decoded (truncated or corrupt?): {detail}")
    return data


def probe_media(source: str | os.PathLike | bytes, name: str | None = None) -> MediaProbe:
    """Read a file's streams and stated durations (ffprobe; headers only, nothing is decoded).

    ``source``: a path, or the file's bytes (``name`` then names it in messages). Raises
    :class:`MediaFileNotFoundError`, or :class:`MediaFileError` for an empty file, a URL, or a file that ffprobe
    cannot read. A file without an audio stream is not an error here: ``audio`` is then None.
    """
    with _local_file(source, name) as (path, label):
        return _probe_local(path, label)


def _probe_local(path: str, label: str) -> MediaProbe:
    _check_file(path, label)
    data = _ffprobe(path, label)
    fmt = data["format"]
    container_start = _number(fmt.get("start_time")) or 0.0
    duration = _number(fmt.get("duration"))
    streams = data.get("streams") or []
    audio = [s for s in streams if s.get("codec_type") == "audio" and int(s.get("channels") or 0) > 0]
    videos = [s for s in streams if s.get("codec_type") == "video"]
    pictures = [s for s in videos if (s.get("disposition") or {}).get("attached_pic")]
    moving = [s for s in videos if s not in pictures]
    best_audio = _best_audio_index(path, audio) if audio else None
    return MediaProbe(
        path=label,
        format=str(fmt.get("format_name", "?")),
        start=container_start,
        duration=duration if duration is not None and duration > 0 else None,
        audio=next((_audio_info(s, container_start) for s in audio if int(s["index"]) == best_audio), None),
        video=_video_info(min(moving, key=_preference), container_start) if moving else None,
        attached_pictures=len(pictures),
        audio_streams=len(audio),
    )


# ----------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------

ChannelMode = Literal["stereo", "source"]


def downmix_matrix(layout: Sequence[str]) -> np.ndarray:
    """The (2, channels) matrix of the stereo downmix of ``layout`` (ITU-R BS.775 coefficients: what ffmpeg's
    ``-ac 2`` does to float audio; LFE and height channels are left out)."""
    return np.array([_DOWNMIX_WEIGHTS.get(name, (0.0, 0.0)) for name in layout], dtype=np.float32).T


@dataclasses.dataclass(frozen=True)
class DecodedAudio:
    """Samples of one audio stream, ``(channels, samples)`` float32 on the container's clock from ``start``."""

    samples: np.ndarray
    sample_rate: int
    start: float  # container time of sample 0 (the origin asked for, else the stream's start)
    layout: tuple[str, ...] | None  # of ``samples``
    source_layout: tuple[str, ...] | None  # of the stream (its channel count is ``source_channels``)
    source_channels: int
    # the source's centre channel (samples,) when asked for: ``samples`` holds it at ``centre_gain`` in each channel
    centre: np.ndarray | None
    centre_gain: float
    gain: float  # applied to the downmix so that it does not clip (1.0 unless its peak was over 1)
    stated_end: float | None  # where the stream (or, failing that, the container) says the audio ends
    truncated: bool  # more than the tolerance is missing (only with allow_truncated)

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.sample_rate

    @property
    def end(self) -> float:
        """Container time just after the last sample."""
        return self.start + self.duration


def _audio_filter(origin: float | None, rate: int, out_rate: int | None) -> list[str]:
    parts = []
    if out_rate is not None and out_rate != rate:
        parts.append(f"osr={out_rate}")
    if origin is not None:
        # sample 0 is at ``origin``: a later start is padded with silence, an earlier one trimmed, a gap filled
        parts.append(f"first_pts={round(origin * (out_rate or rate))}")
    return ["-af", "aresample=" + ":".join(parts)] if parts else []


def _read_chunks(command: list[str], channels: int, limit: int | None, chunk: int, label: str) -> Iterator[np.ndarray]:
    """Run ``command`` (raw f32le on stdout) and yield (samples, channels) chunks, at most ``limit`` samples."""
    frame_bytes = 4 * channels
    read = 0
    with tempfile.TemporaryFile() as log, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log) as proc:
        assert proc.stdout is not None
        stopped = False
        try:
            while limit is None or read < limit:
                want = chunk if limit is None else min(chunk, limit - read)
                data = proc.stdout.read(want * frame_bytes)
                usable = len(data) // frame_bytes
                if usable:
                    read += usable
                    yield np.frombuffer(data[: usable * frame_bytes], dtype=np.float32).reshape(usable, channels)
                if len(data) < want * frame_bytes:
                    break
            else:
                stopped = True  # the cap is reached: ffmpeg is not needed any more
        finally:
            if stopped or proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()
        log.seek(0)
        error = log.read().decode(errors="replace").strip()
    if proc.returncode and not stopped:
        raise MediaFileError(label, f"audio stream cannot be decoded: {decoder_message(error) or 'ffmpeg failed'}")


def decode_audio_file(
    source: str | os.PathLike | bytes,
    *,
    name: str | None = None,
    origin: float | None = None,
    max_seconds: float | None = None,
    sample_rate: int | None = None,
    channels: ChannelMode | int = "stereo",
    separate_centre: bool = False,
    allow_truncated: bool = False,
    check_truncation: bool = True,
    probe: MediaProbe | None = None,
) -> DecodedAudio:
    """Decode the audio of ``source`` (a path, or a file's bytes named ``name``): float32 ``(channels, samples)``.

    Args:
        origin: container time that sample 0 holds (audio starting later is padded with silence, earlier is
            trimmed); None: from the stream's first sample, as it starts.
        max_seconds: read at most this much (from the origin); None: all.
        sample_rate: resample to this rate (ffmpeg's resampler); None: the source rate.
        channels: ``"stereo"``: one or two channels as they are, more downmixed to stereo with the ITU-R BS.775
            coefficients (:func:`downmix_matrix`); ``"source"``: every channel as decoded; an int: ffmpeg's
            conversion to that many channels.
        separate_centre: with ``"stereo"`` and a source that has a centre channel besides others, also return that
            channel alone (``DecodedAudio.centre``).
        allow_truncated: return what decodes of a truncated file (``truncated`` set) instead of raising.
        check_truncation: compare with the stated duration at all (the builder checks a clip as a whole).
        probe: the file's :func:`probe_media`, when the caller has it.

    Raises :class:`MediaFileError`: not found, empty, unreadable, no audio stream, no samples, or
    :class:`TruncatedMediaError`.
    """
    if max_seconds is not None and not (math.isfinite(max_seconds) and max_seconds > 0):
        raise ValueError(f"max_seconds must be a finite number > 0, got {max_seconds}")
    with _local_file(source, name) as (path, label):
        info = probe if probe is not None else _probe_local(path, label)
        stream = info.audio
        if stream is None:
            raise MediaFileError(label, "no audio stream")
        if stream.sample_rate <= 0 or stream.channels <= 0:
            raise MediaFileError(label, "audio stream cannot be decoded: no sample rate or channel count")
        rate = sample_rate or stream.sample_rate
        layout = stream.layout
        matrix, centre_row = None, None
        if isinstance(channels, int):
            out_channels, out_layout, convert = channels, None, ["-ac", str(channels)]
        elif channels == "source" or stream.channels <= 2:
            out_channels, out_layout, convert = stream.channels, layout, []
        elif layout is not None:
            matrix = downmix_matrix(layout)
            out_channels, out_layout, convert = 2, STEREO, []
            if separate_centre and "FC" in layout:
                centre_row = layout.index("FC")
        else:  # more than two channels in a layout ffmpeg does not name: its own downmix
            out_channels, out_layout, convert = 2, STEREO, ["-ac", "2"]
        decoded_channels = stream.channels if matrix is not None else out_channels
        command = [
            "ffmpeg", "-nostdin", "-v", "error", "-copyts", "-i", path, "-map", f"0:{stream.index}", "-vn", "-sn",
            "-dn", *_audio_filter(origin, stream.sample_rate, sample_rate), *convert,
            "-f", "f32le", "-c:a", "pcm_f32le", "pipe:1",
        ]  # fmt: skip
        limit = None if max_seconds is None else round(max_seconds * rate)
        parts, centres = [], []
        for part in _read_chunks(command, decoded_channels, limit, round(READ_CHUNK_SECONDS * rate), label):
            if matrix is not None:
                if centre_row is not None:
                    centres.append(part[:, centre_row].copy())
                parts.append(matrix @ part.T)
            else:
                parts.append(part.T.copy())
        if not parts:
            raise MediaFileError(label, "the audio stream holds no samples")
    samples = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    del parts
    centre = (np.concatenate(centres) if len(centres) > 1 else centres[0]) if centres else None
    gain = 1.0
    if matrix is not None:
        peak = float(np.abs(samples).max())
        if peak > 1.0:  # the downmix of a loud many-channel mix: scaled, never clipped
            gain = 1.0 / peak
            samples *= gain
            if centre is not None:
                centre *= gain
    start = stream.start if origin is None else origin
    stated_end = stream.stated_end
    if stated_end is None and info.video is None:
        stated_end = info.stated_end  # an audio file: the container's duration is the stream's
    result = DecodedAudio(
        samples=samples,
        sample_rate=rate,
        start=start,
        layout=out_layout,
        source_layout=layout,
        source_channels=stream.channels,
        centre=centre,
        centre_gain=DOWNMIX_LEVEL * gain if centre is not None else 0.0,
        gain=gain,
        stated_end=stated_end,
        truncated=False,
    )
    if check_truncation and stated_end is not None:
        expected = stated_end if max_seconds is None else min(stated_end, start + max_seconds)
        if result.end < expected - TRUNCATION_TOLERANCE_S:
            if not allow_truncated:
                raise TruncatedMediaError(label, expected - start, result.duration)
            result = dataclasses.replace(result, truncated=True)
    return result


__all__ = [
    "AUDIO_FILE_EXTENSIONS",
    "AudioStreamInfo",
    "CHANNEL_LAYOUTS",
    "DOWNMIX_LEVEL",
    "DecodedAudio",
    "MediaFileError",
    "MediaFileNotFoundError",
    "MediaProbe",
    "READ_CHUNK_SECONDS",
    "TRUNCATION_TOLERANCE_S",
    "TruncatedMediaError",
    "VideoStreamInfo",
    "decode_audio_file",
    "decoder_message",
    "downmix_matrix",
    "ffmpeg_input",
    "probe_media",
]
