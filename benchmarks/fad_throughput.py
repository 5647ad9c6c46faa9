"""FAD throughput, measured against baselines in the same run.

1. VGGish embedding: seconds of audio embedded per wall-clock second, batched (many clips per
   forward pass, ``AudioEmbedder.embed(clips)``) against one clip per forward pass (what
   frechet-audio-distance does), for short clips (1-2 s) and for SoSgen's 5.12 s clips.
   Target: batched >= 3x per-clip on CPU.
2. Fréchet distance: our symmetric eigen-decomposition square root against scipy's ``sqrtm``
   of the covariance product (frechet-audio-distance's formula), at 128 and 2048 dimensions.
3. Resamplers on 44.1 kHz stereo clips (``--resampler-clips``): torchaudio's Kaiser sinc against the
   default resampy (torchvggish's), speed ratio and the deviation of the log-mels and the VGGish
   embeddings (the figure the FAD module card states).

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
        clips.append(
            (0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)
        )
    return clips


def timed(
    candidates: dict[str, Callable[[], object]], repeats: int, warm_up: bool = True
) -> dict[str, tuple[float, object]]:
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
    print(
        f"== VGGish embedding, {embedder.description}, torch threads: {torch.get_num_threads()}, best of {args.repeats} runs"
    )
    for name, (low, high) in WORKLOADS.items():
        clips = make_clips(args.num_clips, low, high, args.seed)
        audio_seconds = sum(c.shape[0] for c in clips) / 16_000
        measured = timed(
            {
                "per_clip": lambda clips=clips: [
                    embedder.embed([c], 16_000, batch_size=args.batch_size)[0] for c in clips
                ],
                "batched": lambda clips=clips: embedder.embed(clips, 16_000, batch_size=args.batch_size),
            },
            args.repeats,
        )
        (per_clip_time, per_clip), (batched_time, batched) = measured["per_clip"], measured["batched"]
        max_diff = max(float(np.abs(a - b).max()) for a, b in zip(per_clip, batched))
        per_clip_rate, batched_rate = audio_seconds / per_clip_time, audio_seconds / batched_time
        print(
            f"   workload '{name}': {len(clips)} clips of {low:g}-{high:g} s ({audio_seconds:.1f} s of 16 kHz audio)"
        )
        print(f"      one clip per forward pass (baseline): {per_clip_rate:8.2f} s of audio / s")
        print(f"      batched, {args.batch_size} examples per pass:    {batched_rate:8.2f} s of audio / s")
        print(
            f"      batched / per-clip = {batched_rate / per_clip_rate:.2f}x (target >= 3x); max |embedding difference| {max_diff:.1e}"
        )


def bench_resamplers(args: argparse.Namespace) -> None:
    from sound_of_story.audio import prepare_waveform
    from sound_of_story.metrics.fad import log_mel_spectrogram

    rng = np.random.default_rng(args.seed)
    rate, seconds = 44_100, 10.0
    t = np.arange(int(seconds * rate)) / rate
    clips = []
    for _ in range(args.resampler_clips):  # music-like: a few harmonic tones with vibrato, plus noise
        f0 = rng.uniform(110, 880)
        tone = sum(0.2 / k * np.sin(2 * np.pi * k * f0 * (t + 0.002 * np.sin(2 * np.pi * 5 * t))) for k in range(1, 6))
        clips.append(np.stack([tone, np.roll(tone, 50)]) + 0.02 * rng.standard_normal((2, t.size)))
    clips = [c.astype(np.float32) for c in clips]
    measured = timed(
        {
            m: lambda m=m: [prepare_waveform(c, rate, 16_000, resampler=m) for c in clips]
            for m in ("resampy", "torchaudio")
        },
        args.repeats,
    )
    (slow, exact), (fast, approx) = measured["resampy"], measured["torchaudio"]
    embedder = VGGishEmbedder.from_random_weights(seed=0)
    mel = max(float(np.abs(log_mel_spectrogram(a) - log_mel_spectrogram(b)).max()) for a, b in zip(exact, approx))
    emb_a, emb_b = np.concatenate(embedder.embed(exact, 16_000)), np.concatenate(embedder.embed(approx, 16_000))
    print(
        f"== resampling {len(clips)} clips of {seconds:g} s, 44.1 kHz stereo -> 16 kHz mono, best of {args.repeats} runs"
    )
    print(
        f"   torchaudio / resampy speed = {slow / fast:.2f}x ({len(clips) * seconds / slow:.1f} and {len(clips) * seconds / fast:.1f} s of audio / s)"
    )
    print(
        f"   max |waveform difference| {max(float(np.abs(a - b).max()) for a, b in zip(exact, approx)):.2e}, max |log-mel difference| {mel:.2e}"
    )
    print(
        f"   VGGish (random weights): max |embedding difference| {np.abs(emb_a - emb_b).max():.2e} against values up to {np.abs(emb_a).max():.2f}"
    )


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
                "eigh": lambda mu1=mu1, sigma1=sigma1, mu2=mu2, sigma2=sigma2: frechet_distance(
                    mu1, sigma1, mu2, sigma2
                ),
                "sqrtm": lambda diff=diff, sigma1=sigma1, sigma2=sigma2: float(
                    diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * scipy_trace_sqrt(sigma1, sigma2)
                ),
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
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs per embedding measurement (the best is kept)"
    )
    parser.add_argument("--repeats-small", type=int, default=5, help="timed runs at 128 dimensions")
    parser.add_argument("--repeats-large", type=int, default=2, help="timed runs at 2048 dimensions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's choice); 1 is steadier on a busy machine"
    )
    parser.add_argument("--skip-frechet", action="store_true", help="only the embedding benchmark")
    parser.add_argument(
        "--resampler-clips", type=int, default=4, help="44.1 kHz clips of the resampler comparison (0: skip it)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_embedding(args)
    if not args.skip_frechet:
        bench_frechet(args)
    if args.resampler_clips:
        bench_resamplers(args)


if __name__ == "__main__":
    main()
