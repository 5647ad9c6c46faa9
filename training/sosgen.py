"""Training of the SoSgen pipelines (paper section 4.2.2), run by `accelerate launch train/gen.py`.

Modes (the paper's three generators):

- `text` (SoSgen_text, eq. 12): the UNet and the CLIP text encoder are fine-tuned on (story text, spectrogram
  image of the slice's background audio) pairs, the denoising loss of diffusers' `train_text_to_image.py`.
- `controlnet` (SoSgen_text+image, eq. 13): the text-to-audio model is frozen; a ControlNet (initialised from the
  UNet, as `controlnet_from_unet`) and its frame projection learn to add the story's frames, as diffusers'
  `train_controlnet.py`. The frames enter as the pipeline feeds them: CLIP frame tokens with time positions as the
  ControlNet's cross-attention context, and the time-aligned filmstrip as its spatial hint.
- `image` (SoSgen_image): the same, with the text fixed to "Audio". The paper trains it on the Riffusion checkpoint
  (section 4.2.2, Figure 5), while SoSgen_text+image continues from SoSgen_text: `--pretrained_model` says which.

Each step takes one random `window_width`-column window of the slice's spectrogram (the width the pipeline
generates per window; this package's choice, the paper does not say how a 15 s slice met Riffusion's input); the spectrogram is computed from the audio with the pipeline's own spectrogram parameters
so the images match what the pipeline decodes. Flags, checkpoints, resume and the model card are shared with
`train/retrieval.py`; `--use_ema`, `--snr_gamma`, `--use_lora`, `--gradient_checkpointing` follow diffusers.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sound_of_story.core import model_ids
from sound_of_story.core.atomic_files import atomic_path

from .arguments import GEN_MODES, GenMode, SoSgenTrainingArguments, build_parser, parse_arguments, training_settings
from .checkpointing import resolve_resume_checkpoint
from .loop import TrainingRun, apply_gradients, broadcast_from_main, build_accelerator, plan_schedule

logger = logging.getLogger(__name__)

DEFAULT_PRETRAINED = model_ids.RIFFUSION
DEFAULT_IMAGE_ENCODER = model_ids.CLIP
GENERATION_COLUMNS = {
    "text": ("audio", "text"),
    "controlnet": ("audio", "text", "frames", "frame_times", "start"),
    "image": ("audio", "frames", "frame_times", "start"),
}
# ControlNet hint-encoder widths (ControlNet's own for an 8x VAE), cut to the VAE's downsampling.
CONDITIONING_CHANNELS = (16, 32, 96, 256)
LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
DESCRIPTION = (
    "Train SoSgen (paper section 4.2.2) on a built SoS dataset's generation config.\n"
    "Run with `accelerate launch train/gen.py --mode text|controlnet|image ...`."
)


# --------------------------------------------------------------------------- arguments


def build_sosgen_parser():
    """`train/gen.py`'s `HfArgumentParser`: one flag per field of `SoSgenTrainingArguments`."""
    return build_parser(SoSgenTrainingArguments, DESCRIPTION)


def parse_sosgen_args(argv: list[str] | None = None) -> SoSgenTrainingArguments:
    """`train/gen.py`'s flags (default: this process's) as `SoSgenTrainingArguments`; a value out of range raises
    ValueError naming its flag."""
    return parse_arguments(SoSgenTrainingArguments, DESCRIPTION, argv)


# --------------------------------------------------------------------------- data


def load_generation_splits(args: SoSgenTrainingArguments):
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
    names = [args.train_split] + ([args.held_out_split] if args.held_out_split else [])
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
    empty_prompt_share: float = 0.0

    def __call__(self, items: list[tuple[int, dict]]) -> dict[str, Any]:
        from sound_of_story.pipelines import IMAGE_ONLY_PROMPT

        images, starts, texts, frames, times = [], [], [], [], []
        for index, row in items:
            image = slice_spectrogram(row["audio"], self.params)
            width = image.shape[-1]
            draws = _window_generator(self.seed, self.epoch, index)
            start = int(draws.integers(0, max(1, width - self.window_width + 1)))
            empty_prompt = bool(draws.random() < self.empty_prompt_share)
            window = image[..., start : start + self.window_width]
            window = F.pad(window, (0, self.window_width - window.shape[-1]), value=255)
            images.append(window)
            starts.append(start)
            texts.append("" if empty_prompt else IMAGE_ONLY_PROMPT if self.mode == "image" else row["text"])
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


