"""``sound-of-story stand-ins``: full-size random-weight stand-ins of the Hub checkpoints, written offline.

Registered in ``app/cli.py`` by ``add_stand_ins_parser(sub)``. transformers, diffusers and torch are imported only
when the command runs (see ``app/stand_ins.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sound_of_story.core import model_ids
from sound_of_story.core.help_formatter import HelpFormatter

# What --only takes, for the help text without importing the writer (tests hold it equal to stand_ins.STAND_INS).
NAMES = {
    "clip": model_ids.CLIP,
    "ast": model_ids.AST,
    "clap": model_ids.CLAP,
    "riffusion": model_ids.RIFFUSION,
    "controlnet": "lllyasviel/sd-controlnet-canny",
    "musicgen": model_ids.MUSICGEN,
}


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 1e9:.2f} GB" if num_bytes >= 1e8 else f"{num_bytes / 1e6:.1f} MB"


def _cmd_stand_ins(args: argparse.Namespace) -> int:
    from .stand_ins import parse_names, write_stand_ins

    names = parse_names(args.only)
    results = write_stand_ins(
        names, out=args.out, hub_cache=args.hub_cache, clip_bpe=args.clip_bpe, seed=args.seed, force=args.force,
        log=None if args.quiet else print,
    )  # fmt: skip
    for result in results:
        size = sum(result.manifest["files"].values())
        where = ", ".join(str(p) for p in (result.folder, result.snapshot) if p is not None)
        state = "kept (complete)" if result.skipped else "written"
        params = sum(result.manifest["parameters"].values())
        print(f"{result.name}: {result.hub_id} {state}, {params:,} parameters, {_size(size)}: {where}")
    if args.hub_cache is not None:
        print(
            f"\nWith HF_HUB_CACHE={args.hub_cache} HF_HUB_OFFLINE=1, every from_pretrained of these Hub ids (the "
            "package's defaults included) loads the stand-in: HF_HUB_CACHE=... HF_HUB_OFFLINE=1 sound-of-story ..."
        )
    return 0


def add_stand_ins_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``stand-ins`` subcommand to ``subparsers`` (its ``func`` runs it and returns an exit code)."""
    parser = subparsers.add_parser(
        "stand-ins",
        help="write full-size random-weight stand-ins of the Hub checkpoints (offline)",
        description=(
            "Write random-weight stand-ins of the checkpoints the package starts from, with each one's exact "
            "configuration, file names and folder layout, so that every path runs at the paper's size without the "
            "Hub. Their outputs mean nothing (memory, speed and shape checks only). --out writes plain folders "
            "DIR/<hub id>, usable in place of a Hub id on every command line; --hub-cache installs them into a "
            "Hugging Face hub cache, where with HF_HUB_CACHE=DIR HF_HUB_OFFLINE=1 every from_pretrained of the Hub "
            "id finds them. About 9.6 GB for all six (float32, as the Hub stores them). Stand-ins already complete "
            "are kept. Stand-ins: " + ", ".join(f"{name} ({hub_id})" for name, hub_id in NAMES.items()) + "."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--out", type=Path, metavar="DIR", help="write plain folders DIR/<hub id>")
    parser.add_argument(
        "--hub-cache", type=Path, metavar="DIR",
        help="install into this hub cache (a folder of its own, never the cache of real downloads)",
    )  # fmt: skip
    parser.add_argument(
        "--only", metavar="NAMES", help=f"comma-separated subset of {','.join(NAMES)}; all when not given"
    )
    parser.add_argument(
        "--clip-bpe", type=Path, metavar="FILE",
        help="OpenAI's bpe_simple_vocab_16e6.txt.gz (in the open-clip-torch or laion-clap wheel): CLIP's and "
        "Stable Diffusion's real vocabulary; without it a made-up one of the same size",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--force", action="store_true", help="write again even what is complete")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(func=_cmd_stand_ins)
    return parser


__all__ = ["NAMES", "add_stand_ins_parser"]
