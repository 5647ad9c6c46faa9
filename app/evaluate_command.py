"""``sound-of-story evaluate``: FAD between two audio folders, retrieval ranks of a similarity matrix.

Registered by ``add_evaluate_parser(subparsers)``; heavy imports (torch) happen inside the
subcommands so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from sound_of_story.audio import DEFAULT_RESAMPLER, RESAMPLERS
from sound_of_story.core import model_ids
from sound_of_story.core.help_formatter import HelpFormatter

DIRECTION_CHOICES = ("A2V", "V2A", "A2T", "T2A")
SIMILARITY_FORMATS = (
    ".npy: a 2-D array (queries x candidates); "
    ".npz: key 'similarity' (or the only array), optional 'ground_truth'; "
    ".pt/.pth: a 2-D tensor, or a dict with 'similarity' and optional 'ground_truth' (read with weights_only=True); "
    ".csv/.tsv/.txt: rows of numbers separated by commas, tabs or spaces"
)


def _load_numeric(path: Path, suffix: str) -> Any:
    """Read an .npy/.npz/.pt file, turning every way a file can be unreadable into a ValueError naming it."""
    import pickle
    import zipfile

    if path.stat().st_size == 0:
        raise ValueError(f"similarity file {str(path)!r} is empty (0 bytes)")
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            return np.load(path, allow_pickle=False)
        import torch

        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{str(path)!r} holds pickled Python objects, refused (weights_only=True): {str(err).splitlines()[0]}"
        ) from None
    except (EOFError, OSError, zipfile.BadZipFile, RuntimeError) as err:
        raise ValueError(
            f"cannot read similarity file {str(path)!r} (truncated or not a {suffix} file): {err}"
        ) from None
    except ValueError as err:
        raise ValueError(f"cannot read similarity file {str(path)!r}: {err}") from None


def _real_matrix(value: Any, path: Path) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind == "c":
        raise ValueError(
            f"{str(path)!r} holds a complex similarity matrix ({array.dtype}); similarities must be real numbers"
        )
    if array.dtype.kind not in "fiub":
        raise ValueError(f"{str(path)!r} holds {array.dtype} values, not numbers")
    return array


def load_similarity(path: str | Path, key: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a similarity matrix (and ground-truth indices if the file holds them); see SIMILARITY_FORMATS."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"similarity file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    ground_truth = None
    if suffix == ".npy":
        similarity = _load_numeric(path, suffix)
    elif suffix == ".npz":
        with _load_numeric(path, suffix) as data:
            names = list(data.files)
            name = key or ("similarity" if "similarity" in names else names[0] if len(names) == 1 else None)
            if name is None or name not in names:
                raise ValueError(
                    f"{str(path)!r} holds arrays {names}; name the similarity matrix with --key (default 'similarity')"
                )
            try:
                similarity = data[name]
                ground_truth = data["ground_truth"] if "ground_truth" in names else None
            except ValueError as err:  # an object array inside the archive
                raise ValueError(f"{str(path)!r}: {err}") from None
    elif suffix in (".pt", ".pth"):
        import torch

        content = _load_numeric(path, suffix)
        if isinstance(content, dict):
            name = key or "similarity"
            if name not in content:
                raise ValueError(
                    f"{str(path)!r} holds keys {sorted(content)}; name the similarity matrix with --key (default 'similarity')"
                )
            similarity, ground_truth = content[name], content.get("ground_truth")
        else:
            similarity = content
        if isinstance(similarity, torch.Tensor):
            similarity = similarity.numpy() if similarity.is_complex() else similarity.double().numpy()
        ground_truth = ground_truth.numpy() if isinstance(ground_truth, torch.Tensor) else ground_truth
    elif suffix in (".csv", ".tsv", ".txt"):
        delimiter = {".csv": ",", ".tsv": "\t"}.get(suffix)
        similarity = np.loadtxt(path, delimiter=delimiter, ndmin=2)
    else:
        raise ValueError(f"unsupported similarity file type {suffix!r}; accepted: {SIMILARITY_FORMATS}")
    return _real_matrix(similarity, path), ground_truth


def _write_json(path: Path | None, payload: dict) -> None:
    if path is not None:
        from sound_of_story.core.atomic_files import write_json_atomic

        write_json_atomic(path, payload)
        print(f"wrote {path}")


def _cmd_fad(args: argparse.Namespace) -> int:
    from sound_of_story.metrics.fad import compute_fad, list_audio_files, make_embedder

    pred_files, ref_files = (
        list_audio_files(args.pred),
        list_audio_files(args.ref),
    )  # fail on bad folders before loading a model
    if args.embedder == "clap":
        if args.random_weights or args.checkpoint or args.pca_params or args.keep_final_relu or args.pad_short_clips:
            raise ValueError(
                "--random-weights, --checkpoint, --pca-params, --keep-final-relu and --pad-short-clips apply to --embedder vggish only"
            )
    elif args.random_weights and args.checkpoint is not None:
        raise ValueError("pass either --checkpoint or --random-weights, not both")
    embedder = make_embedder(
        args.embedder, vggish_checkpoint=args.checkpoint, random_weights=args.random_weights,
        pca_params=args.pca_params, final_relu=args.keep_final_relu, pad_short_clips=args.pad_short_clips,
        clap_model=args.clap_model,
    )  # fmt: skip
    if embedder.random_weights:
        print(
            f"WARNING: {embedder.description}: the FAD below is a smoke-test number, not comparable with any published FAD"
        )
    result = compute_fad(
        pred_files, ref_files, embedder, batch_size=args.batch_size, cache=args.cache_dir, progress=not args.quiet,
        fad_inf=args.fad_inf, fad_inf_min_n=args.fad_inf_min_n, per_clip=args.per_clip,
    )  # fmt: skip
    print(f"embedder: {result.embedder}")
    print(
        f"predictions: {result.num_pred_clips} clips, {result.num_pred_embeddings} embeddings; references: {result.num_ref_clips} clips, {result.num_ref_embeddings} embeddings"
    )
    print(f"FAD: {result.fad:.6f}" + ("  (RANDOM weights)" if result.random_weights else ""))
    if result.fad_infinity is not None:
        print(
            f"FAD-inf: {result.fad_infinity.value:.6f} (slope {result.fad_infinity.slope:.4g}, R^2 {result.fad_infinity.r2:.4f})"
        )
    if result.per_clip_fad is not None:
        for name, score in zip(result.pred_clip_names, result.per_clip_fad):
            print(f"  {score:12.6f}  {name}")
    _write_json(args.json, result.to_dict())
    return 0


def _cmd_retrieval(args: argparse.Namespace) -> int:
    if args.similarity is None:
        return _cmd_retrieval_table(args)
    if args.model or args.baseline or args.dataset or args.compare:
        raise ValueError(
            "--similarity ranks a saved matrix; --model, --compare, --baseline and --dataset encode a dataset: use one or the other"
        )
    from sound_of_story.metrics.retrieval import retrieval_metrics

    similarity, ground_truth = load_similarity(args.similarity, args.key)
    results = retrieval_metrics(
        similarity, ground_truth, ks=args.ks, tie_rule=args.tie_rule, direction_names=tuple(args.direction_names)
    )
    keys = [k for k in next(iter(results.values())) if k != "num_queries"]
    print(f"{'direction':<24}" + "".join(f"{k:>10}" for k in keys) + f"{'queries':>10}")
    for direction, metrics in results.items():
        print(f"{direction:<24}" + "".join(f"{metrics[k]:>10.3f}" for k in keys) + f"{metrics['num_queries']:>10d}")
    _write_json(args.json, {"tie_rule": args.tie_rule, **results})
    return 0


def _cmd_retrieval_table(args: argparse.Namespace) -> int:
    from sound_of_story.evaluation.table2 import format_table2, run_table2

    if args.dataset is None:
        raise ValueError("give --dataset with --model / --baseline (or --similarity FILE to rank a saved matrix)")
    if not args.model and not args.baseline:
        raise ValueError("give --model, --baseline random, or --similarity FILE")
    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap must be 0 or more, got {args.bootstrap}")
    if args.model_card is not None and len(args.model) != 1:
        raise ValueError("--model-card takes the results of one --model")
    models = [*args.model, *args.compare]
    table = run_table2(
        models, args.dataset, split=args.split, out=args.out, directions=args.directions, random_baseline=args.baseline == "random",
        compare=bool(args.compare), bootstrap=args.bootstrap, seed=args.seed, batch_size=args.batch_size, cache_dir=args.cache_dir,
        chunk_size=args.chunk_size, device=args.device, progress=not args.quiet,
    )  # fmt: skip
    print(format_table2(table.figures, table.num_stories))
    for name, directions in table.comparison.items():
        for direction, figures in directions.items():
            cells = "  ".join(
                f"{k} {v['difference']:+.2f} [{v['ci'][0]:+.2f}, {v['ci'][1]:+.2f}]" for k, v in figures.items()
            )
            print(f"{name} {direction}: {cells}")
    if args.model_card is not None:
        from sound_of_story.evaluation.model_index import retrieval_eval_results, write_eval_card

        name = next(iter(table.figures))
        results = retrieval_eval_results(table.figures[name], args.dataset, args.split)
        write_eval_card(args.model_card, results, model_name=name, library_name="transformers", dataset=args.dataset)
        print(f"wrote the model-index of {name} into {args.model_card}")
    if args.out is not None:
        matrices = sum(1 for path in table.files if path.suffix == ".npy")
        print(
            f"wrote {', '.join(p.name for p in table.files if p.suffix != '.npy')} and {matrices} similarity matrices into {args.out}"
        )
    return 0


def _cmd_generation(args: argparse.Namespace) -> int:
    from sound_of_story.evaluation.generation import format_table3, make_embedder, run_table3

    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap must be 0 or more, got {args.bootstrap}")
    if args.steps < 1:
        raise ValueError(f"--steps must be a positive number of denoising steps, got {args.steps}")
    if args.duration is not None and not (math.isfinite(args.duration) and args.duration > 0):
        raise ValueError(f"--duration must be a positive number of seconds, got {args.duration}")
    if args.model_card is not None and len(args.pipeline) != 1:
        raise ValueError("--model-card takes the results of one --pipeline")
    if args.embedder == "vggish" and not args.random_weights and args.checkpoint is None:
        raise ValueError("give --checkpoint (torchvggish's vggish-10086976.pth) or --random-weights for a smoke test")
    if args.embedder == "clap" and (args.random_weights or args.checkpoint is not None):
        raise ValueError("--random-weights and --checkpoint apply to --embedder vggish only")
    embedder = make_embedder(
        args.embedder, vggish_checkpoint=args.checkpoint, random_weights=args.random_weights, clap_model=args.clap_model,
        resampler=args.resampler, device=args.device,
    )  # fmt: skip
    table = run_table3(
        args.pipeline, args.dataset, out=args.out, split=args.split, limit=args.limit, seed=args.seed,
        with_frames=True if args.with_frames else None, duration_s=args.duration, num_inference_steps=args.steps,
        griffin_lim_method=args.griffin_lim, embedder=embedder, bootstrap=args.bootstrap, fad_inf_min_n=args.fad_inf_min_n, cache_dir=args.cache_dir,
        device=args.device, progress=not args.quiet,
    )  # fmt: skip
    print(format_table3(table))
    if args.model_card is not None:
        from sound_of_story.evaluation.model_index import generation_eval_results, write_eval_card

        ((name, row),) = table.items()
        write_eval_card(
            args.model_card,
            generation_eval_results(row, args.dataset, args.split),
            model_name=name,
            library_name="diffusers",
            dataset=args.dataset,
        )
        print(f"wrote the model-index of {name} into {args.model_card}")
    print(f"wrote table3.md, table3.json and the generated WAVs and spectrograms into {args.out}")
    return 0


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``evaluate fad`` and ``evaluate retrieval`` on a ``add_subparsers()`` object."""
    parser = subparsers.add_parser(
        "evaluate",
        help="Tables 2 and 3: retrieval (R@K, median/mean rank) and generation (FAD, KAD), from models or saved outputs",
        description=(
            "Metrics of the Sound of Story paper: retrieval ranks of models on a SoS split or of a saved matrix (Table 2), "
            "generation with FAD, FAD-inf and KAD (Table 3), and FAD between two audio folders."
        ),
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="metric", metavar="METRIC", required=True)
    _add_fad_parser(sub)
    _add_retrieval_parser(sub)
    _add_generation_parser(sub)
    return parser


