"""``sound-of-story samples``: deterministic movie-like sample clips with ground truth.

Registered in ``app/cli.py`` by ``add_samples_parser(sub)``. The generator (scipy, imagehash,
PIL: about two seconds to import) is imported only when the command runs; the help text takes
its bounds from ``sound_of_story.dataset_builder.sample_options``, which imports nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sound_of_story.core.help_formatter import HelpFormatter
from sound_of_story.dataset_builder.sample_options import (
    DEFAULT_DURATION_S,
    DEFAULT_NUM_CLIPS,
    MAX_DURATION_S,
    MIN_DURATION_S,
    STYLES,
)


def _cmd_samples(args: argparse.Namespace) -> int:
    from sound_of_story.dataset_builder.samples import generate_samples

    paths = generate_samples(
        args.out,
        num_clips=args.num_clips,
        seed=args.seed,
        duration_s=args.duration,
        style=args.style,
        progress=not args.quiet,
        first_movie=args.first_movie,
    )
    print(f"wrote {len(paths)} {args.style.upper()}-style sample clips and {Path(args.out) / 'manifest.jsonl'}")
    return 0


def add_samples_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``samples`` subcommand to ``subparsers`` (its ``func`` runs it and returns an exit code)."""
    parser = subparsers.add_parser(
        "samples",
        help="generate deterministic movie-like sample clips with ground truth",
        description=(
            "Generate movie-like sample clips (.mp4, H.264 + AAC stereo 44.1 kHz) with known ground truth: "
            "scene cuts and categories, dialogue spans and text, the clean background and speech stems, and a "
            "description (cmd) or caption (lsmdc). Also writes manifest.jsonl, one row per clip in the dataset builder's input format. "
            "The same seed gives byte-identical files; every seed and every duration in range works."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument("--num-clips", type=int, default=DEFAULT_NUM_CLIPS, help="number of clips to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--duration", type=float, default=DEFAULT_DURATION_S,
        help=f"length of a CMD clip, or of the movie an LSMDC run is cut from, in seconds ({MIN_DURATION_S:g} to {MAX_DURATION_S:g})",
    )  # fmt: skip
    parser.add_argument(
        "--style",
        choices=STYLES,
        default="cmd",
        help="cmd: one long clip per description; lsmdc: runs of 3 to 12 s clips, one caption each",
    )
    parser.add_argument(
        "--first-movie", type=int, default=0,
        help="index of the first movie drawn; movies are independent, so a large set can be made in parts "
        "(cmd: --num-clips 10 --first-movie 10 writes clips 10-19 of a 20-clip run; lsmdc: the runs of movies 10 onwards)",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_cmd_samples)
    return parser
