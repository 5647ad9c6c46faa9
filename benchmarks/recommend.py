"""Benchmark: recommending from a synthetic library of 1,000,000 clips at the real model's dimensions.

The library is what `sound-of-story index` stores for the real model (CLIP ViT-B/32 + AST): global
audio embeddings of D = 512 in the re-rank store (float16, memory-mapped) and a FAISS index built
by `CoarseIndex` with the library's default settings (`auto` picks IVF-PQ above 100,000 clips).
The embeddings are clustered (1,000 centres, like sounds of a kind), and every query gets 10
planted true neighbours (cosine ~0.88 down to ~0.71 with the query; cluster mates ~0.5), so exact
search has a known answer, which the run checks.

Reported, with the baselines measured in the same run (the machine is shared: absolute times are noisy):
- index build time (train + add) and index size (the serialised FAISS index, what it holds in memory);
- p50 / p95 latency of stage 1 (FAISS search + exact refinement from the store) per single query
  (one faiss thread: on a shared 2-core machine a second OpenMP thread makes single queries slower),
  and its ratio to exact flat search over the same 1M vectors;
- recall@10 of stage 1 against exact search (its top 10 against the exact top 10), and how many of
  the exact top 10 are among the 100 candidates handed to re-ranking; a sweep of nprobe and
  refine_factor shows the settings that reach 0.99;
- HNSW at a smaller size (`--hnsw-clips`; its build is slow on 2 cores), build time extrapolated to
  1M as N log N (stated as an extrapolation);
- stage 2: re-ranking 100 candidates with the multi-grained similarity (40 frames) at 1213 tokens
  (AST, no pooling), 101 (frequency pooling) and 7 (store_tokens=7), read from a real store;
- the re-rank store's size at 1M clips for those token counts (float16), and which fits in 8 GiB.

Memory: the 1M x 512 float16 store is 1 GiB on disk; the flat baseline adds 2 GiB of float32; the
peak resident size is printed (it stays under ~4.5 GiB).

Run: python benchmarks/recommend.py [--clips 1000000] [--queries 200] [--hnsw-clips 100000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch

from sound_of_story.modeling.modeling_sos import multi_grained_similarity
from sound_of_story.recommendation import CoarseIndex, CoarseIndexSettings, RerankStore
from sound_of_story.recommendation.coarse_index import ivfpq_shape

DIM = 512  # CLIP ViT-B/32 projection
AST_TOKENS = 1213  # AST on 1024 x 128 fbank: distillation token + 12 x 101 patches
FREQUENCY_TOKENS = 101  # audio_token_pooling="frequency"
SMALL_TOKENS = 7  # store_tokens=7: the store of 1M clips fits in 8 GiB
NUM_FRAMES = 40
TEMPERATURE = 0.01
CLUSTERS = 1000
PLANTED = 10
CHUNK = 65_536
GIB = 2**30
BUILD_THREADS = faiss.omp_get_max_threads()


def peak_gib() -> float:
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 2**20


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def synthetic_library(
    num: int, num_queries: int, neighbour_noise: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float16 library (num, DIM), float32 queries, and the planted neighbour rows of each query (num_queries, PLANTED)."""
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((CLUSTERS, DIM)).astype(np.float32))
    library = np.empty((num, DIM), dtype=np.float16)
    for start in range(0, num, CHUNK):
        count = min(CHUNK, num - start)
        # Cluster mates have cosine ~0.5 with each other and ~0.7 with their centre.
        points = centres[rng.integers(CLUSTERS, size=count)] + rng.standard_normal((count, DIM)).astype(
            np.float32
        ) / math.sqrt(DIM)
        library[start : start + count] = normalise(points)
    queries = normalise(
        centres[rng.integers(CLUSTERS, size=num_queries)]
        + rng.standard_normal((num_queries, DIM)).astype(np.float32) / math.sqrt(DIM)
    )
    planted = rng.choice(num, size=(num_queries, PLANTED), replace=False)
    for q in range(num_queries):
        # Neighbour j: noise of norm neighbour_noise + 0.05 j around the query (0.55: cosine ~0.88 down to ~0.71).
        noise = (
            normalise(rng.standard_normal((PLANTED, DIM)).astype(np.float32))
            * (neighbour_noise + 0.05 * np.arange(PLANTED))[:, None]
        )
        library[planted[q]] = normalise(queries[q] + noise)
    return library, queries.astype(np.float32), planted


