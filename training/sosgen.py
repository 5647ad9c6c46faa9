"""Training of the SoSgen pipelines (paper section 4.2.2), run by `accelerate launch train/gen.py`.

Modes (the paper's three generators):

- `text` (SoSgen_text, eq. 12): the UNet and the CLIP text encoder are fine-tuned on (story text, spectrogram
  image of the slice's background audio) pairs, the denoising loss of diffusers' `train_text_to_image.py`.
- `controlnet` (SoSgen_text+image, eq. 13): the text-to-audio model is frozen; a ControlNet (initialised from the
  UNet, as `controlnet_from_unet`) and its frame projection learn to add the story's frames, as diffusers'
  `train_controlnet.py`. The frames enter as the pipeline feeds them: CLIP frame tokens with time positions as the
  ControlNet's cross-attention context, and the time-aligned filmstrip as its spatial hint.
- `image` (SoSgen_image): the same, with the text fixed to "Audio".

Each step takes one random `window_width`-column window of the slice's spectrogram (the width the pipeline
generates per window); the spectrogram is computed from the audio with the pipeline's own spectrogram parameters
so the images match what the pipeline decodes. Flags, checkpoints, resume and the model card are shared with
`train/retrieval.py`; `--use_ema`, `--snr_gamma`, `--use_lora`, `--gradient_checkpointing` follow diffusers.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from sound_of_story.core import model_ids
from sound_of_story.core.atomic_files import atomic_path
from sound_of_story.core.help_formatter import HelpFormatter

from .arguments import add_common_arguments, check_common_arguments, command_line, training_settings
from .checkpointing import (
    end_run,
    plan_schedule,
    resolve_resume_checkpoint,
    resume_training,
    save_checkpoint,
    write_history,
)

logger = logging.getLogger(__name__)

GenMode = Literal["text", "controlnet", "image"]
GEN_MODES: tuple[str, ...] = get_args(GenMode)
DEFAULT_PRETRAINED = model_ids.RIFFUSION
DEFAULT_IMAGE_ENCODER = model_ids.CLIP
# Section 4.2.2: batch 1, gradient accumulation 16, lr 1e-6, cosine schedule.
PAPER_BATCH_SIZE = 1
PAPER_ACCUMULATION = 16
PAPER_LR = 1e-6
GENERATION_COLUMNS = {
    "text": ("audio", "text"),
    "controlnet": ("audio", "text", "frames", "frame_times", "start"),
    "image": ("audio", "frames", "frame_times", "start"),
}
# ControlNet hint-encoder widths (ControlNet's own for an 8x VAE), cut to the VAE's downsampling.
CONDITIONING_CHANNELS = (16, 32, 96, 256)
LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


# --------------------------------------------------------------------------- arguments


def build_sosgen_parser() -> argparse.ArgumentParser:
    """`train/gen.py`'s flags: the shared diffusers-style ones plus the generation ones."""
    parser = argparse.ArgumentParser(
        prog="train/gen.py",
        description="Train SoSgen (paper section 4.2.2) on a built SoS dataset's generation config.\n"
        "Run with `accelerate launch train/gen.py --mode text|controlnet|image ...`.",
        formatter_class=HelpFormatter,
    )
    g = parser.add_argument_group("generation")
    g.add_argument(
        "--mode",
        choices=GEN_MODES,
        default="text",
        help="text: UNet + text encoder; controlnet: frames; image: frames, text 'Audio'",
    )
    g.add_argument(
        "--pretrained_model",
        default=DEFAULT_PRETRAINED,
        help="a SoSgen/Riffusion pipeline folder or Hub id (a `text` output for controlnet)",
    )
    g.add_argument(
        "--image_encoder", default=DEFAULT_IMAGE_ENCODER, help="CLIP vision model of a new ControlNet's frame tokens"
    )
    g.add_argument("--dataset", required=True, help="a built SoS folder (`sound-of-story build`) or a Hub dataset id")
    g.add_argument("--dataset_config", default="generation", help="dataset config with 15 s slices")
    g.add_argument("--train_split", default="train", help="split to train on")
    g.add_argument(
        "--validation_split",
        default="test",
        help="held-out slices: validation prompts/frames and FAD references ('none': no validation)",
    )
    g.add_argument(
        "--validation_steps", type=int, default=500, help="validate every N optimizer steps (and at the end)"
    )
    g.add_argument(
        "--num_validation_samples", type=int, default=4, help="held-out slices generated at each validation"
    )
    g.add_argument(
        "--validation_inference_steps", type=int, default=25, help="denoising steps of the validation generations"
    )
    g.add_argument(
        "--validation_fad_checkpoint", default=None,
        help="VGGish .pth for the validation FAD (default: torchvggish's, downloaded); 'random' = random weights (offline tests only)",
    )  # fmt: skip
    g.add_argument(
        "--no_validation_fad",
        action="store_true",
        help="skip the FAD at validation (audio and images are still logged)",
    )
    g.add_argument(
        "--freeze_text_encoder", action="store_true", help="text mode: train the UNet only (the paper trains both)"
    )
    g.add_argument(
        "--gradient_checkpointing",
        action="store_true",
        help="recompute activations in the backward pass (less memory)",
    )
    g.add_argument(
        "--use_ema", action="store_true", help="keep an exponential moving average of the trained weights and save it"
    )
    g.add_argument("--ema_decay", type=float, default=0.9999, help="EMA decay")
    g.add_argument(
        "--snr_gamma",
        type=float,
        default=None,
        help="Min-SNR loss weighting gamma (Hang et al. 2023; 5.0 recommended)",
    )
    g.add_argument("--noise_offset", type=float, default=0.0, help="noise offset (0 = none)")
    g.add_argument(
        "--use_lora",
        action="store_true",
        help="text mode: train LoRA adapters of the UNet and text encoder (peft) instead",
    )
    g.add_argument("--lora_rank", type=int, default=4, help="LoRA rank")
    g.add_argument("--weight_decay", type=float, default=1e-2, help="AdamW weight decay")
    add_common_arguments(
        parser, train_batch_size=PAPER_BATCH_SIZE, num_train_epochs=100, gradient_accumulation_steps=PAPER_ACCUMULATION,
        learning_rate=PAPER_LR, lr_scheduler="cosine", checkpointing_steps=500,
    )  # fmt: skip
    return parser


