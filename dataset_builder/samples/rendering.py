"""Rendering and writing: a movie timeline to clips (.mp4, stems, JSON) and a manifest."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from sound_of_story.core.atomic_files import atomic_path, write_json_atomic, write_jsonl_atomic

from ..sample_options import DEFAULT_DURATION_S, DEFAULT_NUM_CLIPS, SampleGenerationError, Style, check_sample_options
from .pictures import FPS, HEIGHT, WIDTH
from .sound import SAMPLE_RATE
from .timeline import MovieTimeline, frames_to_samples, plan_movie

GENERATOR_VERSION = 1
TextKey = Literal["description", "caption"]


def _iter_frames(timeline: MovieTimeline, lo: int, hi: int) -> Iterable[np.ndarray]:
    """RGB uint8 frames [lo, hi) of the movie; frame k looks the same whichever clip asks."""
    for scene in timeline.scenes:
        yield from scene.frames(lo, hi)


def _ffmpeg_exe() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise SampleGenerationError(
            "ffmpeg is not installed (Debian: apt-get install ffmpeg); `make demo` or `make test` installs it"
        )
    return exe


def _encode_mp4(path: Path, frames: Iterable[np.ndarray], audio: np.ndarray) -> None:
    """H.264 + AAC, with settings fixed so equal input gives byte-identical files.

    The command line is written out as ffmpeg's documentation spells it: one linear encode with
    no filter graph, so ffmpeg-python would only rename the options (and it places global options
    after the output file, where ffmpeg calls them trailing).
    """
    with tempfile.TemporaryDirectory(prefix="sos-encode-") as tmp:
        wav = Path(tmp) / "mix.wav"
        sf.write(wav, audio.T.astype(np.float32), SAMPLE_RATE, subtype="FLOAT")
        log = Path(tmp) / "ffmpeg.log"
        with atomic_path(path) as out, open(log, "wb") as err:
            cmd = [
                _ffmpeg_exe(), "-nostdin", "-y", "-hide_banner", "-loglevel", "error",
                "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "-",
                "-i", str(wav),
                "-map", "0:v:0", "-map", "1:a:0",
                "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p", "-g", str(2 * FPS), "-threads", "1",
                "-c:a", "aac", "-b:a", "192k", "-ar", str(SAMPLE_RATE), "-ac", "2",
                "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
                "-f", "mp4", str(out),
            ]  # fmt: skip
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=err)
            try:
                for frame in frames:
                    proc.stdin.write(frame.tobytes())
                proc.stdin.close()
            except BrokenPipeError:
                pass
            if proc.wait() != 0:
                raise SampleGenerationError(f"ffmpeg failed writing {path}: {log.read_text(errors='replace').strip()}")


def _write_wav(path: Path, audio: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        sf.write(tmp, audio.T, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def _clip_record(
    timeline: MovieTimeline,
    clip_id: str,
    lo: int,
    hi: int,
    style: Style,
    clip_index: int,
    movie: str,
    text_key: TextKey,
    text: str,
) -> dict:
    s_lo = frames_to_samples(lo)
    scenes = []
    for scene in timeline.scenes:
        a, b = max(lo, scene.start_frame), min(hi, scene.end_frame)
        if a < b:
            scenes.append(
                {
                    "category": scene.category,
                    "start_frame": a - lo,
                    "end_frame": b - lo,
                    "start": (a - lo) / FPS,
                    "end": (b - lo) / FPS,
                }
            )
    dialogue = [
        {
            "start_sample": line.start_sample - s_lo,
            "end_sample": line.end_sample - s_lo,
            "start": (line.start_sample - s_lo) / SAMPLE_RATE,
            "end": (line.end_sample - s_lo) / SAMPLE_RATE,
            "text": line.text,
            "speaker": line.speaker,
            "voice": line.voice,
        }  # fmt: skip
        for line in timeline.dialogue
        if frames_to_samples(lo) <= line.start_sample < frames_to_samples(hi)
    ]
    return {
        "id": clip_id,
        "style": style,
        "movie": movie,
        "clip_index": clip_index,
        "movie_start_frame": lo,
        "movie_start": lo / FPS,
        "num_frames": hi - lo,
        "fps": FPS,
        "duration": (hi - lo) / FPS,
        "num_samples": frames_to_samples(hi) - s_lo,
        "mix_gain_db": timeline.mix_gain_db,
        "sample_rate": SAMPLE_RATE,
        "width": WIDTH,
        "height": HEIGHT,
        "scenes": scenes,
        "cuts": [s["start"] for s in scenes[1:]],
        "cut_frames": [s["start_frame"] for s in scenes[1:]],
        "dialogue": dialogue,
        text_key: text,
        "files": {
            "video": f"{clip_id}.mp4",
            "background": f"{clip_id}.background.wav",
            "speech": f"{clip_id}.speech.wav",
        },
        "generator": {
            "name": "sound_of_story.dataset_builder.samples",
            "version": GENERATOR_VERSION,
            "seed": timeline.seed,
            "movie_index": timeline.index,
        },
    }


def _write_clip(out_dir: Path, timeline: MovieTimeline, record: dict, lo: int, hi: int) -> None:
    s0, s1 = frames_to_samples(lo), frames_to_samples(hi)
    bg, sp = timeline.background[:, s0:s1], timeline.speech[:, s0:s1]
    files = record["files"]
    _write_wav(out_dir / files["background"], bg)
    _write_wav(out_dir / files["speech"], sp)
    _encode_mp4(out_dir / files["video"], _iter_frames(timeline, lo, hi), bg + sp)
    write_json_atomic(out_dir / f"{record['id']}.json", record)  # last: a clip with a JSON is complete


def generate_samples(
    out_dir: str | Path,
    num_clips: int = DEFAULT_NUM_CLIPS,
    seed: int = 0,
    duration_s: float = DEFAULT_DURATION_S,
    style: Style = "cmd",
    progress: bool = True,
    first_movie: int = 0,
) -> list[Path]:
    """Write ``num_clips`` sample clips with ground truth into ``out_dir``.

    ``style="cmd"``: each clip is one movie timeline of ``duration_s`` seconds with a
    CMD-style description; two consecutive clips share a movie name.
    ``style="lsmdc"``: movies of ``duration_s`` seconds are cut into runs of 3 to 12 s
    clips, one caption each, in order, until ``num_clips`` clips exist.

    ``first_movie``: the index of the first movie drawn. Movies are drawn independently from
    ``(seed, index)``, so a large set can be made in parts, in parallel: with CMD, ``num_clips=n``
    and ``first_movie=k`` write the same files as clips k to k + n - 1 of one run from 0 (with
    LSMDC, the runs of movies k onwards).

    Returns the paths of the per-clip JSON files, in manifest order; ``manifest.jsonl`` in
    ``out_dir`` lists the clips in the dataset builder's input format (paths relative to it).
    """
    check_sample_options(num_clips, duration_s, style, first_movie)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    manifest: list[dict] = []
    bar = tqdm(total=num_clips, desc=f"sample clips ({style})", unit="clip", disable=not progress)
    movie_index = first_movie
    while len(records) < num_clips:
        timeline = plan_movie(seed, movie_index, duration_s, style)
        if style == "cmd":
            clip_id = f"clip_{movie_index:04d}"
            movie = f"sample_movie_{movie_index // 2:03d}"
            record = _clip_record(
                timeline, clip_id, 0, timeline.num_frames, style, 0, movie, "description", timeline.description
            )
            _write_clip(out_dir, timeline, record, 0, timeline.num_frames)
            records.append(record)
            manifest.append(
                {"id": clip_id, "video": record["files"]["video"], "description": timeline.description, "movie": movie}
            )
            bar.update(1)
        else:
            movie = f"sample_movie_{movie_index:03d}"
            bounds = timeline.clip_bounds
            for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
                if len(records) == num_clips:
                    break
                clip_id = f"{movie}_clip_{k:03d}"
                record = _clip_record(timeline, clip_id, lo, hi, style, k, movie, "caption", timeline.captions[k])
                _write_clip(out_dir, timeline, record, lo, hi)
                records.append(record)
                manifest.append(
                    {
                        "id": clip_id,
                        "movie": movie,
                        "clip_index": k,
                        "video": record["files"]["video"],
                        "caption": timeline.captions[k],
                    }
                )
                bar.update(1)
        movie_index += 1
    bar.close()
    write_jsonl_atomic(out_dir / "manifest.jsonl", manifest)
    return [out_dir / f"{r['id']}.json" for r in records]
