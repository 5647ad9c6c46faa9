"""Story encoding for Table 2: stories per second without and with the embedding cache, in the same run.

Builds a small SoS dataset from sample clips (or takes ``--dataset``), a tiny random SoSRetrievalModel, and
times ``encode_stories`` three ways: no cache (the baseline), a cold cache (encode and write every entry),
and a warm cache (read every entry: what a rerun or a second direction costs). Prints ratios to the
no-cache run; the tiny model makes encoding cheap, so the ratio is a lower bound of what the cache saves
with real CLIP/AST weights (where the forward pass dominates).

    python benchmarks/evaluate_encode.py                      # builds 4 CMD-style stories first
    python benchmarks/evaluate_encode.py --dataset demo_output/sos --split train
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from sound_of_story.evaluation.retrieval import encode_stories
from sound_of_story.evaluation.table2 import load_stories_split
from sound_of_story.modeling import SoSRetrievalModel
from sound_of_story.modeling.tiny_random import tiny_retrieval_config, tiny_retrieval_processor


def build_dataset(root: Path, num_clips: int) -> Path:
    from sound_of_story.dataset_builder.build import build_dataset as build
    from sound_of_story.dataset_builder.samples import generate_samples

    generate_samples(root / "clips", num_clips=num_clips, seed=0, duration_s=20.0, style="cmd", progress=False)
    build(root / "clips" / "manifest.jsonl", root / "sos", configs=("stories",), test_size=0.0, progress=False)
    return root / "sos"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", help="a built SoS folder (default: build one from --num-clips sample clips)")
    parser.add_argument("--split", default="train", help="split to encode")
    parser.add_argument("--num-clips", type=int, default=4, help="sample clips to build when no --dataset is given")
    parser.add_argument("--batch-size", type=int, default=4, help="stories per forward pass")
    parser.add_argument("--pair", choices=("audio-video", "audio-text"), default="audio-video")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or build_dataset(Path(tmp), args.num_clips)
        stories = load_stories_split(str(dataset), args.split)
        torch.manual_seed(0)
        model, processor = SoSRetrievalModel(tiny_retrieval_config()).eval(), tiny_retrieval_processor()
        cache = Path(tmp) / "cache"
        timings = {}
        for name, cache_dir in (("no cache", None), ("cold cache", cache), ("warm cache", cache)):
            start = time.perf_counter()
            result = encode_stories(
                model,
                processor,
                stories,
                pair=args.pair,
                batch_size=args.batch_size,
                cache_dir=cache_dir,
                progress=False,
            )
            timings[name] = time.perf_counter() - start
            print(
                f"{name:>10}: {len(stories) / timings[name]:8.2f} stories/s ({result.cache_hits} of {len(stories)} from the cache)"
            )
        base = timings["no cache"]
        print(
            f"cold / no cache = {base / timings['cold cache']:.2f}x speed; warm / no cache = {base / timings['warm cache']:.1f}x speed"
        )


if __name__ == "__main__":
    main()
