"""``sound-of-story build`` and ``sound-of-story push``: the SoS dataset from movie clips, and to the Hub."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from sound_of_story.core.help_formatter import HelpFormatter

BUILD_DESCRIPTION = """\
Build the SoS dataset from your copies of movie clips.

The manifest (JSONL or CSV; paths relative to it) holds one of:
  CMD:    {id, video, description, movie?}          one clip = one story
  LSMDC:  {movie, clip_index, video, caption}       consecutive clips joined to ~150 s stories
  SoS:    {Movie, Desc, Frames, video|videos, id?}  the released metadata; its Frames are the key frames
(`sound-of-story manifest cmd|lsmdc|sos` writes these from CMD's, LSMDC's and the release's files.)

Each story: audio at the source rate -> speech removal -> key frames -> slices of at most 15 s ->
low-content filter -> spectrogram images. Any file ffmpeg reads (MP4, MKV, WebM, MPEG-TS, DVD VOB, AVI,
MOV, ...): sound and pictures on one clock from the first video frame, pictures at their display aspect
ratio, 5.1/7.1 downmixed to stereo (dialogue removed in the centre channel). Results are cached per
story under OUT/work, so an interrupted build, run again, redoes only what is missing. Inputs that
cannot be used (audio-only files, cover art, truncated or corrupt files, URLs) are listed in
OUT/failures.jsonl (id, file, reason) and the build goes on.

On a cluster: run `--shard-index i --num-shards n` once per i (e.g. a SLURM array), then
`sound-of-story build --merge --out OUT` (the processing options are read from the shards, which
must agree; those given with --merge are not used).

Every build ends with a summary line: stories built, from the cache, failed (by reason).
"""


def finite_float(text: str) -> float:
    """argparse type: a finite number (NaN and infinities are refused, naming the option)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _count_or_share(value: float) -> float | int:
    return value if value < 1 else int(value)


def _processing_params(args: argparse.Namespace):
    from sound_of_story.dataset_builder.content_filter import ContentFilterParams
    from sound_of_story.dataset_builder.key_frames import KeyFrameParams
    from sound_of_story.dataset_builder.processing import ProcessingParams
    from sound_of_story.dataset_builder.speech_removal import SpeechRemovalParams

    return ProcessingParams(
        separation=SpeechRemovalParams(
            backend=args.separator,
            checkpoint=args.separator_checkpoint or None,
            bytesep_segment_s=args.bytesep_segment_seconds,
        ),
        key_frames=KeyFrameParams(
            fps=args.frame_fps,
            hash=args.hash,
            max_similarity=args.max_similarity,
            method=args.key_frames,
            vgg16_weights=args.vgg16_weights,
            vgg16_input=args.vgg16_input,
        ),
        slice_seconds=args.slice_seconds,
        keep_long_slices=not args.drop_long_slices,
        content=ContentFilterParams(measure=args.content_measure, threshold=args.min_content),
        max_story_seconds=args.max_story_seconds,
        allow_truncated=args.allow_truncated,
    )


def _build_options(args: argparse.Namespace):
    """The :class:`BuildOptions` of the parsed flags. With ``--merge`` only the split and shard-size flags are
    read: a merged build's processing parameters come from its shards."""
    from sound_of_story.dataset_builder.build_options import CONFIG_NAMES, BuildOptions

    assembly = {
        "configs": CONFIG_NAMES if args.config == "all" else (args.config,),
        "test_size": _count_or_share(args.test_size),
        "generation_split": args.generation_split,
        "generation_test_size": _count_or_share(args.generation_test_size),
        "max_shard_size": args.max_shard_size,
    }
    if args.merge:
        return BuildOptions(**assembly)
    return BuildOptions(
        **assembly,
        params=_processing_params(args),
        lsmdc_target_s=args.lsmdc_target_seconds,
        num_proc=args.num_proc,
        engine=args.engine,
        ray_address=args.ray_address,
        shard_index=args.shard_index,
        num_shards=args.num_shards,
        progress=not args.quiet,
    )


def _print_report(report, args: argparse.Namespace) -> None:
    where = (
        f"shard {args.shard_index} of {args.num_shards}"
        if args.num_shards
        else ", ".join(f"{k}: {len(v)}" for k, v in report.splits.items())
    )
    details = "; ".join(part for part in (where, f"{report.from_cache} from the cache") if part)
    print(f"{len(report.succeeded)} stories built ({details}), {len(report.failures)} failed inputs")
    if report.failures:
        print(
            f"failures: {Path(args.out) / 'failures.jsonl'}"
            if args.num_shards is None
            else "failures are listed at --merge"
        )
        for f in report.failures[:10]:
            row = f.to_json()  # printable: an input's bytes may not be UTF-8
            print(f"  {row['id']}: {row['reason']} ({row['file']})")
    if not report.ok:
        print("nothing was built")
    print(report.summary())


def _cmd_build(args: argparse.Namespace) -> int:
    from sound_of_story.dataset_builder.build import build_dataset, merge_shards

    if not args.merge and args.manifest is None:
        raise ValueError("--manifest is required (except with --merge)")
    options = _build_options(args)
    report = merge_shards(args.out, options) if args.merge else build_dataset(args.manifest, args.out, options)
    _print_report(report, args)
    if not report.ok:
        return 1
    return 1 if args.strict and report.failures else 0


def _cmd_push(args: argparse.Namespace) -> int:
    from sound_of_story.dataset_builder.hub import push_dataset

    url = push_dataset(
        args.folder,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        token=args.token,
        create_repo=not args.no_create_repo,
    )
    print(f"uploaded {args.folder} to {url}")
    return 0


def _add_input_arguments(p: argparse.ArgumentParser) -> None:
    from sound_of_story.dataset_builder.build_options import DEFAULT_LSMDC_TARGET_S

    group = p.add_argument_group("input and output")
    group.add_argument("--manifest", type=Path, help="JSONL or CSV manifest of the clips")
    group.add_argument(
        "--out", type=Path, required=True, help="output folder (Parquet shards, README.md card, failures.jsonl, work/)"
    )
    group.add_argument(
        "--config", choices=("stories", "generation", "all"), default="all", help="which dataset configs to write"
    )
    group.add_argument(
        "--lsmdc-target-seconds",
        type=positive_float,
        default=DEFAULT_LSMDC_TARGET_S,
        help="join LSMDC clips until a story is this long",
    )


def _add_processing_arguments(p: argparse.ArgumentParser) -> None:
    from sound_of_story.dataset_builder.bytesep_model import CHECKPOINT_URL
    from sound_of_story.dataset_builder.content_filter import MEASURES
    from sound_of_story.dataset_builder.image_clusters import TORCHVISION_WEIGHTS, VGG16_INPUTS
    from sound_of_story.dataset_builder.key_frames import DEFAULT_METHOD, HASHES, KEY_FRAME_METHODS
    from sound_of_story.dataset_builder.processing import MAX_STORY_SECONDS, MEMORY_PER_STORY_SECOND_MB
    from sound_of_story.dataset_builder.speech_removal import BACKENDS, DEFAULT_BACKEND

    group = p.add_argument_group("processing of each story (part of its cache key)")
    group.add_argument(
        "--separator", choices=BACKENDS, default=DEFAULT_BACKEND,
        help="speech removal: center (default; no weights; assumes centred dialogue: centred music under speech "
        "goes too, and mono falls back to muting the speech spans), vad (mutes speech spans), checkpoint (HDemucs), "
        "bytesep (the paper's: bytesep's MUSDB18 accompaniment model)",
    )  # fmt: skip
    group.add_argument(
        "--separator-checkpoint",
        help=f"--separator checkpoint: a local HDemucs state_dict; --separator bytesep: a path or URL of its "
        f"checkpoint (the paper's: {CHECKPOINT_URL}; a URL is downloaded once into torch hub's folder)",
    )
    group.add_argument(
        "--bytesep-segment-seconds", type=positive_float, default=30.0,
        help="--separator bytesep: window length (bytesep's 30 s; the hop is half of it)",
    )  # fmt: skip
    group.add_argument(
        "--key-frames", choices=KEY_FRAME_METHODS, default=DEFAULT_METHOD,
        help="hash (default: perceptual hash, kept when unlike the last kept frame; no weights) or imagecluster "
        "(the paper's: VGG16 fingerprints, average-linkage clusters, one frame per cluster size)",
    )  # fmt: skip
    group.add_argument(
        "--vgg16-weights",
        help=f"--key-frames imagecluster: a file from `sound-of-story convert-vgg16` (Keras' weights, the release's) "
        f"or {TORCHVISION_WEIGHTS} (torchvision's, another network)",
    )
    group.add_argument(
        "--vgg16-input", choices=VGG16_INPUTS, default="auto",
        help="--key-frames imagecluster: the weights' input (auto: caffe for converted Keras weights, torchvision otherwise)",
    )  # fmt: skip
    group.add_argument("--hash", choices=tuple(HASHES), default="dhash", help="--key-frames hash: the fingerprint")
    group.add_argument("--frame-fps", type=positive_float, default=10.0, help="key-frame sampling rate (at most 10)")
    group.add_argument(
        "--max-similarity",
        type=finite_float,
        default=0.5,
        help="--key-frames hash: keep a frame when its similarity to the last kept one is at most this; "
        "imagecluster: its sim, the clusters cut at (1 - this) x the story's largest fingerprint distance",
    )
    group.add_argument(
        "--slice-seconds", type=positive_float, default=15.0, help="maximum length of a generation slice"
    )
    group.add_argument(
        "--drop-long-slices",
        action="store_true",
        help="drop single spans longer than --slice-seconds instead of keeping them alone",
    )
    group.add_argument(
        "--content-measure", choices=MEASURES, default="centroid_mag", help="low-content measure of a slice"
    )
    group.add_argument(
        "--min-content",
        type=finite_float,
        default=78.0,
        help="drop slices whose measure is below this (Hz; int16 units for rms)",
    )
    group.add_argument(
        "--allow-truncated",
        action="store_true",
        help="build a truncated file (less decodes than its container states) as the shorter story it decodes to, "
        "instead of listing it as a failure",
    )
    group.add_argument(
        "--max-story-seconds", type=positive_float, default=MAX_STORY_SECONDS,
        help=f"longest story processed (longer ones fail and are listed): bounds memory, about {MEMORY_PER_STORY_SECOND_MB:g} MB per second of story",
    )  # fmt: skip


def _add_split_arguments(p: argparse.ArgumentParser) -> None:
    from sound_of_story.dataset_builder.build_options import (
        DEFAULT_MAX_SHARD_SIZE,
        GENERATION_SPLITS,
        PAPER_GENERATION_TEST_SHARE,
        PAPER_TEST_SHARE,
    )

    group = p.add_argument_group("splits and Parquet files")
    group.add_argument(
        "--test-size",
        type=non_negative_float,
        default=PAPER_TEST_SHARE,
        help="test share (< 1) or number of stories, split by movie",
    )
    group.add_argument(
        "--generation-split", choices=GENERATION_SPLITS, default="random",
        help="test slices of the generation config: random over slices (the paper's) or story (each slice in its story's split)",
    )  # fmt: skip
    group.add_argument(
        "--generation-test-size", type=non_negative_float, default=PAPER_GENERATION_TEST_SHARE,
        help="with --generation-split random: test share (< 1) or number of slices (the paper's 879 of 185,341)",
    )  # fmt: skip
    group.add_argument("--max-shard-size", default=DEFAULT_MAX_SHARD_SIZE, help="Parquet shard size")


def _add_engine_arguments(p: argparse.ArgumentParser) -> None:
    from sound_of_story.dataset_builder.engines import DEFAULT_ENGINE, ENGINES

    group = p.add_argument_group("engines")
    group.add_argument(
        "--num-proc",
        type=_at_least_one,
        default=1,
        help="stories processed in parallel by local worker processes, each with cores/N torch threads (results identical to 1)",
    )
    group.add_argument(
        "--engine",
        choices=ENGINES,
        default=DEFAULT_ENGINE,
        help="where stories are processed: local worker processes, or Ray tasks (same cache, same output)",
    )
    group.add_argument(
        "--ray-address",
        help="with --engine ray: the cluster to join ('auto', 'ray://HEAD:10001'; default: start a local Ray)",
    )


def _add_shard_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("cluster shards")
    group.add_argument("--shard-index", type=int, help="process only this part of the manifest (with --num-shards)")
    group.add_argument("--num-shards", type=int, help="number of parts the manifest is split into")
    group.add_argument("--merge", action="store_true", help="assemble the dataset from finished shards")


def _add_build_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "build",
        help="build the SoS dataset from movie clips",
        description=BUILD_DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    _add_input_arguments(p)
    _add_processing_arguments(p)
    _add_split_arguments(p)
    _add_engine_arguments(p)
    _add_shard_arguments(p)
    p.add_argument("--strict", action="store_true", help="exit non-zero when any input failed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_build)


def _add_push_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "push",
        help="upload a built SoS folder to the Hub",
        description="Upload a built SoS folder as a dataset repository: the card and the Parquet files it names, nothing else (not failures.jsonl, not work/).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("folder", type=Path, help="the folder `sound-of-story build` wrote")
    p.add_argument("--repo-id", required=True, help="user/name of the dataset repository")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--revision", help="branch to push to")
    p.add_argument("--token", help="Hub token (default: the logged-in one)")
    p.add_argument("--no-create-repo", action="store_true", help="the repository exists already: only upload")
    p.set_defaults(func=_cmd_push)


def add_build_parser(subparsers) -> None:
    """Register ``build`` and ``push``."""
    _add_build_parser(subparsers)
    _add_push_parser(subparsers)
