"""``sound-of-story generate``: background sound for a story from a SoSgen pipeline.

Registered in ``app/cli.py`` by ``add_generate_parser(sub)``. Heavy imports happen when the
command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sound_of_story.app.help_formatter import HelpFormatter

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CONTROLNET_PIPELINE = "SoSgenControlNetPipeline"


def add_generate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``generate`` subcommand to ``subparsers`` (its ``func`` runs it and returns an exit code)."""
    parser = subparsers.add_parser(
        "generate",
        help="generate background sound for a description (and frames) with a SoSgen pipeline",
        description=(
            "Generate audio with a SoSgen pipeline: text to audio (SoSgenPipeline, or riffusion/riffusion-model-v1 as it is), "
            "or frames and text to audio (SoSgenControlNetPipeline, with --frames). Writes the WAV and, next to it, "
            "the spectrogram image (PNG with Riffusion's EXIF). Audio longer than the model's window is generated as "
            "overlapping, inpainted windows."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", required=True, help="pipeline folder or Hub id")
    parser.add_argument("--text", help="the description (required unless the model is image-only)")
    parser.add_argument("--negative-text", help="what to steer away from")
    parser.add_argument("--frames", type=Path, help=f"folder of the story's frames ({', '.join(FRAME_SUFFIXES)}), in file-name order; needs a {CONTROLNET_PIPELINE}")
    parser.add_argument("--frame-times", help="comma-separated time in seconds of each frame (default: evenly spaced)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of audio")
    parser.add_argument("--out", type=Path, required=True, help="output WAV file; the spectrogram goes to the same name with .png")
    parser.add_argument("--window-width", type=int, help="widest image generated in one go, in pixels (default: the model's; 512 for riffusion-model-v1)")
    parser.add_argument("--steps", type=int, default=50, help="denoising steps")
    parser.add_argument("--guidance", type=float, default=7.0, help="classifier-free guidance scale")
    parser.add_argument("--controlnet-scale", type=float, default=1.0, help="ControlNet conditioning scale (with --frames)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (fixes the audio)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", choices=("auto", "float32", "float16", "bfloat16"), default="auto", help="model dtype; auto = float16 on CUDA, else float32")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_generate)
    return parser


def _frame_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"--frames: {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise ValueError(f"--frames: no images ({', '.join(FRAME_SUFFIXES)}) in {folder}")
    return files


def _parse_times(text: str | None, count: int) -> list[float] | None:
    if text is None:
        return None
    try:
        times = [float(t) for t in text.split(",")]
    except ValueError as err:
        raise ValueError(f"--frame-times must be comma-separated numbers, got {text!r}") from err
    if len(times) != count:
        raise ValueError(f"--frame-times has {len(times)} times but --frames holds {count} images")
    return times


def run_generate(args: argparse.Namespace) -> int:
    """Load the pipeline, generate, write ``args.out`` (WAV) and its ``.png`` spectrogram."""
    import torch
    from diffusers import DiffusionPipeline
    from PIL import Image

    from sound_of_story.pipelines import SoSgenControlNetPipeline, SoSgenPipeline
    from sound_of_story.pipelines.spectrogram import save_audio

    if args.duration <= 0:
        raise ValueError(f"--duration must be positive, got {args.duration}")
    if args.out.suffix.lower() != ".wav":
        raise ValueError(f"--out must be a .wav file, got {args.out}")
    model = str(args.model)
    if not Path(model).exists() and model.count("/") != 1:  # neither a folder nor an owner/name Hub id
        raise FileNotFoundError(f"--model: {model} is not a folder or a Hub id")
    try:
        class_name = DiffusionPipeline.load_config(model).get("_class_name")
    except OSError as err:
        raise FileNotFoundError(f"--model: cannot read model_index.json of {model}: {err}") from err
    if args.frames is not None and class_name != CONTROLNET_PIPELINE:
        raise ValueError(f"--frames needs a {CONTROLNET_PIPELINE}, but {model} is a {class_name}")
    if args.frames is None and class_name == CONTROLNET_PIPELINE:
        raise ValueError(f"{model} is a {CONTROLNET_PIPELINE}: give the story's frames with --frames")

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
    if args.frames is not None:
        files = _frame_files(args.frames)
        frames = [Image.open(p).convert("RGB") for p in files]
        kwargs.update(frames=frames, frame_times=_parse_times(args.frame_times, len(files)), controlnet_conditioning_scale=args.controlnet_scale)
        if not pipe.config.image_only:
            kwargs["prompt"] = args.text
        elif args.text is not None:
            raise ValueError(f"{model} is image-only (its text is always 'Audio'): drop --text")
    else:
        if args.text is None:
            raise ValueError("--text is required")
        kwargs["prompt"] = args.text

    output = pipe(**kwargs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_audio(args.out, output.audios[0], output.sample_rate)
    image_path = args.out.with_suffix(".png")
    output.spectrograms[0].save(image_path)
    samples = output.audios.shape[-1]
    print(f"wrote {args.out} ({samples / output.sample_rate:.2f} s, {output.sample_rate} Hz) and {image_path}")
    return 0