def _add_embedder_arguments(p: argparse.ArgumentParser, batch_help: str | None = None) -> None:
    """The FAD embedder's flags, shared by ``evaluate fad`` and ``evaluate generation``."""
    p.add_argument(
        "--embedder",
        choices=("vggish", "clap"),
        default="vggish",
        help="embedding model (clap loads --clap-model from the Hub)",
    )
    p.add_argument("--checkpoint", type=Path, help="local path of torchvggish's vggish-10086976.pth")
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="random VGGish weights instead of --checkpoint (offline smoke test; the numbers mean nothing)",
    )
    p.add_argument(
        "--clap-model",
        default=model_ids.CLAP,
        help="CLAP checkpoint for --embedder clap (LAION's; the paper's CLAP is Microsoft's)",
    )
    p.add_argument(
        "--fad-inf-min-n", type=int, default=500, help="smallest sample size of the FAD-infinity fit, in embeddings"
    )
    p.add_argument("--cache-dir", type=Path, help="embedding cache folder, keyed by file content hash")


def _add_fad_parser(sub: argparse._SubParsersAction) -> None:
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
    _add_embedder_arguments(p)
    p.add_argument(
        "--pca-params",
        type=Path,
        help="vggish_pca_params-970ea276.pth: apply torchvggish's PCA + 8-bit quantisation (off in FAD)",
    )
    p.add_argument(
        "--keep-final-relu", action="store_true", help="keep VGGish's last ReLU (FAD implementations drop it)"
    )
    p.add_argument(
        "--pad-short-clips", action="store_true", help="zero-pad clips shorter than 0.975 s to 1 s instead of failing"
    )
    p.add_argument("--batch-size", type=int, default=64, help="model inputs (0.96 s VGGish examples) per forward pass")
    p.add_argument("--fad-inf", action="store_true", help="also estimate FAD-infinity (fadtk)")
    p.add_argument("--per-clip", action="store_true", help="also the FAD of each --pred file against the --ref set")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_fad)