def load_generation_pipeline(args: SoSgenTrainingArguments):
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


def _new_controlnet(args: SoSgenTrainingArguments) -> bool:
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


def validation_fad_results(fad: float, args: SoSgenTrainingArguments, clips: int | None) -> list:
    """The last validation's FAD as the card's model-index entry, labelled as what it is: a validation figure of
    `clips` generated clips of the validation split at `--validation_inference_steps` denoising steps."""
    from huggingface_hub import EvalResult

    weights = ", random weights" if args.validation_fad_checkpoint == "random" else ""
    clips = clips if clips is not None else args.num_validation_samples
    return [
        EvalResult(
            task_type="text-to-audio",
            task_name="Validation during training",
            dataset_type=args.dataset,
            dataset_name=args.dataset,
            dataset_split=args.validation_split,
            metric_type="fad",
            metric_name=(
                f"validation FAD (VGGish{weights}): {clips} clip{'s' if clips != 1 else ''} of split "
                f"'{args.validation_split}', {args.validation_inference_steps} denoising "
                f"step{'s' if args.validation_inference_steps != 1 else ''}"
            ),
            metric_value=fad,
        )
    ]


def save_generation_output(
    pipe, trained: DenoisingModel, args: SoSgenTrainingArguments, fad: float | None, ema=None, schedule: str = "",
    validation_clips: int | None = None,
) -> None:  # fmt: skip
    """The trained pipeline (or the LoRA adapters) with its model card into `--output_dir`; `schedule` says in words
    how it was trained (`SoSgenTrainingArguments.schedule_description`), `validation_clips` how many held-out slices
    the last validation's FAD compared."""
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
    results, description = (
        None,
        [
            f"SoSgen ({args.mode} mode) trained with `train/gen.py` (Sound of Story, section 4.2.2).",
            schedule,
        ],
    )
    if args.use_lora:
        description.append("LoRA adapters: load the base pipeline, then `pipe.load_lora_weights(this_folder)`.")
    if fad is not None:
        results = validation_fad_results(fad, args, validation_clips)
        description.append(
            f"The FAD below is the last validation's ({results[0].metric_name}), a check during training: not a "
            "test figure, and not the paper's Table 3 (`sound-of-story evaluate generation` computes that on the whole "
            "test split)."
        )
    card = build_model_card(
        library_name="diffusers", base_models=[args.pretrained_model] + ([args.image_encoder] if _new_controlnet(args) else []),
        dataset=args.dataset, pipeline_tag="text-to-audio", tags=["sosgen", f"sosgen-{args.mode}", "riffusion"] + (["lora"] if args.use_lora else []),
        command=args.launch_command(), training_settings=training_settings(args), eval_results=results,
        model_name=args.hub_model_id.split("/")[-1] if args.hub_model_id else out.name,
        description="\n\n".join(part for part in description if part),
    )  # fmt: skip
    with atomic_path(out / "README.md") as tmp:
        card.save(tmp)


# --------------------------------------------------------------------------- validation


def validation_embedder(args: SoSgenTrainingArguments, is_main_process: bool = True):
    """The VGGish embedder of the validation FAD, loaded before training so that a run that cannot have it stops
    before any training work (exit 2, with `metrics.fad.vggish`'s message: where to get the checkpoint); None when no
    FAD is computed (`--no_validation_fad`, `--validation_split none`) and on the other processes, which check the
    same file (memory-mapped) so that every process stops alike, but never score."""
    if args.held_out_split is None or args.no_validation_fad:
        return None
    from sound_of_story.metrics.fad import VGGishEmbedder
    from sound_of_story.metrics.fad.vggish import load_vggish_state_dict

    random_weights = args.validation_fad_checkpoint == "random"
    try:
        if not is_main_process:
            if not random_weights:
                load_vggish_state_dict(args.validation_fad_checkpoint)
            return None
        if random_weights:
            return VGGishEmbedder.from_random_weights(0, pad_short_clips=True)
        return VGGishEmbedder.from_checkpoint(args.validation_fad_checkpoint, pad_short_clips=True)
    except (ValueError, FileNotFoundError) as error:
        raise type(error)(f"--validation_fad_checkpoint: {error} (or --no_validation_fad)") from None