def exact_top(store: RerankStore, queries: np.ndarray, k: int, limit: int | None = None) -> np.ndarray:
    """Exact top-k rows by inner product over the store's first ``limit`` rows (default all), chunk by chunk."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), k), dtype=np.int64)
    view = store.global_view()
    limit = len(view) if limit is None else limit
    for start in range(0, limit, CHUNK):
        scores = queries @ view[start : min(limit, start + CHUNK)].T
        rows = np.arange(start, start + scores.shape[1])
        all_scores = np.concatenate([best_scores, scores], axis=1)
        all_rows = np.concatenate([best_rows, np.broadcast_to(rows, scores.shape)], axis=1)
        keep = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
        best_scores, best_rows = np.take_along_axis(all_scores, keep, 1), np.take_along_axis(all_rows, keep, 1)
    return best_rows


def timed_search(index: CoarseIndex, store: RerankStore, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows found per query (one query per call, as `recommend` does) and each call's seconds."""
    rows, seconds = [], []
    faiss.omp_set_num_threads(
        1
    )  # one query at a time: OpenMP threads only wait on each other on a shared 2-core machine
    for q in queries:
        start = time.perf_counter()
        _, found = index.search(q[None], k, exact_rows=store.global_rows)
        seconds.append(time.perf_counter() - start)
        rows.append(found[0])
    faiss.omp_set_num_threads(BUILD_THREADS)
    return np.array(rows), np.array(seconds)


def recall(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)]))


def candidates_recall(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(f) & set(t[:k])) / k for f, t in zip(found, truth)]))


def percentiles_ms(seconds: np.ndarray) -> tuple[float, float]:
    return float(np.percentile(seconds, 50) * 1e3), float(np.percentile(seconds, 95) * 1e3)


def index_bytes(index: CoarseIndex, workdir: Path) -> int:
    path = workdir / "probe.faiss"
    index.save(path)
    size = path.stat().st_size
    path.unlink()
    return size