def parse_sosgen_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_sosgen_parser().parse_args(argv)
    args.command = command_line(argv)
    return args


def _check_sosgen_args(args: argparse.Namespace) -> None:
    check_common_arguments(args)
    if args.use_lora and args.mode != "text":
        raise ValueError("--use_lora is implemented for --mode text (the ControlNet is trained in full)")
    if args.use_lora and args.use_ema:
        raise ValueError("--use_lora and --use_ema do not combine here (as in diffusers' LoRA example)")
    if args.validation_steps < 1 or args.num_validation_samples < 1:
        raise ValueError("--validation_steps and --num_validation_samples must be >= 1")
    if args.snr_gamma is not None and not args.snr_gamma > 0:
        raise ValueError(f"--snr_gamma must be > 0, got {args.snr_gamma}")


# --------------------------------------------------------------------------- data


def load_generation_splits(args: argparse.Namespace):
    """The training and validation splits of the generation config, checked for the mode's columns."""
    import datasets

    try:
        splits = datasets.load_dataset(args.dataset, args.dataset_config)
    except (FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as error:
        raise FileNotFoundError(
            f"--dataset {args.dataset}: not a built SoS folder or a reachable Hub dataset ({error})"
        ) from error
    except (
        ValueError
    ) as error:  # an unknown config, or `Instruction "train" corresponds to no data!` for an empty split
        raise ValueError(
            f"--dataset {args.dataset} config {args.dataset_config!r} could not be loaded ({error}): unknown config or a split is empty"
        ) from error
    columns = GENERATION_COLUMNS[args.mode]
    names = [args.train_split] + ([] if args.validation_split == "none" else [args.validation_split])
    out = []
    for name in names:
        if name not in splits:
            raise ValueError(
                f"--dataset {args.dataset} ({args.dataset_config}) has no split {name!r} (it has {sorted(splits)})"
            )
        split = splits[name]
        missing = [c for c in columns if c not in split.column_names]
        if missing:
            raise ValueError(
                f"--dataset {args.dataset} split {name!r} has no column(s) {missing} for --mode {args.mode}; it has {split.column_names}"
            )
        if len(split) == 0:
            raise ValueError(f"--dataset {args.dataset} split {name!r} is empty")
        out.append(split)
    return out[0], (out[1] if len(out) > 1 else None)


def _window_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    digest = hashlib.sha256(f"gen:{seed}:{epoch}:{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _decoded_audio(audio: Any) -> tuple[np.ndarray, int]:
    """A `datasets` audio value (torchcodec decoder or dict) as `(channels, samples)` float32 and its rate."""
    if hasattr(audio, "get_all_samples"):
        samples = audio.get_all_samples()
        return samples.data.numpy(), int(samples.sample_rate)
    array = np.asarray(audio["array"], dtype=np.float32)
    return (array[None] if array.ndim == 1 else array), int(audio["sampling_rate"])


def _mono_audio(audio: Any) -> tuple[np.ndarray, int]:
    array, rate = _decoded_audio(audio)
    return array.mean(axis=0), rate


def slice_spectrogram(audio: Any, params) -> torch.Tensor:
    """The slice's Riffusion image `(3, num_frequencies, width)` uint8, with the pipeline's spectrogram parameters."""
    from sound_of_story.audio.spectrogram import audio_to_image

    image = audio_to_image(*_decoded_audio(audio), params)
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()


@dataclass
class SliceCollator:
    """Slices into one random `window_width`-column spectrogram window each (white = silence past the end), the
    tokenized text, and for the frame modes the frames and their times within the window's slice."""

    params: Any
    window_width: int
    tokenizer: Any
    mode: str
    seed: int
    epoch: int = 0

    def __call__(self, items: list[tuple[int, dict]]) -> dict[str, Any]:
        from sound_of_story.pipelines import IMAGE_ONLY_PROMPT

        images, starts, texts, frames, times = [], [], [], [], []
        for index, row in items:
            image = slice_spectrogram(row["audio"], self.params)
            width = image.shape[-1]
            start = int(
                _window_generator(self.seed, self.epoch, index).integers(0, max(1, width - self.window_width + 1))
            )
            window = image[..., start : start + self.window_width]
            window = F.pad(window, (0, self.window_width - window.shape[-1]), value=255)
            images.append(window)
            starts.append(start)
            texts.append(IMAGE_ONLY_PROMPT if self.mode == "image" else row["text"])
            if self.mode != "text":
                frames.append(
                    [
                        torch.from_numpy(np.array(f.convert("RGB"))).permute(2, 0, 1).float() / 255
                        for f in row["frames"]
                    ]
                )
                times.append([max(0.0, t - row["start"]) for t in row["frame_times"]])
        tokens = self.tokenizer(
            texts,
            max_length=self.tokenizer.model_max_length,
            padding="max_length",
            truncation=True,
            return_tensors="pt",
        )
        # uint8 [0, 255] -> [-1, 1], the VAE's input range (the pipeline maps decoded images back with x / 2 + 0.5).
        batch = {
            "pixel_values": torch.stack(images).float() / 127.5 - 1.0,
            "input_ids": tokens.input_ids,
            "window_start": torch.tensor(starts),
        }
        if self.mode != "text":
            batch["frames"], batch["frame_times"] = frames, times
        return batch


class IndexedSlices(torch.utils.data.Dataset):
    def __init__(self, slices):
        self.slices = slices

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, index: int):
        return index, self.slices[index]


# --------------------------------------------------------------------------- models


def load_generation_pipeline(args: argparse.Namespace):
    """The pipeline to train from `--pretrained_model`; for the frame modes a `SoSgenControlNetPipeline` whose
    ControlNet is the base's own (continued) or a new one from its UNet and `--image_encoder`."""
    from diffusers import ControlNetModel, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    from sound_of_story.pipelines import SoSgenControlNetPipeline, SoSgenPipeline, controlnet_from_unet

    source = Path(args.pretrained_model)
    if source.exists() and not (source / "model_index.json").exists():
        raise FileNotFoundError(f"--pretrained_model {source}: no model_index.json (not a diffusers pipeline folder)")
    if source.exists() and not (source / "unet").is_dir():
        what = (
            "a text-to-audio base with a UNet to condition"
            if args.mode != "text"
            else "a pipeline with a UNet to fine-tune"
        )
        raise ValueError(f"--mode {args.mode} needs {what}; {source} has no unet/ folder")
    try:
        index = json.loads((source / "model_index.json").read_text()) if source.exists() else {}
    except json.JSONDecodeError as error:
        raise ValueError(f"--pretrained_model {source}/model_index.json is not valid JSON: {error}") from error
    try:
        base = SoSgenPipeline.from_pretrained(args.pretrained_model)
    except OSError as error:  # a Hub id that cannot be reached, or a folder missing a component's files
        raise FileNotFoundError(
            f"--pretrained_model {args.pretrained_model}: cannot load the pipeline ({error})"
        ) from error
    if getattr(base, "unet", None) is None or not isinstance(base.unet, UNet2DConditionModel):
        raise ValueError(
            f"--pretrained_model {args.pretrained_model} has no UNet: it cannot be trained or conditioned"
        )
    if args.mode == "text":
        return base
    components = {k: getattr(base, k) for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    if "controlnet" in index and not _new_controlnet(args):
        components["controlnet"] = ControlNetModel.from_pretrained(source / "controlnet")
        components["image_encoder"] = CLIPVisionModelWithProjection.from_pretrained(source / "image_encoder")
        components["feature_extractor"] = CLIPImageProcessor.from_pretrained(source / "feature_extractor")
    else:
        components["image_encoder"] = CLIPVisionModelWithProjection.from_pretrained(args.image_encoder)
        components["feature_extractor"] = CLIPImageProcessor.from_pretrained(args.image_encoder)
        # The hint encoder downsamples as much as the VAE: log2(vae_scale_factor) + 1 stages (4 for Riffusion's 8x).
        stages = int(math.log2(base.vae_scale_factor)) + 1
        components["controlnet"] = controlnet_from_unet(
            base.unet, components["image_encoder"], CONDITIONING_CHANNELS[:stages]
        )
    config = {
        k: v
        for k, v in base.config.items()
        if not k.startswith("_") and k != "image_only" and not isinstance(v, (list, tuple))
    }
    return SoSgenControlNetPipeline(**components, **config, image_only=args.mode == "image")


def _new_controlnet(args: argparse.Namespace) -> bool:
    """Whether the frame modes start a ControlNet from the UNet and `--image_encoder` (the base has none)."""
    return args.mode != "text" and not (Path(args.pretrained_model) / "controlnet").is_dir()


class DenoisingModel(nn.Module):
    """The trained part of one step as a module (what `accelerate.prepare` wraps): text mode holds the UNet and the
    text encoder; frame modes hold the ControlNet and use the frozen UNet / text encoder / image encoder."""

    def __init__(self, pipe, mode: str):
        super().__init__()
        self.mode = mode
        self.unet = pipe.unet
        self.text_encoder = pipe.text_encoder
        self.controlnet = getattr(pipe, "controlnet", None) if mode != "text" else None
        self._pipe = [pipe]  # not a submodule: the frozen image encoder and VAE stay out of DDP

    def forward(
        self, noisy_latents, timesteps, input_ids, frames=None, frame_times=None, window_start=None
    ) -> torch.Tensor:
        text_states = self.text_encoder(input_ids, return_dict=False)[0]
        if self.mode == "text":
            return self.unet(noisy_latents, timesteps, encoder_hidden_states=text_states, return_dict=False)[0]
        pipe = self._pipe[0]
        down, mid = frame_residuals(pipe, self.controlnet, noisy_latents, timesteps, frames, frame_times, window_start)
        return self.unet(
            noisy_latents, timesteps, encoder_hidden_states=text_states,
            down_block_additional_residuals=down, mid_block_additional_residual=mid, return_dict=False,
        )[0]  # fmt: skip


def frame_residuals(pipe, controlnet, latents, timesteps, frames, frame_times, window_start):
    """The ControlNet residuals of a batch of windows, with the frames conditioned exactly as the pipeline does
    (the filmstrip hint and the frame tokens of each window), one item at a time (frame counts differ)."""
    from sound_of_story.pipelines import GenerationWindow

    width = latents.shape[-1] * pipe.vae_scale_factor
    params = pipe.spectrogram_params
    downs, mids = [], []
    for k in range(latents.shape[0]):
        start = int(window_start[k])
        full_width = start + width
        num_samples = params.num_samples_for_width(full_width)
        story_times = [min(t, (num_samples - 1) / params.sample_rate) for t in frame_times[k]]
        with torch.no_grad():
            condition = pipe.frame_condition([frames[k]], [story_times], full_width, num_samples, latents.device)
        window = pipe.window_condition(
            condition, GenerationWindow(start=start, width=width, overlap=0), latents.device
        )
        down, mid = controlnet(
            latents[k : k + 1], timesteps[k : k + 1], encoder_hidden_states=window.contexts[0][None],
            controlnet_cond=window.hint.to(latents.dtype), return_dict=False,
        )  # fmt: skip
        downs.append(down)
        mids.append(mid)
    return [torch.cat(parts) for parts in zip(*downs)], torch.cat(mids)


# --------------------------------------------------------------------------- outputs


@dataclass
class GenerationResult:
    global_step: int
    losses: list[float] = field(default_factory=list)
    fad: float | None = None
    output_dir: str = ""


def save_generation_output(
    pipe, trained: DenoisingModel, args: argparse.Namespace, fad: float | None, ema=None
) -> None:
    """The trained pipeline (or the LoRA adapters) with its model card into `--output_dir`."""
    from sound_of_story.cards import build_model_card

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.use_lora:
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        unet_layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(trained.unet))
        text_layers = (
            None
            if args.freeze_text_encoder
            else convert_state_dict_to_diffusers(get_peft_model_state_dict(trained.text_encoder))
        )
        type(pipe).save_lora_weights(out, unet_lora_layers=unet_layers, text_encoder_lora_layers=text_layers)
    else:
        saved = pipe
        if ema is not None:
            saved = copy.copy(pipe)
            target = trained.unet if args.mode == "text" else trained.controlnet
            shadow = copy.deepcopy(target)
            ema.copy_to(shadow.parameters())
            saved.register_modules(**({"unet": shadow} if args.mode == "text" else {"controlnet": shadow}))
        saved.save_pretrained(out)
    from huggingface_hub import EvalResult

    results = None
    if fad is not None:
        results = [
            EvalResult(
                task_type="text-to-audio",
                dataset_type=args.dataset,
                dataset_name=args.dataset,
                dataset_split=args.validation_split,
                metric_type="fad",
                metric_name="FAD (VGGish)" + (" random weights" if args.validation_fad_checkpoint == "random" else ""),
                metric_value=fad,
            )
        ]
    card = build_model_card(
        library_name="diffusers", base_models=[args.pretrained_model] + ([args.image_encoder] if _new_controlnet(args) else []),
        dataset=args.dataset, pipeline_tag="text-to-audio", tags=["sosgen", f"sosgen-{args.mode}", "riffusion"] + (["lora"] if args.use_lora else []),
        command=args.command, training_settings=training_settings(args), eval_results=results,
        model_name=args.hub_model_id.split("/")[-1] if args.hub_model_id else out.name,
        description=f"SoSgen ({args.mode} mode) trained with `train/gen.py` (Sound of Story, section 4.2.2)."
        + (" LoRA adapters: load the base pipeline, then `pipe.load_lora_weights(this_folder)`." if args.use_lora else ""),
    )  # fmt: skip
    with atomic_path(out / "README.md") as tmp:
        card.save(tmp)


# --------------------------------------------------------------------------- validation


def run_validation(pipe, slices, args, accelerator, global_step: int) -> float | None:
    """Generate audio for the first `--num_validation_samples` held-out slices (their text, and frames in the frame
    modes); write WAVs and spectrogram images under OUTPUT/validation/step-N and to the tracker; return the FAD of
    the generated audio against the real slices (None with --no_validation_fad)."""
    from sound_of_story.audio.spectrogram import save_audio

    out = Path(args.output_dir) / "validation" / f"step-{global_step}"
    out.mkdir(parents=True, exist_ok=True)
    rows = slices.select(range(min(args.num_validation_samples, len(slices))))
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    generated, references = [], []
    params = pipe.spectrogram_params
    for i, row in enumerate(rows):
        duration = float(row["end"] - row["start"])
        call = {"duration_s": duration, "num_inference_steps": args.validation_inference_steps, "generator": generator}
        if args.mode != "image":
            call["prompt"] = row["text"]
        if args.mode != "text":
            call["frames"] = [f.convert("RGB") for f in row["frames"]] or None
            call["frame_times"] = [max(0.0, t - row["start"]) for t in row["frame_times"]]
        result = pipe(**call)
        audio = np.asarray(result.audios[0], dtype=np.float32)
        save_audio(out / f"{i:02d}.wav", audio, result.sample_rate)
        result.spectrograms[0].save(out / f"{i:02d}.png")  # PIL, with Riffusion's EXIF
        mono = audio.reshape(-1, audio.shape[-1]).mean(axis=0)  # (channels, samples) -> mono, FAD's input
        generated.append(mono)
        references.append(_mono_audio(row["audio"]))
        for tracker in accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.writer.add_audio(
                    f"validation/{i}", torch.from_numpy(mono), global_step, sample_rate=result.sample_rate
                )
                tracker.writer.add_image(
                    f"validation/{i}", np.array(result.spectrograms[0].convert("RGB")), global_step, dataformats="HWC"
                )
    if args.no_validation_fad:
        return None
    from sound_of_story.metrics.fad import VGGishEmbedder, compute_fad

    embedder = (
        VGGishEmbedder.from_random_weights(0, pad_short_clips=True)
        if args.validation_fad_checkpoint == "random"
        else VGGishEmbedder.from_checkpoint(args.validation_fad_checkpoint, pad_short_clips=True)
    )
    rates = [r for _, r in references]
    fad = compute_fad(
        generated, [a for a, _ in references], embedder, sample_rate=params.sample_rate, reference_sample_rate=rates
    ).fad
    accelerator.log({"validation/fad": fad}, step=global_step)
    return float(fad)


# --------------------------------------------------------------------------- the loop


def train_sosgen(args: argparse.Namespace, accelerator=None) -> GenerationResult:
    """Run `train/gen.py` on parsed arguments (`parse_sosgen_args`) in this process; the demo calls it.

    Raises ValueError / FileNotFoundError on bad input (the script maps them to exit code 2).
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel, compute_snr

    _check_sosgen_args(args)
    if accelerator is None:
        accelerator = Accelerator(
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision=args.mixed_precision,
            log_with=None if args.report_to == "none" else args.report_to,
            project_config=ProjectConfiguration(
                project_dir=args.output_dir, logging_dir=str(Path(args.output_dir) / args.logging_dir)
            ),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        )
    resume_path = resolve_resume_checkpoint(args.output_dir, args.resume_from_checkpoint)
    train_slices, validation_slices = load_generation_splits(args)
    set_seed(args.seed)
    pipe = load_generation_pipeline(args)
    pipe.set_progress_bar_config(disable=True)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    pipe.vae.requires_grad_(False)
    if args.mode == "text":
        pipe.text_encoder.requires_grad_(not args.freeze_text_encoder)
        pipe.unet.requires_grad_(True)
        if args.use_lora:
            from peft import LoraConfig

            pipe.unet.requires_grad_(False)
            pipe.text_encoder.requires_grad_(False)
            pipe.unet.add_adapter(
                LoraConfig(
                    r=args.lora_rank,
                    lora_alpha=args.lora_rank,
                    init_lora_weights="gaussian",
                    target_modules=LORA_TARGETS,
                )
            )
            if not args.freeze_text_encoder:
                pipe.text_encoder.add_adapter(
                    LoraConfig(
                        r=args.lora_rank,
                        lora_alpha=args.lora_rank,
                        init_lora_weights="gaussian",
                        target_modules=TEXT_LORA_TARGETS,
                    )
                )
    else:
        for module in (pipe.unet, pipe.text_encoder, pipe.image_encoder):
            module.requires_grad_(False)
        pipe.controlnet.requires_grad_(True)
    trained = DenoisingModel(pipe, args.mode)
    if args.gradient_checkpointing:
        for module in (trained.unet, trained.controlnet):
            if module is not None and any(p.requires_grad for p in module.parameters()):
                module.enable_gradient_checkpointing()
    pipe.to(accelerator.device)
    params_to_train = [p for p in trained.parameters() if p.requires_grad]
    ema = None
    if args.use_ema:
        target = trained.unet if args.mode == "text" else trained.controlnet
        ema = EMAModel(target.parameters(), decay=args.ema_decay)
        accelerator.register_for_checkpointing(ema)

    collator = SliceCollator(
        pipe.spectrogram_params, int(pipe.config.window_width), pipe.tokenizer, args.mode, args.seed
    )
    loader = torch.utils.data.DataLoader(
        IndexedSlices(train_slices), batch_size=args.train_batch_size, shuffle=True, collate_fn=collator,
        num_workers=args.dataloader_num_workers, generator=torch.Generator().manual_seed(args.seed),
    )  # fmt: skip
    optimizer = torch.optim.AdamW(
        params_to_train,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.weight_decay,
        eps=args.adam_epsilon,
    )
    schedule = plan_schedule(args, optimizer, len(train_slices), accelerator.num_processes)
    updates_per_epoch, max_steps, num_epochs = schedule.updates_per_epoch, schedule.max_steps, schedule.num_epochs
    scheduler = schedule.scheduler
    trained, optimizer, loader, scheduler = accelerator.prepare(trained, optimizer, loader, scheduler)
    if accelerator.log_with:
        accelerator.init_trackers(
            "sosgen",
            config={k: v for k, v in training_settings(args).items() if isinstance(v, (int, float, str, bool))},
        )

    start = resume_training(accelerator, scheduler, resume_path, args, updates_per_epoch)
    global_step, first_epoch, skip, history = start.global_step, start.first_epoch, start.skip_batches, start.history
    result = GenerationResult(global_step=global_step, losses=[h["loss"] for h in history], output_dir=args.output_dir)
    noise_generator = torch.Generator(device=accelerator.device)
    vae = pipe.vae
    progress = tqdm(range(max_steps), initial=global_step, desc="steps", disable=not accelerator.is_local_main_process)
    step_losses = []
    unwrapped = accelerator.unwrap_model(trained)
    for epoch in range(first_epoch, num_epochs):
        trained.train()
        collator.epoch = epoch
        loader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, skip) if epoch == first_epoch and skip else loader
        for batch_index, batch in enumerate(batches, start=skip if epoch == first_epoch else 0):
            # The noise and timesteps of a batch depend only on (seed, epoch, batch, process): resume reproduces them.
            noise_generator.manual_seed(
                hash((args.seed, epoch, batch_index, accelerator.process_index)) & ((1 << 62) - 1)
            )
            with accelerator.accumulate(trained):
                with torch.no_grad():
                    latents = (
                        vae.encode(batch["pixel_values"].to(vae.dtype)).latent_dist.sample(noise_generator)
                        * vae.config.scaling_factor
                    )
                noise = torch.randn(
                    latents.shape, generator=noise_generator, device=latents.device, dtype=latents.dtype
                )
                if args.noise_offset:
                    noise += args.noise_offset * torch.randn(
                        (*latents.shape[:2], 1, 1), generator=noise_generator, device=latents.device
                    )
                timesteps = torch.randint(
                    0,
                    noise_scheduler.config.num_train_timesteps,
                    (latents.shape[0],),
                    generator=noise_generator,
                    device=latents.device,
                )
                noisy = noise_scheduler.add_noise(latents, noise, timesteps)
                target = (
                    noise
                    if noise_scheduler.config.prediction_type == "epsilon"
                    else noise_scheduler.get_velocity(latents, noise, timesteps)
                )
                pred = trained(
                    noisy,
                    timesteps,
                    batch["input_ids"],
                    batch.get("frames"),
                    batch.get("frame_times"),
                    batch["window_start"],
                )
                if args.snr_gamma is None:
                    loss = F.mse_loss(pred.float(), target.float())
                else:
                    snr = compute_snr(noise_scheduler, timesteps)
                    weights = torch.stack([snr, args.snr_gamma * torch.ones_like(snr)], dim=1).min(dim=1)[0]
                    weights = (
                        weights / snr if noise_scheduler.config.prediction_type == "epsilon" else weights / (snr + 1)
                    )
                    loss = (
                        F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3)) * weights
                    ).mean()
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params_to_train, args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                step_losses.append(accelerator.gather(loss.detach()[None]).mean())
            if not accelerator.sync_gradients:
                continue
            if ema is not None:
                ema.step((unwrapped.unet if args.mode == "text" else unwrapped.controlnet).parameters())
            global_step += 1
            step_loss = float(torch.stack(step_losses).mean())
            step_losses = []
            history.append({"step": global_step, "loss": step_loss, "lr": scheduler.get_last_lr()[0]})
            result.losses.append(step_loss)
            progress.update(1)
            progress.set_postfix(loss=f"{step_loss:.4f}")
            accelerator.log({"train/loss": step_loss, "train/lr": scheduler.get_last_lr()[0]}, step=global_step)
            if global_step % args.checkpointing_steps == 0:
                write_history(accelerator, args.output_dir, history)
                save_checkpoint(accelerator, args.output_dir, global_step, args.checkpoints_total_limit)
            if validation_slices is not None and global_step % args.validation_steps == 0 and global_step < max_steps:
                result.fad = _validate(pipe, validation_slices, args, accelerator, global_step)
            if global_step >= max_steps:
                break
        if global_step >= max_steps:
            break
    progress.close()
    if validation_slices is not None:
        result.fad = _validate(pipe, validation_slices, args, accelerator, global_step)
    result.global_step = global_step
    write_history(accelerator, args.output_dir, history)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_generation_output(pipe, unwrapped, args, result.fad, ema)
        if args.push_to_hub:
            from .retrieval import push_output_dir

            push_output_dir(args)
    end_run(accelerator)
    return result


def _validate(pipe, slices, args, accelerator, global_step: int) -> float | None:
    fad = [None]
    if accelerator.is_main_process:
        was = [m.training for m in (pipe.unet, pipe.text_encoder)]
        pipe.unet.eval()
        pipe.text_encoder.eval()
        with torch.random.fork_rng(devices=[]):
            fad[0] = run_validation(pipe, slices, args, accelerator, global_step)
        pipe.unet.train(was[0])
        pipe.text_encoder.train(was[1])
    if accelerator.num_processes > 1:
        import torch.distributed as dist

        dist.broadcast_object_list(fad, src=0)
    return fad[0]


__all__ = [
    "GEN_MODES",
    "GenMode",
    "build_sosgen_parser",
    "load_generation_pipeline",
    "parse_sosgen_args",
    "train_sosgen",
]