def run_validation(pipe, slices, args, accelerator, global_step: int, embedder=None) -> float | None:
    """Generate audio for the first `--num_validation_samples` held-out slices (their text, and frames in the frame
    modes); write WAVs and spectrogram images under OUTPUT/validation/step-N and to the tracker; return the FAD of
    the generated audio against the real slices with `embedder` (`validation_embedder`; None: no FAD)."""
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
    if embedder is None:
        return None
    from sound_of_story.metrics.fad import compute_fad

    rates = [r for _, r in references]
    fad = compute_fad(
        generated, [a for a, _ in references], embedder, sample_rate=params.sample_rate, reference_sample_rate=rates
    ).fad
    accelerator.log({"validation/fad": fad}, step=global_step)
    return float(fad)


# --------------------------------------------------------------------------- the loop


def configure_trained_parts(pipe, args: SoSgenTrainingArguments) -> None:
    """What each mode trains: `text` the UNet and the text encoder (eq. 12; LoRA adapters of both with
    `--use_lora`), the frame modes the ControlNet on the frozen text-to-audio model (eq. 13). The VAE is frozen."""
    pipe.vae.requires_grad_(False)
    if args.mode != "text":
        for module in (pipe.unet, pipe.text_encoder, pipe.image_encoder):
            module.requires_grad_(False)
        pipe.controlnet.requires_grad_(True)
        return
    pipe.text_encoder.requires_grad_(not args.freeze_text_encoder)
    pipe.unet.requires_grad_(True)
    if args.use_lora:
        from peft import LoraConfig

        pipe.unet.requires_grad_(False)
        pipe.text_encoder.requires_grad_(False)
        lora = {"r": args.lora_rank, "lora_alpha": args.lora_rank, "init_lora_weights": "gaussian"}
        pipe.unet.add_adapter(LoraConfig(**lora, target_modules=LORA_TARGETS))
        if not args.freeze_text_encoder:
            pipe.text_encoder.add_adapter(LoraConfig(**lora, target_modules=TEXT_LORA_TARGETS))


def prepare_denoising_model(args: SoSgenTrainingArguments, device):
    """The pipeline to train, with the mode's parts trainable, on `device`, and its trained part as one module."""
    pipe = load_generation_pipeline(args)
    pipe.set_progress_bar_config(disable=True)
    configure_trained_parts(pipe, args)
    trained = DenoisingModel(pipe, args.mode)
    if args.gradient_checkpointing:
        # The UNet even when frozen (the frame modes): the ControlNet's gradient flows back through it, so without
        # checkpointing it keeps every activation for the backward pass, most of a full-size step's memory.
        for module in (trained.unet, trained.controlnet):
            if module is not None:
                module.enable_gradient_checkpointing()
    pipe.to(device)
    return pipe, trained


def _ema_target(trained: DenoisingModel, mode: str) -> nn.Module:
    return trained.unet if mode == "text" else trained.controlnet


def _ema_folder(mode: str) -> str:
    """The checkpoint's sub-folder of the EMA weights (diffusers' examples: `unet_ema`)."""
    return "unet_ema" if mode == "text" else "controlnet_ema"


def build_ema(trained: DenoisingModel, args: SoSgenTrainingArguments, accelerator):
    """With `--use_ema`, the moving average of the trained UNet (text) or ControlNet, saved in every checkpoint
    (`register_ema_checkpointing`)."""
    if not args.use_ema:
        return None
    from diffusers.training_utils import EMAModel

    target = _ema_target(trained, args.mode)
    ema = EMAModel(target.parameters(), decay=args.ema_decay, model_cls=type(target), model_config=target.config)
    register_ema_checkpointing(accelerator, ema, _ema_folder(args.mode))
    return ema


