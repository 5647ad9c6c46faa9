"""FAD throughput, measured against baselines in the same run.

1. VGGish embedding: seconds of audio embedded per wall-clock second, batched (many clips per
   forward pass, ``AudioEmbedder.embed(clips)``) against one clip per forward pass (what
   frechet-audio-distance does), for short clips (1-2 s) and for SoSgen's 5.12 s clips.
   Target: batched >= 3x per-clip on CPU.
2. Fréchet distance: our symmetric eigen-decomposition square root against scipy's ``sqrtm``
   of the covariance product (frechet-audio-distance's formula), at 128 and 2048 dimensions.

VGGish runs with RANDOM weights (the real ones are not redistributable); speed does not depend
on the weight values, but no FAD printed here means anything.

    python benchmarks/fad_throughput.py                     # default sizes
    python benchmarks/fad_throughput.py --num-clips 16      # quicker
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import scipy.linalg
import torch

from sound_of_story.metrics.fad import VGGishEmbedder, frechet_distance


WORKLOADS = {
    "short": (1.0, 2.0),  # short clips, e.g. LSMDC-style 1-2 s cuts: 1-2 VGGish examples per clip
    "sosgen": (5.12, 5.12),  # SoSgen / Riffusion output length: 5 examples per clip
}


def make_clips(num_clips: int, min_seconds: float, max_seconds: float, seed: int) -> list[np.ndarray]:
    """Tones plus noise of random lengths at 16 kHz (no resampling, so the network dominates)."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(num_clips):
        n = int(rng.uniform(min_seconds, max_seconds) * 16_000)
        t = np.arange(n) / 16_000
        clips.append((0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) + 0.05 * rng.standard_normal(n)).astype(np.float32))
    return clips


def timed(candidates: dict[str, Callable[[], object]], repeats: int, warm_up: bool = True) -> dict[str, tuple[float, object]]:
    """Best wall time of ``repeats`` calls of each function, and its last result, by name.

    The calls alternate between the functions (after one untimed warm-up call each), so that
    load from other processes on a shared machine falls on all of them alike; the minimum, not
    the median, because other processes only ever add time.
    """
    results = {name: fn() if warm_up else None for name, fn in candidates.items()}
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (min(times[name]), results[name]) for name in candidates}


def bench_embedding(args: argparse.Namespace) -> None:
    embedder = VGGishEmbedder.from_random_weights(seed=0)
    print(f"== VGGish embedding, {embedder.description}, torch threads: {torch.get_num_threads()}, best of {args.repeats} runs")
    for name, (low, high) in WORKLOADS.items():
        clips = make_clips(args.num_clips, low, high, args.seed)
        audio_seconds = sum(c.shape[0] for c in clips) / 16_000
        measured = timed(
            {
                "per_clip": lambda: [embedder.embed([c], 16_000, batch_size=args.batch_size)[0] for c in clips],
                "batched": lambda: embedder.embed(clips, 16_000, batch_size=args.batch_size),
            },
            args.repeats,
        )
        (per_clip_time, per_clip), (batched_time, batched) = measured["per_clip"], measured["batched"]
        max_diff = max(float(np.abs(a - b).max()) for a, b in zip(per_clip, batched))
        per_clip_rate, batched_rate = audio_seconds / per_clip_time, audio_seconds / batched_time
        print(f"   workload '{name}': {len(clips)} clips of {low:g}-{high:g} s ({audio_seconds:.1f} s of 16 kHz audio)")
        print(f"      one clip per forward pass (baseline): {per_clip_rate:8.2f} s of audio / s")
        print(f"      batched, {args.batch_size} examples per pass:    {batched_rate:8.2f} s of audio / s")
        print(f"      batched / per-clip = {batched_rate / per_clip_rate:.2f}x (target >= 3x); max |embedding difference| {max_diff:.1e}")


def scipy_trace_sqrt(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    return float(np.trace(scipy.linalg.sqrtm(sigma1 @ sigma2)).real)


def bench_frechet(args: argparse.Namespace) -> None:
    print("== Fréchet distance: symmetric eigh square root vs scipy.linalg.sqrtm(S1 @ S2)")
    rng = np.random.default_rng(args.seed)
    for dim, repeats, warm_up in ((128, args.repeats_small, True), (2048, args.repeats_large, False)):
        n = 2 * dim
        mix = rng.standard_normal((dim, dim)) / np.sqrt(dim)
        a, b = rng.standard_normal((n, dim)) @ mix, rng.standard_normal((n, dim)) @ mix + 0.1
        mu1, sigma1, mu2, sigma2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
        diff = mu1 - mu2
        measured = timed(
            {
                "eigh": lambda: frechet_distance(mu1, sigma1, mu2, sigma2),
                "sqrtm": lambda: float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * scipy_trace_sqrt(sigma1, sigma2)),
            },
            repeats,
            warm_up,
        )
        (ours_time, ours), (scipy_time, reference) = measured["eigh"], measured["sqrtm"]
        print(
            f"   d={dim:5d} (n={n}): eigh {ours_time:8.4f} s, sqrtm {scipy_time:8.4f} s, sqrtm / eigh = {scipy_time / ours_time:6.2f}x; "
            f"FD {ours:.6f} vs {reference:.6f} (relative difference {abs(ours - reference) / abs(reference):.1e})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-clips", type=int, default=32, help="clips per embedding workload")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per embedding measurement (the best is kept)")
    parser.add_argument("--repeats-small", type=int, default=5, help="timed runs at 128 dimensions")
    parser.add_argument("--repeats-large", type=int, default=2, help="timed runs at 2048 dimensions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice); 1 is steadier on a busy machine")
    parser.add_argument("--skip-frechet", action="store_true", help="only the embedding benchmark")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_embedding(args)
    if not args.skip_frechet:
        bench_frechet(args)


if __name__ == "__main__":
    main()