def stage2_latency(workdir: Path, num_tokens: int, rerank: int, repeats: int) -> float:
    """Median seconds to read ``rerank`` random rows of a real store with ``num_tokens`` tokens (CRC-checked) and score them."""
    rng = np.random.default_rng(1)
    folder = workdir / f"store-{num_tokens}"
    folder.mkdir()
    store = RerankStore(folder, [], "float16", num_tokens, DIM)
    rows_in_store = 4 * rerank
    for start in range(0, rows_in_store, 100):
        tokens = normalise(rng.standard_normal((100, num_tokens, DIM)).astype(np.float32))
        store.write_shard(f"{start:06d}", normalise(rng.standard_normal((100, DIM)).astype(np.float32)), tokens)
    video = torch.from_numpy(normalise(rng.standard_normal((1, DIM)).astype(np.float32)))
    frames = torch.from_numpy(normalise(rng.standard_normal((1, NUM_FRAMES, DIM)).astype(np.float32)))
    times = []
    for _ in range(repeats):
        rows = np.sort(rng.choice(rows_in_store, size=rerank, replace=False))
        start = time.perf_counter()
        global_embeds, token_embeds = store.rows(rows)
        with torch.inference_mode():
            multi_grained_similarity(
                torch.from_numpy(global_embeds), torch.from_numpy(token_embeds), video, frames, temperature=TEMPERATURE
            )
        times.append(time.perf_counter() - start)
    shutil.rmtree(folder)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--hnsw-clips", type=int, default=100_000)
    parser.add_argument("--rerank", type=int, default=100)
    parser.add_argument(
        "--neighbour-noise",
        type=float,
        default=0.55,
        help="noise norm of the nearest planted neighbour (1.0: cosine ~0.71 down to ~0.6, close to the cluster mates' ~0.5)",
    )
    parser.add_argument("--skip-stage2", action="store_true", help="leave out the re-rank timings and the store table")
    parser.add_argument("--workdir", type=Path, help="where the store and indexes go (default: a temporary folder)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sos-recommend-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads; {args.clips:,} clips x {DIM} dims, {args.queries} queries"
    )

    start = time.perf_counter()
    library, queries, planted = synthetic_library(args.clips, args.queries, args.neighbour_noise)
    (workdir / "store").mkdir(exist_ok=True)
    store = RerankStore(workdir / "store", [], "float16", 0, DIM)  # stage 1 reads global embeddings only
    store.write_shard("000000", library)
    del library
    print(f"synthetic library written to the store (float16, memory-mapped): {time.perf_counter() - start:.1f} s")

    truth = exact_top(store, queries, PLANTED)
    planted_ok = np.mean([set(t) == set(p) for t, p in zip(truth, planted)])
    print(
        f"exact top-10 equals the planted neighbours for {planted_ok:.1%} of queries (neighbour noise {args.neighbour_noise})"
    )

    # Exact baseline: flat search over the same vectors (float32 in faiss).
    start = time.perf_counter()
    flat = CoarseIndex.build(store.global_view(), CoarseIndexSettings(index_type="flat"))
    flat_build = time.perf_counter() - start
    flat_found, flat_seconds = timed_search(flat, store, queries, args.rerank)
    flat_p50, flat_p95 = percentiles_ms(flat_seconds)
    print(
        f"flat (exact):   build {flat_build:6.1f} s, index {index_bytes(flat, workdir) / GIB:5.2f} GiB, p50 {flat_p50:7.2f} ms, p95 {flat_p95:7.2f} ms, recall@10 {recall(flat_found, truth):.3f}"
    )
    del flat

    defaults = CoarseIndexSettings()
    nlist, pq_m, nbits = ivfpq_shape(args.clips, DIM, defaults)
    start = time.perf_counter()
    ivfpq = CoarseIndex.build(store.global_view(), defaults)
    build = time.perf_counter() - start
    size = index_bytes(ivfpq, workdir)
    found, seconds = timed_search(ivfpq, store, queries, args.rerank)
    p50, p95 = percentiles_ms(seconds)
    print(
        f"{ivfpq.kind} (auto at {args.clips:,}; nlist {nlist}, {pq_m} x {nbits}-bit codes, nprobe {defaults.nprobe}, refine x{defaults.refine_factor}): "
        f"build {build:.1f} s, index {size / 2**20:.0f} MiB ({size / args.clips:.0f} B/clip)"
    )
    print(
        f"  DEFAULTS: p50 {p50:.2f} ms, p95 {p95:.2f} ms (p50 {p50 / flat_p50:.3f} x flat); recall@10 {recall(found, truth):.3f}; "
        f"exact top-10 among the {args.rerank} candidates: {candidates_recall(found, truth):.3f}"
    )
    print("  sweep (nprobe, refine_factor): recall@10, candidates recall, p50 ms")
    for nprobe in (8, 16, 32, 64, 128):
        for refine in (1, 4, 10):
            ivfpq.set_search(nprobe=nprobe, refine_factor=refine)
            sub = queries[: max(50, args.queries // 2)]
            found, seconds = timed_search(ivfpq, store, sub, args.rerank)
            print(
                f"    {nprobe:4d} {refine:3d}: {recall(found, truth[: len(sub)]):.3f}  {candidates_recall(found, truth[: len(sub)]):.3f}  {percentiles_ms(seconds)[0]:7.2f}"
            )
    del ivfpq

    hnsw_clips = min(args.hnsw_clips, args.clips)
    if hnsw_clips:
        start = time.perf_counter()
        hnsw = CoarseIndex.build(store.global_view()[:hnsw_clips], CoarseIndexSettings(index_type="hnsw"))
        hnsw_build = time.perf_counter() - start
        sub_truth = exact_top(store, queries, PLANTED, limit=hnsw_clips)
        found, seconds = timed_search(hnsw, store, queries, args.rerank)
        p50_h, p95_h = percentiles_ms(seconds)
        scale = args.clips * math.log(args.clips) / (hnsw_clips * math.log(hnsw_clips))
        print(
            f"hnsw at {hnsw_clips:,} (M 32, efConstruction 80, efSearch 128): build {hnsw_build:.1f} s "
            f"(EXTRAPOLATED to {args.clips:,} as N log N: {hnsw_build * scale / 60:.0f} min), index {index_bytes(hnsw, workdir) / 2**20:.0f} MiB, "
            f"p50 {p50_h:.2f} ms, p95 {p95_h:.2f} ms, recall@10 {recall(found, sub_truth):.3f}"
        )
        del hnsw

    if not args.skip_stage2:
        print(
            f"stage 2: re-rank {args.rerank} candidates against {NUM_FRAMES} frames (store read + CRC + multi-grained similarity), median of 5:"
        )
        for tokens in (AST_TOKENS, FREQUENCY_TOKENS, SMALL_TOKENS):
            print(f"  {tokens:5d} tokens: {stage2_latency(workdir, tokens, args.rerank, 5) * 1e3:8.1f} ms")

        print("re-rank store at 1,000,000 clips (float16: global f_a + sequence f_as + CRC):")
        for tokens, what in (
            (AST_TOKENS, "every AST token (exact re-ranking)"),
            (FREQUENCY_TOKENS, "audio_token_pooling='frequency' model"),
            (SMALL_TOKENS, "--store-tokens 7"),
        ):
            size = 1_000_000 * (DIM * 2 * (1 + tokens) + 4)
            print(
                f"  {tokens:5d} tokens, {what}: {size / GIB:9.1f} GiB{'  <- fits in 8 GiB' if size <= 8 * GIB else ''}"
            )
    print(f"peak resident memory: {peak_gib():.2f} GiB")
    if args.workdir is None:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