def _add_retrieval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retrieval",
        help="Table 2: R@K, median and mean rank of models on a SoS split, or of a saved similarity matrix",
        description=(
            "Two modes. (1) --model M --dataset D: encode the stories of a SoS split with the evaluation protocol "
            "(40 frames, the most energetic 10.24 s audio window, 77 text tokens), rank them with the model's "
            "similarity and write table2.md, table2.json and the similarity matrices (<model>_<direction>.npy, "
            "rows the queries, ground truth on the diagonal) into --out. Models: SoSRetrievalModel, the Wav2CLIP "
            "baseline (folders saved with save_pretrained, with their processor) and CLAP (a ClapModel checkpoint, "
            "e.g. laion/clap-htsat-unfused; LAION's, where the paper used Microsoft's). --baseline random adds the "
            "paper's random baseline (mean of five random retrievals). (2) --similarity FILE: the metrics of a saved "
            "matrix whose row i scores every candidate for query i; the correct candidate is the diagonal unless the "
            "file holds 'ground_truth' indices; both directions are reported when the ground truth is one-to-one. "
            f"Accepted files: {SIMILARITY_FORMATS}."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--similarity", type=Path, help="similarity matrix file (.npy, .npz, .pt, .pth, .csv, .tsv, .txt)")
    p.add_argument(
        "--key",
        help="name of the matrix inside an .npz or .pt file; if omitted: 'similarity', or an .npz's only array",
    )
    p.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10], help="the K of R@K (--similarity mode)")
    p.add_argument(
        "--tie-rule",
        choices=("pessimistic", "optimistic"),
        default="pessimistic",
        help="whether ties count against the query (--similarity mode; tables always use pessimistic)",
    )
    p.add_argument(
        "--direction-names",
        nargs=2,
        default=["query_to_candidate", "candidate_to_query"],
        metavar=("ROWS_TO_COLS", "COLS_TO_ROWS"),
        help="names of the two directions, e.g. text_to_audio audio_to_text",
    )
    p.add_argument("--json", type=Path, help="also write the results to this JSON file (--similarity mode)")
    p.add_argument("--model", action="append", default=[], help="retrieval model folder or Hub id (repeatable)")
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="M2",
        help="a second model: also report the paired difference (first --model minus M2) with its bootstrap interval",
    )
    p.add_argument("--baseline", choices=("random",), help="add the random baseline (mean of five random retrievals)")
    p.add_argument("--dataset", help="SoS dataset folder or Hub id (its 'stories' config)")
    p.add_argument("--split", default="test", help="split to evaluate")
    p.add_argument("--out", type=Path, help="folder for table2.md, table2.json and the similarity matrices")
    p.add_argument(
        "--directions",
        nargs="+",
        choices=DIRECTION_CHOICES,
        help="directions to evaluate (default: all the model supports)",
    )
    p.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples of the queries for 95%% intervals (0: none)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and of the random baseline")
    p.add_argument("--batch-size", type=int, default=8, help="stories per forward pass")
    p.add_argument(
        "--cache-dir", type=Path, help="per-story embedding cache, keyed by model, settings and story content"
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        help="block size of the multi-grained similarity (default: automatic, bounded memory)",
    )
    p.add_argument(
        "--model-card",
        type=Path,
        help="write the first model's figures into this model card (README.md) as its model-index",
    )
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_retrieval)


