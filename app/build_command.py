"""``sound-of-story build`` and ``sound-of-story push``: the SoS dataset from movie clips, and to the Hub."""

from __future__ import annotations

import argparse
from pathlib import Path

from sound_of_story.app.help_formatter import HelpFormatter

BUILD_DESCRIPTION = """\
Build the SoS dataset from your copies of movie clips.

The manifest (JSONL or CSV; paths relative to it) holds one of:
  CMD:    {id, video, description, movie?}          one clip = one story
  LSMDC:  {movie, clip_index, video, caption}       consecutive clips joined to ~150 s stories
  SoS:    {Movie, Desc, Frames, video, id?}         the released metadata; Frames give the key-frame times

Each story: audio at the source rate -> speech removal -> key frames -> slices of at most 15 s ->
low-content filter -> spectrogram images. Results are cached per story under OUT/work, so an
interrupted build, run again, redoes only what is missing. Inputs that cannot be used are listed
in OUT/failures.jsonl (id, file, reason) and the build goes on.

On a cluster: run `--shard-index i --num-shards n` once per i (e.g. a SLURM array), then
`sound-of-story build --merge --out OUT`.
"""


def _params(args: argparse.Namespace):
    from sound_of_story.dataset_builder.content_filter import ContentFilterParams
    from sound_of_story.dataset_builder.key_frames import KeyFrameParams
    from sound_of_story.dataset_builder.processing import ProcessingParams
    from sound_of_story.dataset_builder.speech_removal import SpeechRemovalParams

    return ProcessingParams(
        separation=SpeechRemovalParams(backend=args.separator, checkpoint=str(args.separator_checkpoint) if args.separator_checkpoint else None),
        key_frames=KeyFrameParams(fps=args.frame_fps, hash=args.hash, max_similarity=args.max_similarity),
        slice_seconds=args.slice_seconds,
        keep_long_slices=not args.drop_long_slices,
        content=ContentFilterParams(measure=args.content_measure, threshold=args.min_content),
    )


def _cmd_build(args: argparse.Namespace) -> int:
    from sound_of_story.dataset_builder.build import build_dataset, merge_shards

    configs = ("stories", "generation") if args.config == "all" else (args.config,)
    params = _params(args)
    test_size = args.test_size if args.test_size < 1 else int(args.test_size)
    if args.merge:
        report = merge_shards(args.out, configs, params, test_size, args.max_shard_size)
    else:
        if args.manifest is None:
            raise ValueError("--manifest is required (except with --merge)")
        report = build_dataset(
            args.manifest, args.out, configs, params, num_proc=args.num_proc, test_size=test_size, lsmdc_target_s=args.lsmdc_target_seconds,
            shard_index=args.shard_index, num_shards=args.num_shards, max_shard_size=args.max_shard_size, progress=not args.quiet,
        )  # fmt: skip
    where = f"shard {args.shard_index} of {args.num_shards}" if args.num_shards else ", ".join(f"{k}: {len(v)}" for k, v in report.splits.items())
    print(f"{len(report.succeeded)} stories built ({where}; {report.from_cache} from the cache), {len(report.failures)} failed inputs")
    if report.failures:
        print(f"failures: {Path(args.out) / 'failures.jsonl'}" if args.num_shards is None else "failures are listed at --merge")
        for f in report.failures[:10]:
            print(f"  {f.id}: {f.reason} ({f.file})")
    if not report.ok:
        print("nothing was built")
        return 1
    return 1 if args.strict and report.failures else 0


def _cmd_push(args: argparse.Namespace) -> int:
    from sound_of_story.dataset_builder.hub import push_dataset

    url = push_dataset(args.folder, args.repo_id, private=args.private, revision=args.revision, token=args.token, create_repo=not args.no_create_repo)
    print(f"uploaded {args.folder} to {url}")
    return 0


def add_build_parser(subparsers) -> None:
    from sound_of_story.dataset_builder.build import PAPER_TEST_SHARE
    from sound_of_story.dataset_builder.content_filter import MEASURES
    from sound_of_story.dataset_builder.key_frames import HASHES
    from sound_of_story.dataset_builder.speech_removal import BACKENDS

    p = subparsers.add_parser("build", help="build the SoS dataset from movie clips", description=BUILD_DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--manifest", type=Path, help="JSONL or CSV manifest of the clips")
    p.add_argument("--out", type=Path, required=True, help="output folder (Parquet shards, README.md card, failures.jsonl, work/)")
    p.add_argument("--config", choices=("stories", "generation", "all"), default="all", help="which dataset configs to write")
    p.add_argument("--num-proc", type=int, default=1, help="stories processed in parallel (results identical to 1)")
    p.add_argument("--separator", choices=BACKENDS, default="center", help="speech removal backend")
    p.add_argument("--separator-checkpoint", type=Path, help="local HDemucs state_dict for --separator checkpoint")
    p.add_argument("--hash", choices=tuple(HASHES), default="dhash", help="key-frame fingerprint")
    p.add_argument("--frame-fps", type=float, default=10.0, help="key-frame sampling rate (at most 10)")
    p.add_argument("--max-similarity", type=float, default=0.5, help="keep a frame when its similarity to the last kept one is at most this")
    p.add_argument("--slice-seconds", type=float, default=15.0, help="maximum length of a generation slice")
    p.add_argument("--drop-long-slices", action="store_true", help="drop single spans longer than --slice-seconds instead of keeping them alone")
    p.add_argument("--content-measure", choices=MEASURES, default="centroid_mag", help="low-content measure of a slice")
    p.add_argument("--min-content", type=float, default=78.0, help="drop slices whose measure is below this (Hz; int16 units for rms)")
    p.add_argument("--test-size", type=float, default=PAPER_TEST_SHARE, help="test share (< 1) or number of stories, split by movie")
    p.add_argument("--lsmdc-target-seconds", type=float, default=150.0, help="join LSMDC clips until a story is this long")
    p.add_argument("--shard-index", type=int, help="process only this part of the manifest (with --num-shards)")
    p.add_argument("--num-shards", type=int, help="number of parts the manifest is split into")
    p.add_argument("--merge", action="store_true", help="assemble the dataset from finished shards")
    p.add_argument("--max-shard-size", default="500MB", help="Parquet shard size")
    p.add_argument("--strict", action="store_true", help="exit non-zero when any input failed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_build)

    p = subparsers.add_parser("push", help="upload a built SoS folder to the Hub", description="Upload a built SoS folder (shards and card; not work/) as a dataset repository.", formatter_class=HelpFormatter)
    p.add_argument("folder", type=Path, help="the folder `sound-of-story build` wrote")
    p.add_argument("--repo-id", required=True, help="user/name of the dataset repository")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--revision", help="branch to push to")
    p.add_argument("--token", help="Hub token (default: the logged-in one)")
    p.add_argument("--no-create-repo", action="store_true", help="the repository exists already: only upload")
    p.set_defaults(func=_cmd_push)
