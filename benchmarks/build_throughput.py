"""Dataset build throughput, as ratios against baselines measured in the same run.

1. One 150 s sample clip (CMD length): time of the whole per-story processing (center
   backend: decode, speech removal, speech ratios, key frames, slices, filter, cache write)
   divided by the time ffmpeg alone needs to decode the same clip (audio and video, to null).
   Target: at most 2.0.
2. Four clips: ``--num-proc 2`` against ``--num-proc 1`` (processing only, fresh caches).
   Target: at least 1.7x faster (needs 2 free cores).

Run: python benchmarks/build_throughput.py [--duration 150] [--clips 4]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from sound_of_story.dataset_builder.build import process_stories
from sound_of_story.dataset_builder.manifest import read_manifest
from sound_of_story.dataset_builder.processing import ProcessingParams
from sound_of_story.dataset_builder.samples import generate_samples


def _ffmpeg_decode(path: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=150.0)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    params = ProcessingParams()
    with tempfile.TemporaryDirectory(prefix="sos-bench-") as tmp:
        tmp = Path(tmp)
        generate_samples(tmp / "clips", num_clips=args.clips, seed=0, duration_s=args.duration, progress=False)
        stories, _ = read_manifest(tmp / "clips" / "manifest.jsonl")
        video = Path(stories[0].videos[0])
        process_stories(stories[:1], params, tmp / "warm", progress=False)  # imports, model load

        decode = statistics.median(_ffmpeg_decode(video) for _ in range(args.repeats))
        build = []
        for r in range(args.repeats):
            start = time.perf_counter()
            process_stories(stories[:1], params, tmp / f"one-{r}", progress=False)
            build.append(time.perf_counter() - start)
        build_t = statistics.median(build)
        print(f"clip: {args.duration:g} s, {video.stat().st_size / 1e6:.1f} MB")
        print(f"ffmpeg decode alone      : {decode:7.2f} s")
        print(f"build per story (center) : {build_t:7.2f} s")
        print(f"ratio build / decode     : {build_t / decode:7.2f}   (target <= 2.0)")

        times = {}
        for n in (1, 2):
            start = time.perf_counter()
            results = process_stories(stories, params, tmp / f"proc-{n}", num_proc=n, progress=False)
            times[n] = time.perf_counter() - start
            assert all(entry for _, entry, _, _ in results)
        print(f"{len(stories)} stories, --num-proc 1: {times[1]:7.2f} s; --num-proc 2: {times[2]:7.2f} s")
        print(f"speed-up num-proc 2 / 1  : {times[1] / times[2]:7.2f}x (target >= 1.7x; includes worker start-up)")


if __name__ == "__main__":
    main()
