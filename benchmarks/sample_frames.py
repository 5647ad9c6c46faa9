"""Benchmark: drawing the sample clips' frames (`dataset_builder.samples.pictures.Scene.frames`).

The demo makes 264 clips of 10 s (63,000 frames of 320 x 180); drawing them was 60% of a clip's time.
This measures, in one run on the same scene:

- the baseline: the frames as they were drawn before (the canvas redrawn per clip in float64, Gaussian
  float64 film grain, three full-frame temporaries per frame), written out here as it was;
- `Scene.frames` now (the canvas drawn once per scene in float32, integer grain on int16);

and prints the per-frame time of each, the speed-up as a ratio, and how far the two pictures are apart
(mean absolute difference in levels of 255: the grain differs, the picture must not).

Run: python benchmarks/sample_frames.py [--frames N] [--repeats K]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from sound_of_story.dataset_builder.samples import pictures
from sound_of_story.dataset_builder.samples.categories import CATEGORIES_BY_NAME


def baseline_frames(scene: pictures.Scene, lo: int, hi: int):
    """`Scene.frames` before the change, for comparison: float64 canvas and Gaussian float64 grain."""
    start, end = max(lo, scene.start_frame), min(hi, scene.end_frame)
    canvas = scene.canvas()
    motion = np.random.default_rng([scene.seed, 2])
    length = scene.end_frame - scene.start_frame
    direction = motion.uniform(0, 2 * math.pi)
    travel = min(motion.uniform(1.0, 3.0) * length / pictures.FPS, pictures.MAX_PAN_PX)
    flicker = CATEGORIES_BY_NAME[scene.category].flicker
    margin = pictures.CANVAS_MARGIN
    for k in range(start, end):
        progress = (k - scene.start_frame) / max(length - 1, 1) - 0.5
        dx = int(round(margin + travel * progress * math.cos(direction)))
        dy = int(round(margin + travel * progress * math.sin(direction)))
        frame_rng = np.random.default_rng([scene.seed, 3, k])
        frame = canvas[dy : dy + pictures.HEIGHT, dx : dx + pictures.WIDTH] * (
            1 + flicker * frame_rng.standard_normal()
        )
        frame = frame + frame_rng.normal(0.0, 3.0, size=frame.shape)
        yield np.clip(frame, 0, 255).astype(np.uint8)


def per_frame_ms(frames, count: int) -> float:
    began = time.perf_counter()
    for _ in frames:
        pass
    return (time.perf_counter() - began) / count * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=240, help="frames per scene (240: a 10 s clip)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best of each is kept")
    args = parser.parse_args()

    scene = pictures.Scene("rain", 0, args.frames, seed=11, light_seed=5, light_against=None)
    best_base = best_new = float("inf")
    for _ in range(args.repeats):
        pictures._canvas.cache_clear()  # each round draws its canvas, as the first clip of a scene does
        best_base = min(best_base, per_frame_ms(baseline_frames(scene, 0, args.frames), args.frames))
        pictures._canvas.cache_clear()
        best_new = min(best_new, per_frame_ms(scene.frames(0, args.frames), args.frames))
    diffs = [
        np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()
        for a, b in zip(baseline_frames(scene, 0, args.frames), scene.frames(0, args.frames), strict=True)
    ]
    print(f"frames of {pictures.WIDTH}x{pictures.HEIGHT}, {args.frames} per scene, best of {args.repeats} rounds")
    print(f"baseline (float64, Gaussian grain): {best_base:.3f} ms/frame")
    print(f"Scene.frames (float32, integer grain): {best_new:.3f} ms/frame")
    print(f"speed-up: {best_base / best_new:.2f}x the baseline")
    print(f"mean |difference| between the two: {np.mean(diffs):.2f} levels of 255 (grain only)")


if __name__ == "__main__":
    main()
