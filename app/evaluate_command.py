"""``sound-of-story evaluate``: FAD between two audio folders, retrieval ranks of a similarity matrix.

Registered by ``add_evaluate_parser(subparsers)``; heavy imports (torch) happen inside the
subcommands so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sound_of_story.app.help_formatter import HelpFormatter

SIMILARITY_FORMATS = (
    ".npy: a 2-D array (queries x candidates); "
    ".npz: key 'similarity' (or the only array), optional 'ground_truth'; "
    ".pt/.pth: a 2-D tensor, or a dict with 'similarity' and optional 'ground_truth' (read with weights_only=True); "
    ".csv/.tsv/.txt: rows of numbers separated by commas, tabs or spaces"
)


def load_similarity(path: str | Path, key: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a similarity matrix (and ground-truth indices if the file holds them); see SIMILARITY_FORMATS."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"similarity file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    ground_truth = None
    if suffix == ".npy":
        similarity = np.load(path, allow_pickle=False)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            names = list(data.files)
            name = key or ("similarity" if "similarity" in names else names[0] if len(names) == 1 else None)
            if name is None or name not in names:
                raise ValueError(f"{str(path)!r} holds arrays {names}; name the similarity matrix with --key (default 'similarity')")
            similarity = data[name]
            ground_truth = data["ground_truth"] if "ground_truth" in names else None
    elif suffix in (".pt", ".pth"):
        import torch

        content = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(content, dict):
            name = key or "similarity"
            if name not in content:
                raise ValueError(f"{str(path)!r} holds keys {sorted(content)}; name the similarity matrix with --key (default 'similarity')")
            similarity, ground_truth = content[name], content.get("ground_truth")
        else:
            similarity = content
        similarity = similarity.double().numpy() if isinstance(similarity, torch.Tensor) else np.asarray(similarity)
        ground_truth = ground_truth.numpy() if isinstance(ground_truth, torch.Tensor) else ground_truth
    elif suffix in (".csv", ".tsv", ".txt"):
        delimiter = {".csv": ",", ".tsv": "\t"}.get(suffix)
        similarity = np.loadtxt(path, delimiter=delimiter, ndmin=2)
    else:
        raise ValueError(f"unsupported similarity file type {suffix!r}; accepted: {SIMILARITY_FORMATS}")
    return similarity, ground_truth


def _write_json(path: Path | None, payload: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}")


def _cmd_fad(args: argparse.Namespace) -> int:
    from sound_of_story.metrics.fad import ClapEmbedder, VGGishEmbedder, compute_fad, list_audio_files

    pred_files, ref_files = list_audio_files(args.pred), list_audio_files(args.ref)  # fail on bad folders before loading a model
    if args.embedder == "clap":
        if args.random_weights or args.checkpoint or args.pca_params or args.keep_final_relu or args.pad_short_clips:
            raise ValueError("--random-weights, --checkpoint, --pca-params, --keep-final-relu and --pad-short-clips apply to --embedder vggish only")
        embedder = ClapEmbedder.from_pretrained(args.clap_model)
    elif args.random_weights:
        if args.checkpoint is not None:
            raise ValueError("pass either --checkpoint or --random-weights, not both")
        embedder = VGGishEmbedder.from_random_weights(pca_params=args.pca_params, final_relu=args.keep_final_relu, pad_short_clips=args.pad_short_clips)
    else:
        embedder = VGGishEmbedder.from_checkpoint(args.checkpoint, pca_params=args.pca_params, final_relu=args.keep_final_relu, pad_short_clips=args.pad_short_clips)
    if embedder.random_weights:
        print(f"WARNING: {embedder.description}: the FAD below is a smoke-test number, not comparable with any published FAD")
    result = compute_fad(
        pred_files, ref_files, embedder, batch_size=args.batch_size, cache=args.cache_dir, progress=not args.quiet,
        fad_inf=args.fad_inf, fad_inf_min_n=args.fad_inf_min_n, per_clip=args.per_clip,
    )  # fmt: skip
    print(f"embedder: {result.embedder}")
    print(f"predictions: {result.num_pred_clips} clips, {result.num_pred_embeddings} embeddings; references: {result.num_ref_clips} clips, {result.num_ref_embeddings} embeddings")
    print(f"FAD: {result.fad:.6f}" + ("  (RANDOM weights)" if result.random_weights else ""))
    if result.fad_infinity is not None:
        print(f"FAD-inf: {result.fad_infinity.value:.6f} (slope {result.fad_infinity.slope:.4g}, R^2 {result.fad_infinity.r2:.4f})")
    if result.per_clip_fad is not None:
        for name, score in zip(result.pred_clip_names, result.per_clip_fad):
            print(f"  {score:12.6f}  {name}")
    _write_json(args.json, result.to_dict())
    return 0


def _cmd_retrieval(args: argparse.Namespace) -> int:
    from sound_of_story.metrics.retrieval import retrieval_metrics

    similarity, ground_truth = load_similarity(args.similarity, args.key)
    results = retrieval_metrics(similarity, ground_truth, ks=args.ks, tie_rule=args.tie_rule, direction_names=tuple(args.direction_names))
    keys = [k for k in next(iter(results.values())) if k != "num_queries"]
    print(f"{'direction':<24}" + "".join(f"{k:>10}" for k in keys) + f"{'queries':>10}")
    for direction, metrics in results.items():
        print(f"{direction:<24}" + "".join(f"{metrics[k]:>10.3f}" for k in keys) + f"{metrics['num_queries']:>10d}")
    _write_json(args.json, {"tie_rule": args.tie_rule, **results})
    return 0


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``evaluate fad`` and ``evaluate retrieval`` on a ``add_subparsers()`` object."""
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate generated audio (FAD) or retrieval similarities (R@K, median/mean rank)",
        description="Metrics of the Sound of Story paper: FAD with VGGish (Table 3) and retrieval ranks (Table 2).",
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="metric", metavar="METRIC", required=True)

    p = sub.add_parser(
        "fad",
        help="Fréchet Audio Distance between two folders of audio files",
        description=(
            "Fréchet Audio Distance between the audio files of --pred and --ref (wav, flac, ogg, mp3, aiff; "
            "any rate, mono or multichannel; not recursive), with a PyTorch VGGish that reproduces torchvggish. "
            "The weights are torchvggish's vggish-10086976.pth, downloaded by you from "
            "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--pred", required=True, type=Path, help="folder of generated audio files")
    p.add_argument("--ref", required=True, type=Path, help="folder of reference audio files")
    p.add_argument("--checkpoint", type=Path, help="local path of vggish-10086976.pth")
    p.add_argument("--random-weights", action="store_true", help="random VGGish weights instead of --checkpoint (offline smoke test; the number means nothing)")
    p.add_argument("--pca-params", type=Path, help="vggish_pca_params-970ea276.pth: apply torchvggish's PCA + 8-bit quantisation (off in FAD)")
    p.add_argument("--keep-final-relu", action="store_true", help="keep VGGish's last ReLU (FAD implementations drop it)")
    p.add_argument("--pad-short-clips", action="store_true", help="zero-pad clips shorter than 0.975 s to 1 s instead of failing")
    p.add_argument("--embedder", choices=("vggish", "clap"), default="vggish", help="embedding model (clap loads --clap-model from the Hub)")
    p.add_argument("--clap-model", default="laion/clap-htsat-unfused", help="CLAP checkpoint for --embedder clap")
    p.add_argument("--batch-size", type=int, default=64, help="model inputs (0.96 s VGGish examples) per forward pass")
    p.add_argument("--cache-dir", type=Path, help="embedding cache folder, keyed by file content hash")
    p.add_argument("--fad-inf", action="store_true", help="also estimate FAD-infinity (fadtk)")
    p.add_argument("--fad-inf-min-n", type=int, default=500, help="smallest sample size of the FAD-infinity fit, in embeddings")
    p.add_argument("--per-clip", action="store_true", help="also the FAD of each --pred file against the --ref set")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_fad)

    p = sub.add_parser(
        "retrieval",
        help="R@K, median and mean rank of a similarity matrix",
        description=(
            "Retrieval metrics of a similarity matrix whose row i scores every candidate for query i; the correct "
            "candidate is the diagonal unless the file holds 'ground_truth' indices. Both directions are reported "
            f"when the ground truth is one-to-one. Accepted files: {SIMILARITY_FORMATS}."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--similarity", required=True, type=Path, help="similarity matrix file (.npy, .npz, .pt, .pth, .csv, .tsv, .txt)")
    p.add_argument("--key", help="name of the matrix inside an .npz or .pt file; if omitted: 'similarity', or an .npz's only array")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10], help="the K of R@K")
    p.add_argument("--tie-rule", choices=("pessimistic", "optimistic"), default="pessimistic", help="whether ties count against the query")
    p.add_argument("--direction-names", nargs=2, default=["query_to_candidate", "candidate_to_query"], metavar=("ROWS_TO_COLS", "COLS_TO_ROWS"), help="names of the two directions, e.g. text_to_audio audio_to_text")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.set_defaults(func=_cmd_retrieval)
    return parser
