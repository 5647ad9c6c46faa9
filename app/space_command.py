"""``sound-of-story space``: start the web app (`sound_of_story.app.space`) on this machine.

Registered in ``app/cli.py`` by ``add_space_parser(sub)``; gradio is imported only when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sound_of_story.core.help_formatter import HelpFormatter


def add_space_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``space`` subcommand to ``subparsers``."""
    from .space import DEFAULT_DEMO_DIR, DEFAULT_HOST, DEFAULT_PORT

    parser = subparsers.add_parser(
        "space",
        help="start the web app: generate, retrieve and recommend background sound",
        description=(
            "Start the Gradio web app (the same app a Hugging Face Space runs). By default it serves what "
            "`sound-of-story demo --out DEMO_DIR` trained: the SoSgen and SoSgen ControlNet pipelines, the "
            "audio-video retrieval model and the index of the demo's sound library. Any option below replaces "
            "one of them with a folder or Hub id."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--demo-dir",
        type=Path,
        default=DEFAULT_DEMO_DIR,
        help="output folder of `sound-of-story demo` to take the defaults from",
    )
    parser.add_argument(
        "--model", help="SoSgen pipeline (text, or ControlNet) folder or Hub id (default: DEMO_DIR/models/sosgen)"
    )
    parser.add_argument(
        "--controlnet-model",
        help="SoSgen ControlNet pipeline for requests with frames (default: DEMO_DIR/models/sosgen-controlnet)",
    )
    parser.add_argument(
        "--retrieval-model",
        help="SoS retrieval model folder or Hub id (default: DEMO_DIR/models/retrieval-audio-video)",
    )
    parser.add_argument(
        "--library",
        help="sound library: a built SoS folder, a folder of audio files or a Hub dataset hf://owner/name; clips "
        "are played from here (default: DEMO_DIR/library)",
    )
    parser.add_argument(
        "--index",
        help="sound library index folder, built from --library on first use when missing, or hf://owner/name for "
        "an index on the Hub (default: DEMO_DIR/library-index)",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to serve on (0.0.0.0: every interface, reachable by others)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to serve on")
    parser.set_defaults(func=run_space)
    return parser


def run_space(args: argparse.Namespace) -> int:
    from .space import SpaceSettings, launch_space

    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {args.port}")
    settings = SpaceSettings.from_demo(
        args.demo_dir, model=args.model, controlnet_model=args.controlnet_model, retrieval_model=args.retrieval_model,
        library=args.library, index=args.index,
    )  # fmt: skip
    if not (settings.model or settings.controlnet_model or settings.index):
        raise FileNotFoundError(
            f"nothing to serve: no SoSgen pipeline or sound library in {args.demo_dir} (run `sound-of-story demo` first) and none given"
        )
    print(f"serving on http://{args.host}:{args.port} (Ctrl+C stops)")
    launch_space(settings, host=args.host, port=args.port)
    return 0