def register_ema_checkpointing(accelerator, ema, folder: str) -> None:
    """Save the EMA weights in every checkpoint as `CHECKPOINT/<folder>` (`EMAModel.save_pretrained`: safetensors,
    the EMA state in its config.json) and load them from there on resume, as diffusers' training examples do
    (train_text_to_image.py). `accelerator.register_for_checkpointing(ema)` would store them as
    `custom_checkpoint_0.pkl`, which accelerate loads with a full pickle load: a downloaded checkpoint could run code
    (`checkpointing.check_checkpoint_files` refuses such files)."""

    def save_hook(models, weights, output_dir: str) -> None:
        if accelerator.is_main_process:
            ema.save_pretrained(str(Path(output_dir) / folder))

    def load_hook(models, input_dir: str) -> None:
        path = Path(input_dir) / folder
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"--resume_from_checkpoint {input_dir}: no EMA weights ({folder}/) for --use_ema; it was saved by a run "
                "without --use_ema"
            )
        # EMAModel.from_pretrained, reading safetensors only: the weights, and the EMA state from config.json.
        config = ema.model_cls.load_config(str(path))
        weights = ema.model_cls.from_pretrained(str(path), use_safetensors=True)
        state = {key: config[key] for key in ema.state_dict() if key in config}
        state["shadow_params"] = [p.detach().to(ema.shadow_params[0].device) for p in weights.parameters()]
        ema.load_state_dict(state)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def slice_loader(pipe, train_slices, args: SoSgenTrainingArguments):
    """The shuffled training batches (a random window of each slice's spectrogram) and the collator whose epoch
    sets the windows."""
    collator = SliceCollator(
        pipe.spectrogram_params, int(pipe.config.window_width), pipe.tokenizer, args.mode, args.seed,
        empty_prompt_share=args.proportion_empty_prompts,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(
        IndexedSlices(train_slices), batch_size=args.train_batch_size, shuffle=True, collate_fn=collator,
        num_workers=args.dataloader_num_workers, generator=torch.Generator().manual_seed(args.seed),
    )  # fmt: skip
    return loader, collator


def denoising_loss(trained, vae, noise_scheduler, batch, noise_generator, args: SoSgenTrainingArguments):
    """diffusers' denoising loss of a batch: the windows' latents noised at random timesteps, the prediction
    against the noise (or the velocity), optionally Min-SNR weighted (`--snr_gamma`)."""
    from diffusers.training_utils import compute_snr

    with torch.no_grad():
        latents = vae.encode(batch["pixel_values"].to(vae.dtype)).latent_dist.sample(noise_generator)
        latents = latents * vae.config.scaling_factor
    noise = torch.randn(latents.shape, generator=noise_generator, device=latents.device, dtype=latents.dtype)
    if args.noise_offset:
        noise += args.noise_offset * torch.randn(
            (*latents.shape[:2], 1, 1), generator=noise_generator, device=latents.device
        )
    timesteps = torch.randint(
        0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=noise_generator,
        device=latents.device,
    )  # fmt: skip
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    epsilon = noise_scheduler.config.prediction_type == "epsilon"
    target = noise if epsilon else noise_scheduler.get_velocity(latents, noise, timesteps)
    pred = trained(
        noisy, timesteps, batch["input_ids"], batch.get("frames"), batch.get("frame_times"), batch["window_start"]
    )
    if args.snr_gamma is None:
        return F.mse_loss(pred.float(), target.float())
    snr = compute_snr(noise_scheduler, timesteps)
    weights = torch.stack([snr, args.snr_gamma * torch.ones_like(snr)], dim=1).min(dim=1)[0]
    weights = weights / snr if epsilon else weights / (snr + 1)
    return (F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3)) * weights).mean()


