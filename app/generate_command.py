"""``sound-of-story generate``: background sound for a story from a SoSgen pipeline.

Registered in ``app/cli.py`` by ``add_generate_parser(sub)``. Heavy imports happen when the
command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from sound_of_story.core.help_formatter import HelpFormatter

from .frame_reader import FRAME_SUFFIXES, MAX_FRAME_FILE_BYTES, MAX_FRAME_PIXELS, MAX_FRAMES

if TYPE_CHECKING:
    import PIL.Image

CONTROLNET_PIPELINE = "SoSgenControlNetPipeline"
# The longest audio one command generates by default: the spectrogram of the whole story is inverted at
# once, so memory grows with the duration (about 5 minutes fit in a few GB); --max-duration raises it.
MAX_DURATION_S = 300.0
DTYPES = ("auto", "float32", "float16", "bfloat16")


def add_generate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``generate`` subcommand to ``subparsers`` (its ``func`` runs it and returns an exit code)."""
    parser = subparsers.add_parser(
        "generate",
        help="generate background sound for a description (and frames) with a SoSgen pipeline",
        description=(
            "Generate audio with a SoSgen pipeline: text to audio (SoSgenPipeline, or riffusion/riffusion-model-v1 as it is), "
            "or frames and text to audio (SoSgenControlNetPipeline, with --frames). Writes the WAV and, next to it, "
            "the spectrogram image (PNG with Riffusion's EXIF), each atomically. Audio longer than the model's window is "
            "generated as overlapping, inpainted windows. Every argument and frame is checked before the model loads."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", required=True, help="pipeline folder or Hub id")
    parser.add_argument("--text", help="the description (required unless --image-only)")
    parser.add_argument("--negative-text", help="what to steer away from")
    parser.add_argument(
        "--frames",
        type=Path,
        help=f"folder of the story's frames ({', '.join(FRAME_SUFFIXES)}), in file-name order; needs a {CONTROLNET_PIPELINE}; "
        f"at most {MAX_FRAMES} files of up to {MAX_FRAME_FILE_BYTES // 2**20} MiB and {MAX_FRAME_PIXELS:,} pixels each",
    )
    parser.add_argument(
        "--frame-times",
        help="comma-separated time in seconds of each frame, non-decreasing, below --duration (default: evenly spaced)",
    )
    parser.add_argument(
        "--image-only",
        action="store_true",
        help="generate from the frames alone (the text is the fixed prompt 'Audio', as SoSgen_image was trained); implied by an image-only model",
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of audio")
    parser.add_argument(
        "--max-duration",
        type=float,
        default=MAX_DURATION_S,
        help="the longest --duration accepted (memory grows with it)",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output WAV file; the spectrogram goes to the same name with .png"
    )
    parser.add_argument(
        "--window-width",
        type=int,
        help="widest image generated in one go, in pixels (default: the model's; 512 for riffusion-model-v1)",
    )
    parser.add_argument("--steps", type=int, default=50, help="denoising steps")
    parser.add_argument("--guidance", type=float, default=7.0, help="classifier-free guidance scale")
    parser.add_argument(
        "--controlnet-scale", type=float, default=1.0, help="ControlNet conditioning scale (with --frames)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (fixes the audio)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--dtype", choices=DTYPES, default="auto", help="model dtype; auto = float16 on CUDA, else float32"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_generate)
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    """Raise a ValueError naming the option for any argument the command cannot run with (no model needed)."""
    if not (math.isfinite(args.max_duration) and args.max_duration > 0):
        raise ValueError(f"--max-duration must be a positive number of seconds, got {args.max_duration}")
    if not (math.isfinite(args.duration) and args.duration > 0):
        raise ValueError(f"--duration must be a positive number of seconds, got {args.duration}")
    if args.duration > args.max_duration:
        raise ValueError(
            f"--duration {args.duration:g} s is longer than --max-duration ({args.max_duration:g} s): "
            "generate shorter pieces, or raise --max-duration if the machine has the memory"
        )
    if not math.isfinite(args.guidance):
        raise ValueError(f"--guidance must be a finite number, got {args.guidance}")
    if not math.isfinite(args.controlnet_scale):
        raise ValueError(f"--controlnet-scale must be a finite number, got {args.controlnet_scale}")
    if args.steps <= 0:
        raise ValueError(f"--steps must be a positive integer, got {args.steps}")
    if args.window_width is not None and (args.window_width <= 0 or args.window_width % 8):
        raise ValueError(f"--window-width must be a positive multiple of 8 pixels, got {args.window_width}")
    if args.out.suffix.lower() != ".wav":
        raise ValueError(f"--out must be a .wav file, got {args.out}")
    if args.out.is_dir():
        raise ValueError(f"--out {args.out} is a folder, not a .wav file")
    for parent in args.out.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"--out {args.out}: {parent} is a file, not a folder")
    if args.image_only:
        if args.text is not None:
            raise ValueError("--image-only generates from the frames alone: drop --text")
        if args.frames is None:
            raise ValueError("--image-only needs the story's frames: give --frames")
    elif args.text is not None and not args.text.strip():
        raise ValueError("--text is empty: give a description (or --image-only to generate from --frames alone)")
    if args.frames is None and args.frame_times is not None:
        raise ValueError("--frame-times needs --frames")


def read_frames(folder: Path) -> list[PIL.Image.Image]:
    """The RGB images in ``folder`` in file-name order, read by the bounded frame reader (`app/frame_reader.py`:
    file count, size and pixel caps, shrunk to the ControlNet's frame size); a ValueError names a refused file."""
    from .frame_reader import GENERATION_FRAME_SIDE, frame_files_in, read_frame_files

    return read_frame_files(frame_files_in(folder, "--frames"), GENERATION_FRAME_SIDE, flag="--frames")


def parse_frame_times(text: str | None, count: int, duration: float) -> list[float] | None:
    """The ``--frame-times`` of ``count`` frames: finite, non-decreasing, from 0 to below ``duration``."""
    if text is None:
        return None
    try:
        times = [float(t) for t in text.split(",")]
    except ValueError as err:
        raise ValueError(f"--frame-times must be comma-separated numbers, got {text!r}") from err
    if len(times) != count:
        raise ValueError(f"--frame-times has {len(times)} times but --frames holds {count} images")
    if not all(math.isfinite(t) and t >= 0 for t in times):
        raise ValueError(f"--frame-times must be finite and >= 0, got {text!r}")
    if any(b < a for a, b in zip(times, times[1:])):
        raise ValueError(f"--frame-times must be non-decreasing (frames in time order), got {text!r}")
    if times[-1] >= duration:
        raise ValueError(f"--frame-times reach {times[-1]:g} s, beyond the --duration of {duration:g} s")
    return times


def _pipeline_config(model: str) -> dict:
    """The pipeline's ``model_index.json`` (read without loading any weights)."""
    from diffusers import DiffusionPipeline

    if not Path(model).exists() and model.count("/") != 1:  # neither a folder nor an owner/name Hub id
        raise FileNotFoundError(f"--model: {model} is not a folder or a Hub id")
    try:
        return dict(DiffusionPipeline.load_config(model))
    except OSError as err:
        raise FileNotFoundError(f"--model: cannot read model_index.json of {model}: {err}") from err


def run_generate(args: argparse.Namespace) -> int:
    """Check everything, load the pipeline, generate, write ``args.out`` (WAV) and its ``.png`` spectrogram atomically."""
    check_arguments(args)
    model = str(args.model)
    config = _pipeline_config(model)
    class_name = config.get("_class_name")
    if args.frames is not None and class_name != CONTROLNET_PIPELINE:
        raise ValueError(f"--frames needs a {CONTROLNET_PIPELINE}, but {model} is a {class_name}")
    if args.frames is None and class_name == CONTROLNET_PIPELINE:
        raise ValueError(f"{model} is a {CONTROLNET_PIPELINE}: give the story's frames with --frames")
    image_only = args.image_only or bool(config.get("image_only", False))
    if image_only and args.text is not None:
        raise ValueError(f"{model} is image-only (its text is always 'Audio'): drop --text")
    if not image_only and args.text is None:
        raise ValueError("--text is required (or --image-only to generate from --frames alone)")
    frames = times = None
    if args.frames is not None:
        frames = read_frames(args.frames)
        times = parse_frame_times(args.frame_times, len(frames), args.duration)

    import torch

    from sound_of_story.audio.spectrogram import save_audio
    from sound_of_story.core.atomic_files import atomic_path
    from sound_of_story.pipelines import IMAGE_ONLY_PROMPT, SoSgenControlNetPipeline, SoSgenPipeline

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(args.dtype)
    if dtype is None:
        dtype = torch.float16 if torch.device(device).type == "cuda" else torch.float32
    pipeline_class = SoSgenControlNetPipeline if class_name == CONTROLNET_PIPELINE else SoSgenPipeline
    overrides = {"window_width": args.window_width} if args.window_width is not None else {}
    pipe = pipeline_class.from_pretrained(model, dtype=dtype, **overrides).to(device)
    pipe.set_progress_bar_config(disable=args.quiet, desc="sound-of-story generate")

    kwargs = dict(
        negative_prompt=args.negative_text,
        duration_s=args.duration,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        generator=torch.Generator(device=device).manual_seed(args.seed),
    )
    if frames is not None:
        kwargs.update(frames=frames, frame_times=times, controlnet_conditioning_scale=args.controlnet_scale)
        if not pipe.config.image_only:  # a text-and-frames model: --image-only gives it SoSgen_image's fixed text
            kwargs["prompt"] = IMAGE_ONLY_PROMPT if image_only else args.text
    else:
        kwargs["prompt"] = args.text

    output = pipe(**kwargs)
    image_path = args.out.with_suffix(".png")
    with atomic_path(args.out) as partial:
        save_audio(partial, output.audios[0], output.sample_rate)
    with atomic_path(image_path) as partial:
        output.spectrograms[0].save(partial)
    samples = output.audios.shape[-1]
    print(f"wrote {args.out} ({samples / output.sample_rate:.2f} s, {output.sample_rate} Hz) and {image_path}")
    return 0