def _add_generation_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generation",
        help="Table 3: generate background sound for every test slice and score it (FAD, FAD-inf, KAD)",
        description=(
            "Generate background sound for every slice of a SoS split (its 'generation' config) with each --pipeline, "
            "resumably and with a fixed seed per slice, into OUT/<pipeline>/audio and OUT/<pipeline>/spectrograms; then "
            "score against the real slices: FAD, FAD-infinity, KAD (kadtk's unbiased RBF MMD), per-clip FAD and its "
            "outliers, bootstrap intervals. Missing, silent or too short generated clips are listed by name and left "
            "out. Writes OUT/table3.md and OUT/table3.json, which state every setting that decides a number and whose "
            "choice it is. The paper states only that the baselines get the descriptions and that FAD uses VGGish; "
            "the baselines run at their own defaults, this package's choice: Riffusion in its 512-pixel (5.12 s) "
            "windows, overlapping by 256 pixels over a longer slice, 50 steps, guidance 7, its checkpoint's "
            "scheduler; MusicGen sampling with top-k 250, guidance 3 (audiocraft's defaults), as many EnCodec frames "
            "as the slice lasts. A rerun resumes only with the same settings."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--pipeline",
        action="append",
        required=True,
        help=(
            "a saved SoSgenPipeline or SoSgenControlNetPipeline folder; 'riffusion' (riffusion/riffusion-model-v1) or "
            "'musicgen' (facebook/musicgen-small, this package's choice of size); riffusion=FOLDER or "
            "musicgen=FOLDER for a local copy of a baseline (offline, or a stand-in of the same layout); a "
            "StableDiffusionPipeline folder (run as Riffusion is); or a MusicGen folder (repeatable)"
        ),
    )
    p.add_argument("--dataset", required=True, help="SoS dataset folder or Hub id (its 'generation' config)")
    p.add_argument("--split", default="test", help="split to generate for")
    p.add_argument("--out", required=True, type=Path, help="output folder (a rerun with the same settings resumes)")
    p.add_argument("--limit", type=int, help="only the first N slices (a quick look)")
    p.add_argument("--seed", type=int, default=0, help="base seed; each slice's seed is fixed by it and the slice id")
    p.add_argument(
        "--with-frames",
        action="store_true",
        help="require frame conditioning (error for text-only pipelines); default: frames for pipelines that take them",
    )
    p.add_argument("--duration", type=float, help="seconds to generate per slice (default: the slice's own length)")
    p.add_argument(
        "--steps",
        type=int,
        default=50,
        help="denoising steps of the diffusion pipelines (50: Riffusion's own and diffusers' default; the paper states none)",
    )
    p.add_argument(
        "--griffin-lim",
        choices=("exact", "refined", "fast"),
        default="exact",
        help=(
            "spectrogram to audio for every diffusion pipeline. exact: Riffusion's own inverse (torchaudio's "
            "Griffin-Lim, 32 iterations, momentum 0.99), this package's choice for numbers comparable with the "
            "paper's (which names no inversion); refined: 40 iterations on the window-length FFT grid, then 8 on "
            "the full grid, faster, with a lower spectral convergence, not comparable; fast: the quickest"
        ),
    )
    _add_embedder_arguments(p)
    p.add_argument(
        "--resampler",
        choices=RESAMPLERS,
        default=DEFAULT_RESAMPLER,
        help="resampling to the embedder's rate (resampy: torchvggish's)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="bootstrap resamples of the generated clips for 95%% intervals (0: none)",
    )
    p.add_argument(
        "--model-card", type=Path, help="write the results into this model card (README.md) as its model-index"
    )
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_generation)