def train_sosgen(args: SoSgenTrainingArguments, accelerator=None) -> GenerationResult:
    """Run `train/gen.py` with `args` (parsed by `parse_sosgen_args` or built in Python) in this process.

    Raises ValueError / FileNotFoundError on bad input (the script maps them to exit code 2).
    """
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler

    accelerator = accelerator or build_accelerator(args)
    args = args.resolved()
    resume_path = resolve_resume_checkpoint(args.output_dir, args.resume_from_checkpoint)
    train_slices, validation_slices = load_generation_splits(args)
    # Every checkpoint the run needs is loaded before the first step: VGGish here, the pipeline below.
    embedder = validation_embedder(args, accelerator.is_main_process)
    set_seed(args.seed)
    pipe, trained = prepare_denoising_model(args, accelerator.device)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    parameters = [p for p in trained.parameters() if p.requires_grad]
    ema = build_ema(trained, args, accelerator)
    loader, collator = slice_loader(pipe, train_slices, args)
    optimizer = torch.optim.AdamW(
        parameters, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), weight_decay=args.weight_decay,
        eps=args.adam_epsilon,
    )  # fmt: skip
    schedule = plan_schedule(args, optimizer, len(train_slices), accelerator.num_processes)
    trained, optimizer, loader, scheduler = accelerator.prepare(trained, optimizer, loader, schedule.scheduler)
    run = TrainingRun(accelerator, args, schedule, scheduler, resume_path, tracker_project="sosgen")
    unwrapped = accelerator.unwrap_model(trained)
    noise_generator = torch.Generator(device=accelerator.device)
    fad = None
    for epoch in run.epochs():
        trained.train()
        collator.epoch = epoch
        for batch_index, batch in run.batches(loader, epoch):
            # The noise and timesteps of a batch depend only on (seed, epoch, batch, process): resume reproduces them.
            noise_generator.manual_seed(
                hash((args.seed, epoch, batch_index, accelerator.process_index)) & ((1 << 62) - 1)
            )
            with accelerator.accumulate(trained):
                loss = denoising_loss(trained, pipe.vae, noise_scheduler, batch, noise_generator, args)
                accelerator.backward(loss)
                apply_gradients(accelerator, optimizer, scheduler, parameters, args.max_grad_norm)
                global_loss = accelerator.gather(loss.detach()[None]).mean()
            if ema is not None and accelerator.sync_gradients:
                ema.step(_ema_target(unwrapped, args.mode).parameters())
            if run.end_batch(global_loss) and validation_slices is not None and _validation_due(run, args):
                fad = validate(pipe, validation_slices, args, accelerator, run.global_step, embedder)
    if validation_slices is not None:
        fad = validate(pipe, validation_slices, args, accelerator, run.global_step, embedder)
    schedule_text = args.schedule_description(run.max_steps, accelerator.num_processes)
    clips = min(args.num_validation_samples, len(validation_slices)) if validation_slices is not None else None
    run.finish(partial(save_generation_output, pipe, unwrapped, args, fad, ema, schedule_text, clips))
    return GenerationResult(run.global_step, run.losses, fad, args.output_dir)


def _validation_due(run: TrainingRun, args: SoSgenTrainingArguments) -> bool:
    """Every `--validation_steps` updates; the last update's validation runs after the loop."""
    return run.global_step % args.validation_steps == 0 and not run.done


def validate(pipe, slices, args: SoSgenTrainingArguments, accelerator, global_step: int, embedder) -> float | None:
    """`run_validation` on the main process in evaluation mode, without touching the training's random state;
    the FAD returned on every process."""

    def generate_and_score() -> float | None:
        was = [m.training for m in (pipe.unet, pipe.text_encoder)]
        pipe.unet.eval()
        pipe.text_encoder.eval()
        with torch.random.fork_rng(devices=[]):
            fad = run_validation(pipe, slices, args, accelerator, global_step, embedder)
        pipe.unet.train(was[0])
        pipe.text_encoder.train(was[1])
        return fad

    return broadcast_from_main(accelerator, generate_and_score)


__all__ = [
    "GEN_MODES",
    "GenMode",
    "build_sosgen_parser",
    "load_generation_pipeline",
    "parse_sosgen_args",
    "train_sosgen",
]
