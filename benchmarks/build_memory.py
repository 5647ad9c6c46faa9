"""Peak memory of one story's processing, per second of story: the figure behind ``--max-story-seconds``.

One sample clip (150 s, the CMD length, 320x180, 44.1 kHz stereo AAC) is looped with ffmpeg (stream copy) to
stories of several lengths, and each is processed by ``run_story_job`` (default parameters: the ``center``
separator, both speech ratios, key frames, slices with their FLAC and spectrogram images) in a fresh Python
process that reports its peak resident memory (``VmHWM``: the whole process, imports and models included). A line
fitted through (story seconds, peak MB) gives the memory per second of story (its slope) over a fixed cost (its
intercept). The worker runs with one torch thread (as each of ``--num-proc N`` workers on N cores does) or with
two (a one-process build on two cores: the key-frame scan in a thread beside the audio, two slices encoded at
once), chosen with ``--threads``. ``--surround`` adds a 5.1 AC-3 story at 48 kHz of the longest length (the
many-channel decoding reads a chunk at a time; its downmix and centre channel are what the story holds).

Run: python benchmarks/build_memory.py [--lengths 150 600 1200 2400] [--threads 1] [--surround]
10-20 minutes with the defaults on a shared 2-core machine (the sample clip, then 4350 s of story; --surround
adds an AC-3 encode and 2400 s more); docs/building.md gives the measured runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sound_of_story.dataset_builder.samples import generate_samples

WORKER = """
import json, re, sys, time, torch
torch.set_num_threads({threads})
from sound_of_story.dataset_builder.manifest import StorySource
from sound_of_story.dataset_builder.processing import ProcessingParams, StoryJob, run_story_job
source = StorySource("long", "m", "cmd", "A long story.", ({video!r},), ("long",))
start = time.perf_counter()
outcome = run_story_job(StoryJob(0, source, ProcessingParams(max_story_seconds={limit}), {cache!r}))
seconds = time.perf_counter() - start
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({{"ok": outcome.ok, "failure": outcome.failure and outcome.failure.reason, "peak_mb": peak_kb / 1024,
                  "seconds": seconds}}))
"""


def _loop(clip: Path, seconds: float, out: Path, audio: tuple[str, ...] = ("-c:a", "copy")) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-y", "-stream_loop", "-1", "-i", str(clip), "-t", str(seconds),
         "-map", "0:v", "-map", "0:a", "-c:v", "copy", *audio, str(out)],
        check=True,
    )  # fmt: skip
    return out


def _measure(video: Path, seconds: float, threads: int, work: Path) -> dict:
    code = WORKER.format(
        threads=threads, video=str(video), limit=seconds + 60, cache=str(work / f"cache-{video.stem}")
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if not report["ok"]:
        raise RuntimeError(f"{video}: {report['failure']}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=float, nargs="+", default=[150.0, 600.0, 1200.0, 2400.0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the worker")
    parser.add_argument("--surround", action="store_true", help="also a 5.1 AC-3 story at 48 kHz, longest length")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sos-build-memory-") as tmp:
        work = Path(tmp)
        (clip,) = generate_samples(work / "clip", num_clips=1, seed=0, duration_s=150.0, style="cmd", progress=False)
        clip = Path(clip).with_suffix("").with_suffix(".mp4")
        rows = []
        for seconds in args.lengths:
            video = _loop(clip, seconds, work / f"story-{int(seconds)}.mp4")
            report = _measure(video, seconds, args.threads, work)
            rows.append((seconds, report["peak_mb"], report["seconds"]))
            print(f"{seconds:7.0f} s story: peak {report['peak_mb']:7.0f} MB, processed in {report['seconds']:6.1f} s")
        x, y = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
        slope, intercept = np.polyfit(x, y, 1)
        print(f"fit over {len(rows)} lengths: {slope:.2f} MB per story-second over a fixed {intercept:.0f} MB")
        for seconds, peak, _ in rows:
            print(f"  {seconds:7.0f} s: {(peak - intercept) / seconds:.2f} MB/s over the fixed cost")
        if args.surround:
            seconds = max(args.lengths)
            stereo = [r[1] for r in rows if r[0] == seconds][0]
            channels = ("-af", "pan=5.1(side)|FL=FL|FR=FR|FC=0.5*FL+0.5*FR|LFE=0*FL|SL=FL|SR=FR", "-ar", "48000")
            video = _loop(clip, seconds, work / "story-surround.mkv", (*channels, "-c:a", "ac3", "-b:a", "448k"))
            report = _measure(video, seconds, args.threads, work)
            print(
                f"5.1 AC-3 48 kHz, {seconds:.0f} s: peak {report['peak_mb']:.0f} MB (stereo 44.1 kHz: {stereo:.0f} MB)"
            )
    print(f"total runtime {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
