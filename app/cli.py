"""The ``sound-of-story`` command line.

Each subcommand lives in a ``_cmd_<name>`` function and is registered in ``build_parser``;
heavy imports happen inside the subcommand so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from huggingface_hub.errors import HfHubHTTPError, StrictDataclassError

from sound_of_story.core.help_formatter import HelpFormatter
from sound_of_story.dataset_builder.sample_options import SampleGenerationError

from .build_command import add_build_parser
from .evaluate_command import add_evaluate_parser
from .generate_command import add_generate_parser
from .manifest_command import add_manifest_parsers
from .recommend_command import add_recommend_parsers
from .samples_command import add_samples_parser
from .space_command import add_space_parser
from .stand_ins_command import add_stand_ins_parser


def _version() -> str:
    try:
        return metadata.version("sound-of-story")
    except metadata.PackageNotFoundError:  # running from a source tree that was not installed
        return "unknown"


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, minutes=args.minutes, pretrained=args.pretrained, seed=args.seed, progress=not args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sound-of-story",
        description="Sound of Story: build the SoS dataset, retrieve and generate background sound for stories.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    add_samples_parser(sub)

    p = sub.add_parser(
        "demo",
        help="run the offline demo: the whole SoS story, learning, on the embedded sample clips",
        description=(
            "Generate CMD- and LSMDC-style sample clips, build SoS from them, train the retrieval models and SoSgen "
            "(text and ControlNet) with the package's training code, compute Tables 2 and 3 on held-out stories, "
            "recommend sound for three held-out stories, and write OUT/report.html (self-contained), report.md and "
            "report.json. Offline, on tiny models initialised in code; about --minutes on 2 CPU cores."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder")
    p.add_argument(
        "--minutes",
        type=float,
        default=15.0,
        help="time budget on 2 CPU cores: scales the data and the training (15 gives 72 held-out stories)",
    )
    p.add_argument(
        "--pretrained",
        action="store_true",
        help="start from the paper's CLIP, AST and Riffusion checkpoints (needs the Hub)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the sample clips and the training")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)
    add_space_parser(sub)

    add_build_parser(sub)
    add_manifest_parsers(sub)
    add_evaluate_parser(sub)
    add_generate_parser(sub)
    add_recommend_parsers(sub)
    add_stand_ins_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:  # bad input or arguments: say what is wrong, no traceback
        parser.exit(2, f"sound-of-story {args.command}: error: {err}\n")
    except StrictDataclassError as err:  # a saved model's configuration holds a value its class refuses
        parser.exit(2, f"sound-of-story {args.command}: error: a model configuration is invalid: {err}\n")
    except SampleGenerationError as err:  # a tool we run failed (ffmpeg, espeak-ng)
        parser.exit(1, f"sound-of-story {args.command}: error: {err}\n")
    except (ConnectionError, HfHubHTTPError) as err:  # the Hub refused or is out of reach (HF_HUB_OFFLINE included)
        parser.exit(1, f"sound-of-story {args.command}: error: the Hugging Face Hub: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
