"""Benchmark: what each path costs at paper size, measured, and the compute the paper's schedules need.

Every path runs the package's own training or generation code on the full-size models, loaded by their Hub ids: the
real checkpoints online, or the random-weight stand-ins offline (`sound-of-story stand-ins --hub-cache DIR`, then
`HF_HUB_CACHE=DIR HF_HUB_OFFLINE=1`; their sizes, shapes and costs are the real ones). Paths (`--paths`):

- ``retrieval-av`` / ``retrieval-at``: one optimizer step of `train/retrieval.py` (SoS model: CLIP ViT-B/32 on 40
  frames of 224 px or 77 text tokens, AST on 1024 x 128, the multi-grained similarity, the contrastive loss, AdamW in
  X-CLIP's groups, gradient clipping) at ``--batch`` stories;
- ``retrieval-encode``: the evaluation's encoding of one story (audio and video features, no autograd);
- ``sosgen-text`` / ``sosgen-controlnet``: one optimizer step of `train/gen.py` at the paper's batch of 1 (the
  training's `denoising_loss` on a 1536-column window: VAE encode, text encoder, UNet, and for controlnet the frame
  conditioning and the ControlNet; AdamW; clipping). ``--gradient-checkpointing`` as the flag of the script;
- ``generate``: the SoSgen pipeline on a 15 s slice (64 x 192 latents, classifier-free guidance), timed per denoising
  step and for the rest (text, VAE decode, Griffin-Lim), reported per generated second at 50 steps.

Each path runs in a fresh process and prints, in one table: parameters (all / trained), batch, seconds per step,
peak resident memory during the timed steps (VmHWM after a reset), the saved-for-backward activation bytes (saved
tensor hooks: unique storages, parameters left out), FLOPs per step (`torch.utils.flop_counter.FlopCounterMode` on
the real tensors of the first step: matrix products, convolutions and attention, 2 per multiply-add, backward
included), the achieved GFLOP/s, and its fraction of a plain float32 matmul's GFLOP/s measured in the same process
just before and just after the timed steps (the mean of the two; on a shared machine both sides see the same load).
The timed step runs under `torch.profiler` (CPU operators only), whose top operators by self time and the share of
the step spent outside matrix products / convolutions / attention are printed with every path below ``--target``.

Then the compute the paper's schedules need, from the counted FLOPs: retrieval 100 epochs of 26,054 stories at
batch 128 (audio-video) / 256 (audio-text), the similarity's cost per pair counted separately (it grows with the
square of the batch), with and without gradient caching; SoSgen_text 406,000 and SoSgen_image and SoSgen_text+image
525,000 "steps" at batch 1 under both readings of a step (`--paper_schedule passes|updates`); in PFLOP and in GPU
hours on an A100 and an H100 at ``--mfu`` (default 0.38: Llama 3's lowest measured BF16 model-FLOPs utilisation on
H100s, Grattafiori et al. 2024, arXiv:2407.21783; see docs/training.md, "Paper size"). And the GPU memory of one
step: weights, gradients, AdamW's two moments (and EMA where used), plus the measured activations (and, for the
retrieval at the paper's batch, the activations per story times the batch, or per chunk with gradient caching).

A SoSgen training step holds 16 GB of weights, gradients and AdamW state (text mode: UNet and text encoder trained)
and, at batch 1 in float32, about 31 GB of activations saved for the backward pass. On a machine that cannot hold
that, ``--meta-paths sosgen-text,sosgen-controlnet`` loads the pipeline as training does, moves it to the meta device
and counts the step's FLOPs and activations there (forward and backward of the real code, no time, no optimizer).

Run:
    HF_HUB_CACHE=DIR HF_HUB_OFFLINE=1 python benchmarks/paper_size.py [--paths retrieval-av,sosgen-text,...]
        [--batch 2] [--steps 2] [--precision fp32|bf16] [--gradient-checkpointing] [--meta-paths sosgen-text,...]
        [--json OUT.json]
    python benchmarks/paper_size.py --budget-from OUT.json [--mfu 0.38]   # the budget again, from saved results

Measured figures, and how long each path took on a 2-core CPU: docs/training.md, "Paper size".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

PATHS = ("retrieval-av", "retrieval-at", "retrieval-encode", "sosgen-text", "sosgen-controlnet", "generate")
MATMUL_SIZE = 2048
TARGET_FRACTION = 0.40
# Peak dense BF16 tensor throughput (NVIDIA's datasheets list the sparse figure, twice these): A100 SXM4 80 GB and
# H100 SXM5 80 GB. TF32 is half of each.
GPU_PEAK_BF16_TFLOPS = {"A100 SXM 80GB": 312.0, "H100 SXM 80GB": 989.4}
GPU_MEMORY_GB = {"A100 SXM 80GB": 80, "H100 SXM 80GB": 80}
DEFAULT_MFU = 0.38
# The paper's schedules (sections 4.1.2 and 4.2.2) and dataset (27,354 stories, 1,300 of them the test split).
PAPER_TRAIN_STORIES = 26_054
PAPER_RETRIEVAL = {"retrieval-av": ("audio-video", 128), "retrieval-at": ("audio-text", 256)}
PAPER_EPOCHS = 100
PAPER_SOSGEN = {
    "SoSgen_text": ("sosgen-text", 406_000),
    "SoSgen_text+image": ("sosgen-controlnet", 525_000),
    "SoSgen_image": ("sosgen-controlnet", 525_000),
}
PAPER_ACCUMULATION = 16
GENERATION_SECONDS = 15.0
GENERATION_STEPS = 50  # the pipelines' default, and Table 3's Riffusion setting
MATRIX_OPS = ("mm", "addmm", "bmm", "baddbmm", "conv", "convolution", "linear", "matmul", "attention", "sdpa")


# --------------------------------------------------------------------------- measuring tools


def flop_counter():
    """`FlopCounterMode` that also counts the CPU's fused attention (`torch.nn.functional.scaled_dot_product_attention`
    on the CPU runs `_scaled_dot_product_flash_attention_for_cpu`, which torch's formulas leave out: AST's and the
    UNet's attention would count as 0), with torch's own formulas for the GPU kernels."""
    import torch
    from torch.utils import flop_counter as fc

    def forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_backward_flop_count(grad_out, query, key, value)

    aten = torch.ops.aten
    return fc.FlopCounterMode(
        display=False,
        custom_mapping={
            aten._scaled_dot_product_flash_attention_for_cpu: forward,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: backward,
        },
    )


def matmul_gflops(size: int = MATMUL_SIZE, repeats: int = 5) -> float:
    """A plain float32 `size` x `size` matmul's GFLOP/s in this process (median of `repeats` after one warm-up)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux: 5 > /proc/self/clear_refs); False where impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_gb() -> float | None:
    """VmHWM (peak resident memory since the last reset), GB; ru_maxrss where /proc is missing."""
    kib = _status_kib("VmHWM")
    if kib is None:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * 1024 / 1e9


def rss_gb() -> float | None:
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024 / 1e9


class SavedActivations:
    """Bytes of the tensors autograd saves for the backward pass while active (unique storages; the parameters, which
    are memory anyway, left out): the activations a training step holds at the start of its backward pass. Storages
    are told apart by their C++ object (`_cdata`), not their data pointer, so that meta tensors (no data, pointer 0)
    count too; the saved tensors keep their storages alive until the backward pass, so no address is reused."""

    def __init__(self, modules):
        self.parameter_storages = {p.untyped_storage()._cdata for module in modules for p in module.parameters()}
        self.storages: dict[int, int] = {}

    def _pack(self, tensor):
        storage = tensor.untyped_storage()
        if storage._cdata not in self.parameter_storages:
            self.storages[storage._cdata] = storage.nbytes()
        return tensor

    def __enter__(self):
        import torch

        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)

    @property
    def gb(self) -> float:
        return sum(self.storages.values()) / 1e9


def top_level_flops(counter) -> dict[str, float]:
    """FLOPs by top-level module (FlopCounterMode's module names without a dot), and the rest as 'other'. A module
    that runs inside another's forward without being its submodule (the image encoder inside the denoising model) is
    counted under both, so the parts may add up to more than the total."""
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    total = counts.pop("Global", 0)
    top = {name: value for name, value in counts.items() if "." not in name}
    top["other (functions outside modules)"] = max(0, total - sum(top.values()))
    return {name: float(value) for name, value in top.items() if value}


def profile_summary(profiler, top: int) -> dict[str, Any]:
    """The operators that took the most self CPU time in the profiled step, and the share spent outside matrix
    products, convolutions and attention (the operators whose FLOPs are counted)."""
    events = [e for e in profiler.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    ordered = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)

    def is_matrix(name: str) -> bool:
        bare = name.removeprefix("aten::").lower()
        return any(op in bare for op in MATRIX_OPS)

    matrix = sum(e.self_cpu_time_total for e in events if is_matrix(e.key))
    return {
        "top_ops": [
            {
                "op": e.key,
                "self_s": e.self_cpu_time_total / 1e6,
                "share": e.self_cpu_time_total / total,
                "calls": e.count,
            }
            for e in ordered[:top]
        ],  # fmt: skip
        "matrix_share": matrix / total,
        "other_share": 1 - matrix / total,
    }


@dataclasses.dataclass
class Workload:
    """One path, ready to run: `step()` does one unit of work (an optimizer step, a story, a generation)."""

    name: str
    description: str
    step: Callable[[], dict[str, Any]]
    modules: list  # every module the step uses (parameters counted once)
    trained: list  # the trained parameters
    batch: int
    unit: str = "step"
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def count_parameters(modules) -> int:
    seen, total = set(), 0
    for module in modules:
        for parameter in module.parameters():
            if id(parameter) not in seen:
                seen.add(id(parameter))
                total += parameter.numel()
    return total


def weights_bytes(modules) -> int:
    seen, total = set(), 0
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total


def autocast(precision: str):
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


# --------------------------------------------------------------------------- the paths


def _story_inputs(processor, pair: str, batch: int, seed: int) -> dict:
    """The processor's inputs for `batch` synthetic stories: 20 s of stereo noise at 44.1 kHz (a random 10.24 s training
    crop), 40 frames or a 77-token text."""
    import numpy as np
    import torch
    from PIL import Image

    rng = np.random.default_rng(seed)
    audio = [rng.standard_normal((2, 20 * 44_100)).astype(np.float32) * 0.1 for _ in range(batch)]
    inputs: dict[str, Any] = {"audio": audio, "sampling_rate": 44_100}
    if pair == "audio-video":
        inputs["frames"] = [
            [Image.fromarray(rng.integers(0, 256, (256, 320, 3), dtype=np.uint8)) for _ in range(40)]
            for _ in range(batch)
        ]
    else:
        words = "a long night train rain wind city crowd music quiet storm door steps voices sea".split()
        inputs["text"] = [" ".join(rng.choice(words, 120)) for _ in range(batch)]
    return dict(processor(**inputs, audio_crop="random", generator=torch.Generator().manual_seed(seed)))


def retrieval_workload(pair: str, batch: int, precision: str, clip: str, audio: str) -> Workload:
    """One `train/retrieval.py` optimizer step. The backward runs as the gradient-cached step splits it (the loss's
    gradient with respect to the features, then the encoders' backward from it), which is the same computation as one
    backward pass through the whole graph, so that the similarity's FLOPs are counted apart from the encoders'."""
    import torch

    from sound_of_story.modeling import SoSRetrievalModel, SoSRetrievalProcessor, contrastive_loss
    from sound_of_story.training.arguments import ENCODER_LR, NEW_LAYERS_LR, RETRIEVAL_WEIGHT_DECAY
    from sound_of_story.training.retrieval import (
        RetrievalEncoder,
        freeze_for_pair,
        global_contrastive_loss,
        optimizer_groups,
        tensors_to_features,
    )

    torch.manual_seed(0)
    model = SoSRetrievalModel.from_encoders(clip=clip, audio=audio)
    processor = SoSRetrievalProcessor.from_encoders(clip=clip, audio=audio)
    freeze_for_pair(model, pair, freeze_encoders=False)
    model.train()
    encoder = RetrievalEncoder(model, pair)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(optimizer_groups(model, NEW_LAYERS_LR, ENCODER_LR, RETRIEVAL_WEIGHT_DECAY))
    inputs = _story_inputs(processor, pair, batch, seed=0)
    phases: dict[str, Any] = {}

    def step() -> dict[str, Any]:
        with autocast(precision):
            out = encoder(**inputs)
        leaves = {k: v.detach().requires_grad_(v.is_floating_point()) for k, v in out.items()}
        phases.setdefault("features", {k: v.detach() for k, v in out.items()})
        with phases.get("loss", nullcontext()):
            with autocast(precision):
                loss = global_contrastive_loss(model, leaves, pair)
            loss.backward()
        names = [k for k, v in leaves.items() if v.grad is not None]
        torch.autograd.backward([out[k] for k in names], [leaves[k].grad for k in names])
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return {"loss": float(loss.detach())}

    def similarity_per_pair(chunk_size: int) -> float:
        """FLOPs of the similarity and loss (forward and backward) per (audio, target) pair when the batch is split in
        blocks of `chunk_size` (several blocks: each recomputed in the backward pass, as at the paper's batch)."""
        leaves = {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in phases["features"].items()}
        audio_features, other = tensors_to_features({k: v for k, v in leaves.items() if k != "scale"}, pair)
        with flop_counter() as counter, autocast(precision):
            loss = contrastive_loss(leaves["scale"] * model.similarity(audio_features, other, chunk_size=chunk_size))
            loss.backward()
        return counter.get_total_flops() / batch**2

    from sound_of_story.modeling.modeling_sos import default_chunk_size

    num_tokens = _audio_tokens(model)
    targets = 40 if pair == "audio-video" else inputs["input_ids"].shape[1]
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    paper_batch = PAPER_RETRIEVAL["retrieval-av" if pair == "audio-video" else "retrieval-at"][1]
    paper_chunk = model.config.similarity_chunk_size or default_chunk_size(num_tokens, targets, dtype)
    return Workload(
        name=f"retrieval-{'av' if pair == 'audio-video' else 'at'}",
        description=f"train/retrieval.py step, {pair}, SoS model (CLIP ViT-B/32 + AST), {precision}",
        step=step,
        modules=[model],
        trained=trained,
        batch=batch,
        extra={
            "phases": phases,
            "similarity_per_pair": similarity_per_pair,
            "paper_batch": paper_batch,
            "paper_similarity_blocks": math.ceil(paper_batch / paper_chunk) ** 2,
            "similarity_chunk_at_paper_batch": paper_chunk,
            "audio_tokens": num_tokens,
            "targets_per_story": targets,
        },
    )


def _audio_tokens(model) -> int:
    """AST tokens after the first (the similarity's audio sequence): 1213 for 1024 x 128, or 101 time tokens."""
    config = model.config.audio_config
    freq = (config.num_mel_bins - config.patch_size) // config.frequency_stride + 1
    time_ = (config.max_length - config.patch_size) // config.time_stride + 1
    return time_ if model.config.audio_token_pooling == "frequency" else freq * time_ + 1


def encode_workload(precision: str, clip: str, audio: str) -> Workload:
    """The evaluation's encoding of one story: audio features (the most energetic 10.24 s) and video features."""
    import torch

    from sound_of_story.modeling import SoSRetrievalModel, SoSRetrievalProcessor

    model = SoSRetrievalModel.from_encoders(clip=clip, audio=audio).eval()
    processor = SoSRetrievalProcessor.from_encoders(clip=clip, audio=audio)
    inputs = _story_inputs(processor, "audio-video", 1, seed=1)

    @torch.no_grad()
    def step() -> dict[str, Any]:
        with autocast(precision):
            model.get_audio_features(input_values=inputs["input_values"])
            model.get_video_features(pixel_values=inputs["pixel_values"], frame_mask=inputs["frame_mask"])
        return {}

    return Workload(
        "retrieval-encode", f"evaluation encoding of one story (audio + 40 frames), {precision}", step, [model], [], 1,
        unit="story",
    )  # fmt: skip


def _slice_row(seed: int, frames: bool) -> dict[str, Any]:
    """A synthetic 15 s slice row of the generation config: noise audio, a description, and 12 frames over it."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    row: dict[str, Any] = {
        "audio": {"array": (rng.standard_normal((2, 15 * 44_100)) * 0.1).astype(np.float32), "sampling_rate": 44_100},
        "text": "rain on a tin roof while a train passes in the distance at night",
        "start": 0.0,
    }
    if frames:
        row["frames"] = [Image.fromarray(rng.integers(0, 256, (256, 320, 3), dtype=np.uint8)) for _ in range(12)]
        row["frame_times"] = [1.25 * i for i in range(12)]
    return row


def sosgen_workload(
    mode: str, precision: str, gradient_checkpointing: bool, pipeline: str, image_encoder: str, on_meta: bool = False
):
    """One `train/gen.py` optimizer step at the paper's batch of 1 (`denoising_loss`, backward, clipping, AdamW).

    `on_meta`: the pipeline is loaded as training loads it, then moved to the meta device (shapes without data), and
    the step is its forward and backward only (no optimizer: AdamW's state is what does not fit a small machine, and
    its element-wise updates count no FLOPs here): the FLOPs and the activations' bytes are those of the real step,
    nothing is timed."""
    import torch
    from diffusers import DDPMScheduler

    from sound_of_story.training.arguments import SoSgenTrainingArguments
    from sound_of_story.training.sosgen import SliceCollator, denoising_loss, prepare_denoising_model

    args = SoSgenTrainingArguments(
        mode=mode, pretrained_model=pipeline, image_encoder=image_encoder, dataset="-", output_dir="-",
        validation_split="none", gradient_checkpointing=gradient_checkpointing,
    )  # fmt: skip
    torch.manual_seed(0)
    pipe, trained = prepare_denoising_model(args, "cpu")
    trained.train()
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    parameters = [p for p in trained.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=args.learning_rate, weight_decay=args.weight_decay)
    collator = SliceCollator(pipe.spectrogram_params, int(pipe.config.window_width), pipe.tokenizer, mode, seed=0)
    batch = collator([(0, _slice_row(0, frames=mode != "text"))])
    generator = torch.Generator().manual_seed(0)
    modules = [pipe.vae, pipe.text_encoder, pipe.unet] + (
        [pipe.controlnet, pipe.image_encoder] if mode != "text" else []
    )
    if on_meta:
        for module in modules:
            module.to("meta")
        # window_start stays on the CPU (the step reads it as Python ints), and the frames (the image processor
        # resizes them on the CPU before they move to the encoder's device).
        batch = {
            key: value.to("meta") if torch.is_tensor(value) and key != "window_start" else value
            for key, value in batch.items()
        }  # fmt: skip

        def step() -> dict[str, Any]:
            with autocast(precision):
                loss = denoising_loss(trained, pipe.vae, noise_scheduler, batch, generator, args)
            loss.backward()
            for parameter in parameters:
                parameter.grad = None
            return {"loss": None}

        unit = "step (meta: counted, not run)"
    else:

        def step() -> dict[str, Any]:
            with autocast(precision):
                loss = denoising_loss(trained, pipe.vae, noise_scheduler, batch, generator, args)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return {"loss": float(loss.detach())}

        unit = "step"
    latent = tuple(int(x) for x in batch["pixel_values"].shape[-2:])
    return Workload(
        f"sosgen-{mode}",
        f"train/gen.py step, --mode {mode}, window {latent[0]} x {latent[1]} px, batch 1, {precision}"
        + (", gradient checkpointing" if gradient_checkpointing else "")
        + (", on the meta device (forward + backward counted, not run)" if on_meta else ""),
        step, modules, parameters, 1, unit=unit,
        extra={"ema_parameters": sum(p.numel() for p in parameters) if mode == "text" else 0},
    )  # fmt: skip


def generate_workload(precision: str, pipeline: str, steps: int) -> Workload:
    """The SoSgen pipeline on a 15 s slice at `steps` denoising steps, each step timed (a callback)."""
    import torch

    from sound_of_story.pipelines import SoSgenPipeline

    pipe = SoSgenPipeline.from_pretrained(pipeline)
    pipe.set_progress_bar_config(disable=True)
    stamps: list[float] = []

    def on_step(pipeline, index, timestep, tensors):
        stamps.append(time.perf_counter())
        return tensors

    @torch.no_grad()
    def step() -> dict[str, Any]:
        stamps.clear()
        start = time.perf_counter()
        with autocast(precision):
            pipe(
                "rain on a tin roof while a train passes in the distance at night",
                duration_s=GENERATION_SECONDS, num_inference_steps=steps, callback_on_step_end=on_step,
                generator=torch.Generator().manual_seed(0),
            )  # fmt: skip
        end = time.perf_counter()
        per_step = [b - a for a, b in zip(stamps, stamps[1:])] or [stamps[0] - start]
        denoise = statistics.median(per_step)
        rest = (end - start) - denoise * len(stamps)
        return {
            "seconds_per_denoising_step": denoise,
            "seconds_outside_denoising": rest,
            "denoising_calls": len(stamps),
        }

    # The UNet evaluations at the default number of steps: PNDM (Stable Diffusion's and Riffusion's scheduler, with
    # skip_prk_steps) runs one more than num_inference_steps.
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(GENERATION_STEPS)

    return Workload(
        "generate", f"SoSgen pipeline, 15 s slice (64 x 192 latents, guidance 7), {steps} steps timed, {precision}",
        step, [pipe.vae, pipe.text_encoder, pipe.unet], [], 1, unit="generation",
        extra={"steps": steps, "denoising_calls_at_default": len(scheduler.timesteps)},
    )  # fmt: skip


# --------------------------------------------------------------------------- one path, in its own process


def run_path(name: str, options) -> dict[str, Any]:
    import torch

    if options.threads:
        torch.set_num_threads(options.threads)
    from sound_of_story.core import model_ids

    load_start = time.perf_counter()
    if name in ("retrieval-av", "retrieval-at"):
        pair = "audio-video" if name == "retrieval-av" else "audio-text"
        work = retrieval_workload(pair, options.batch, options.precision, model_ids.CLIP, model_ids.AST)
    elif name == "retrieval-encode":
        work = encode_workload(options.precision, model_ids.CLIP, model_ids.AST)
    elif name.startswith("sosgen-"):
        work = sosgen_workload(
            name.removeprefix("sosgen-"), options.precision, options.gradient_checkpointing, model_ids.RIFFUSION,
            model_ids.CLIP, on_meta=name in options.meta_paths,
        )  # fmt: skip
    else:
        work = generate_workload(options.precision, model_ids.RIFFUSION, options.generation_steps)
    load_s = time.perf_counter() - load_start
    result: dict[str, Any] = {
        "path": name, "description": work.description, "batch": work.batch, "unit": work.unit,
        "parameters": count_parameters(work.modules), "trained_parameters": sum(p.numel() for p in work.trained),
        "weights_gb": weights_bytes(work.modules) / 1e9, "load_s": load_s, "rss_loaded_gb": rss_gb(),
        "precision": options.precision, "threads": torch.get_num_threads(),
    }  # fmt: skip

    # First step: FLOPs and saved activations (and the warm-up).
    activations = SavedActivations(work.modules)
    if "phases" in work.extra:
        work.extra["phases"]["loss"] = flop_counter()
    with flop_counter() as counter, activations:
        start = time.perf_counter()
        first = work.step()
        first_s = time.perf_counter() - start
    result.update(
        flops=float(counter.get_total_flops()), flops_by_module=top_level_flops(counter),
        activations_gb=activations.gb, first_step_s=first_s, first_step=first,
    )  # fmt: skip
    if "phases" in work.extra:
        similarity = float(work.extra["phases"].pop("loss").get_total_flops())
        result["similarity_flops"] = similarity
        result["encoder_flops_per_story"] = (result["flops"] - similarity) / work.batch
        result["similarity_flops_per_pair"] = work.extra["similarity_per_pair"](1)
        for key in ("paper_batch", "paper_similarity_blocks", "similarity_chunk_at_paper_batch", "audio_tokens"):
            result[key] = work.extra[key]
    if work.name == "retrieval-encode":
        result["forward_flops_per_story"] = result["flops"]
    if "ema_parameters" in work.extra:
        result["ema_parameters"] = work.extra["ema_parameters"]

    if work.unit != "step" and work.unit.startswith("step"):  # counted on the meta device: nothing to time
        result.update(step_s=None, gflops_per_s=None, matmul_gflops=None, matmul_fraction=None, peak_rss_gb=None)
        return result

    # Timed steps, between two matmul references; the last one profiled.
    result["matmul_gflops_before"] = matmul_gflops()
    timed = max(1, options.steps - 1)
    peak_reset = reset_peak_rss()
    durations, outputs = [], []
    for index in range(timed):
        profiling = index == timed - 1 and options.steps > 1
        profiler = (
            torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) if profiling else nullcontext()
        )
        with profiler as prof:
            start = time.perf_counter()
            outputs.append(work.step() if options.steps > 1 else first)
            durations.append(time.perf_counter() - start if options.steps > 1 else first_s)
        if profiling:
            result["profile"] = profile_summary(prof, options.profile_top)
    result["peak_rss_gb"] = peak_rss_gb() if peak_reset else None
    result["matmul_gflops_after"] = matmul_gflops()
    result["matmul_gflops"] = (result["matmul_gflops_before"] + result["matmul_gflops_after"]) / 2
    result["timed_with_counter"] = options.steps <= 1
    result["step_s"] = statistics.median(durations)
    result["gflops_per_s"] = result["flops"] / result["step_s"] / 1e9
    result["matmul_fraction"] = result["gflops_per_s"] / result["matmul_gflops"]
    if work.name == "generate":
        last = outputs[-1]
        result.update(
            generation_steps=work.extra["steps"], denoising_calls=last["denoising_calls"],
            denoising_calls_at_50_steps=work.extra["denoising_calls_at_default"],
            seconds_per_denoising_step=last["seconds_per_denoising_step"],
            seconds_outside_denoising=last["seconds_outside_denoising"],
        )  # fmt: skip
        generation_at_default_steps(result)
    return result


def generation_at_default_steps(result: dict[str, Any]) -> None:
    """The generate path's figures per denoising call (one UNet evaluation of the guided batch) and per generated
    second at the default 50 steps (`denoising_calls_at_50_steps` UNet evaluations), from the measured run. At full
    size a 15 s slice is one 1536-column window, so each callback is one step (a smaller pipeline that splits the
    slice into several windows calls back once per window and step, and this extrapolation does not hold)."""
    calls, calls_at_default = result["denoising_calls"], result["denoising_calls_at_50_steps"]
    unet = result["flops_by_module"].get("UNet2DConditionModel", 0.0)
    result["flops_per_denoising_step"] = unet / calls
    result["flops_per_generated_second_at_50_steps"] = (
        result["flops"] + (calls_at_default - calls) * unet / calls
    ) / GENERATION_SECONDS
    at_default = calls_at_default * result["seconds_per_denoising_step"] + result["seconds_outside_denoising"]
    result["seconds_per_generated_second_at_50_steps"] = at_default / GENERATION_SECONDS
    result["seconds_per_generated_second_measured"] = result["step_s"] / GENERATION_SECONDS


# --------------------------------------------------------------------------- the paper's budget


def retrieval_step_flops(result: dict, batch: int, grad_cache: bool) -> float:
    """FLOPs of one step at `batch`: the encoders per story (and a forward more with gradient caching), and the
    similarity per pair with its blocks recomputed in the backward pass."""
    per_story = result["encoder_flops_per_story"]
    forward = per_story / 3  # forward + backward of trained encoders: 3 forwards (2 for the backward)
    encoder = batch * (per_story + (forward if grad_cache else 0))
    return encoder + batch**2 * result["similarity_flops_per_pair"]


def budget(results: dict[str, dict], mfu: float) -> dict[str, Any]:
    """PFLOP and GPU hours of the paper's schedules, and each step's GPU memory, from the measured results."""
    rows = []
    for name, (pair, batch) in PAPER_RETRIEVAL.items():
        if name not in results:
            continue
        steps = PAPER_EPOCHS * (PAPER_TRAIN_STORIES // batch)
        for grad_cache in (False, True):
            per_step = retrieval_step_flops(results[name], batch, grad_cache)
            rows.append({
                "schedule": f"retrieval {pair}, 100 epochs, batch {batch}" + (", gradient caching" if grad_cache else ""),
                "steps": steps, "examples_per_step": batch, "flops_per_step": per_step, "flops": steps * per_step,
            })  # fmt: skip
    for label, (path, paper_steps) in PAPER_SOSGEN.items():
        if path not in results:
            continue
        per_pass = results[path]["flops"]
        for reading, passes in (("passes", paper_steps), ("updates", paper_steps * PAPER_ACCUMULATION)):
            rows.append({
                "schedule": f"{label}, {paper_steps:,} steps read as {reading} ({passes:,} passes of batch 1)",
                "steps": passes, "examples_per_step": 1, "flops_per_step": per_pass, "flops": passes * per_pass,
            })  # fmt: skip
    for row in rows:
        row["pflop"] = row["flops"] / 1e15
        for gpu, peak in GPU_PEAK_BF16_TFLOPS.items():
            row[f"{gpu} hours"] = row["flops"] / (peak * 1e12 * mfu) / 3600
    return {"mfu": mfu, "rows": rows, "memory": memory_table(results)}


def memory_table(results: dict[str, dict]) -> list[dict]:
    """GPU memory of one step: weights (float32), gradients and AdamW's two moments of the trained parameters, EMA
    weights where the recipe uses them, and the activations saved for the backward pass (measured); for bf16 autocast a
    bfloat16 copy of the weights as well. At the paper's retrieval batch the activations are the measured ones per
    story times the batch, or per chunk of 16 with gradient caching."""
    rows = []
    for name, result in results.items():
        if not result.get("unit", "").startswith("step"):
            continue
        trained = result["trained_parameters"]
        static = result["weights_gb"] + trained * 12 / 1e9
        cast = result["parameters"] * 2 / 1e9 if result["precision"] == "bf16" else 0.0
        per_story = result["activations_gb"] / result["batch"]
        base = {"path": name, "precision": result["precision"], "static_gb": static + cast}
        if result["path"] in PAPER_RETRIEVAL:
            batch = result["paper_batch"]
            rows.append({**base, "batch": batch, "activations_gb": per_story * batch})
            rows.append({**base, "batch": f"{batch} (grad cache, chunks of 16)", "activations_gb": per_story * 16})
        else:
            ema = result.get("ema_parameters", 0) * 4 / 1e9
            rows.append({**base, "batch": 1, "activations_gb": result["activations_gb"]})
            if ema:
                rows.append(
                    {**base, "batch": "1, --use_ema", "activations_gb": result["activations_gb"], "ema_gb": ema}
                )
    for row in rows:
        row["total_gb"] = row["static_gb"] + row["activations_gb"] + row.get("ema_gb", 0.0)
    return rows


# --------------------------------------------------------------------------- printing


def print_results(results: dict[str, dict], target: float) -> None:
    print(
        "\n| path | parameters (trained) | batch | s / step | peak RSS GB | activations GB | GFLOP / step | GFLOP/s | matmul GFLOP/s | fraction |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")

    def shown(value, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for name, r in results.items():
        print(
            f"| {name} | {r['parameters'] / 1e6:,.1f}M ({r['trained_parameters'] / 1e6:,.1f}M) | {r['batch']} | "
            f"{shown(r['step_s'], '.1f')} | {shown(r['peak_rss_gb'], '.2f')} | {r['activations_gb']:.2f} | "
            f"{r['flops'] / 1e9:,.0f} | {shown(r['gflops_per_s'], '.1f')} | {shown(r['matmul_gflops'], '.1f')} | "
            f"{shown(r['matmul_fraction'], '.0%')} |"
        )
    for name, r in results.items():
        print(f"\n{name}: {r['description']}")
        parts = ", ".join(f"{k} {v / 1e9:,.0f}" for k, v in sorted(r["flops_by_module"].items(), key=lambda x: -x[1]))
        print(f"  GFLOP by module: {parts}")
        if "similarity_flops_per_pair" in r:
            print(
                f"  encoders {r['encoder_flops_per_story'] / 1e9:,.0f} GFLOP per story (forward + backward); similarity "
                f"and loss {r['similarity_flops_per_pair'] / 1e6:,.1f} MFLOP per pair with blocks recomputed "
                f"({r['audio_tokens']} audio tokens; at batch {r['paper_batch']}: {r['paper_similarity_blocks']} blocks)"
            )
        if r["path"] == "generate":
            print(
                f"  {r['seconds_per_denoising_step']:.1f} s per denoising step ({r['denoising_calls']} UNet evaluations "
                f"of the guided batch at {r['generation_steps']} steps), {r['seconds_outside_denoising']:.1f} s "
                f"outside (text, VAE decode, Griffin-Lim): {r['seconds_per_generated_second_measured']:.1f} s per generated "
                f"second at {r['generation_steps']} steps, {r['seconds_per_generated_second_at_50_steps']:.1f} at 50 steps"
            )
        if "profile" in r and r["matmul_fraction"] is not None and r["matmul_fraction"] < target:
            profile = r["profile"]
            print(
                f"  below {target:.0%}: {profile['other_share']:.0%} of the step's CPU time is outside matrix products, "
                "convolutions and attention; top operators by self time:"
            )
            for op in profile["top_ops"]:
                print(f"    {op['op']:<48} {op['self_s']:8.2f} s  {op['share']:5.1%}  ({op['calls']} calls)")


def print_budget(plan: dict[str, Any]) -> None:
    gpus = list(GPU_PEAK_BF16_TFLOPS)
    print(f"\nThe paper's schedules (FLOPs counted here; GPU hours at {plan['mfu']:.0%} of the dense BF16 peak):")
    print("| schedule | steps | TFLOP / step | PFLOP | " + " | ".join(f"{g} hours" for g in gpus) + " |")
    print("|---|---|---|---|" + "---|" * len(gpus))
    for row in plan["rows"]:
        hours = " | ".join(f"{row[f'{g} hours']:,.1f}" for g in gpus)
        print(
            f"| {row['schedule']} | {row['steps']:,} | {row['flops_per_step'] / 1e12:,.2f} | {row['pflop']:,.0f} | {hours} |"
        )
    print(
        "\nGPU memory of one step (weights + gradients + AdamW + activations saved for backward; + EMA; CUDA context and "
        "allocator slack not included):"
    )
    print("| path | precision | batch | static GB | activations GB | total GB |")
    print("|---|---|---|---|---|---|")
    for row in plan["memory"]:
        static = row["static_gb"] + row.get("ema_gb", 0.0)
        print(
            f"| {row['path']} | {row['precision']} | {row['batch']} | {static:.1f} | {row['activations_gb']:.1f} | "
            f"{row['total_gb']:.1f} |"
        )


def machine_state() -> dict[str, Any]:
    import torch

    state = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": platform.platform(), "processor": platform.processor(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }  # fmt: skip
    try:
        state["load_average"] = os.getloadavg()
    except OSError:
        pass
    return state


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of {', '.join(PATHS)}")
    parser.add_argument("--batch", type=int, default=2, help="stories per retrieval step (contrastive: at least 2)")
    parser.add_argument("--steps", type=int, default=2, help="steps per path: the first counts, the rest are timed")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="SoSgen paths, as train/gen.py's flag")
    parser.add_argument(
        "--meta-paths", default="",
        help="comma-separated SoSgen paths to count on the meta device instead of running them: FLOPs and activation "
        "bytes of the real step, no time (for a machine whose memory cannot hold the model, gradients and AdamW)",
    )  # fmt: skip
    parser.add_argument("--generation-steps", type=int, default=2, help="denoising steps timed in the generate path")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--profile-top", type=int, default=12)
    parser.add_argument("--target", type=float, default=TARGET_FRACTION, help="fraction of matmul to reach")
    parser.add_argument("--mfu", type=float, default=DEFAULT_MFU, help="GPU utilisation of the budget (of BF16 peak)")
    parser.add_argument("--json", help="write every result, the machine state and the budget here")
    parser.add_argument("--budget-from", help="print the budget of a saved --json instead of measuring")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    options.meta_paths = [n.strip() for n in options.meta_paths.split(",") if n.strip()]
    if any(not n.startswith("sosgen-") or n not in PATHS for n in options.meta_paths):
        parser.error(f"--meta-paths: SoSgen paths only (sosgen-text, sosgen-controlnet), not {options.meta_paths}")
    if options.meta_paths and options.precision != "fp32":
        # CPU autocast leaves meta tensors alone: a bf16 count would be the fp32 one under another name.
        parser.error("--meta-paths counts in fp32 only (autocast does not apply to the meta device)")

    if options.child:
        result = run_path(options.child, options)
        Path(options.child_out).write_text(json.dumps(result, default=float))
        return 0
    if options.budget_from:
        saved = json.loads(Path(options.budget_from).read_text())
        print_results(saved["results"], options.target)
        print_budget(budget(saved["results"], options.mfu))
        return 0

    names = [n.strip() for n in options.paths.split(",") if n.strip()]
    unknown = [n for n in names if n not in PATHS]
    if unknown or options.batch < 2 or options.steps < 1:
        parser.error(f"--paths: unknown {unknown}; --batch >= 2; --steps >= 1")
    state = machine_state()
    print(
        f"{state['date']}: {state['machine']}, {state['cpu_count']} CPUs, torch {state['torch']}, load {state.get('load_average')}"
    )
    results: dict[str, dict] = {}
    failures: dict[str, str] = {}
    forwarded = [
        "--batch", str(options.batch), "--steps", str(options.steps), "--precision", options.precision,
        "--generation-steps", str(options.generation_steps), "--threads", str(options.threads),
        "--profile-top", str(options.profile_top), "--meta-paths", ",".join(options.meta_paths),
    ] + (["--gradient-checkpointing"] if options.gradient_checkpointing else [])  # fmt: skip
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            began = time.perf_counter()
            child = subprocess.run(
                [sys.executable, __file__, "--child", name, "--child-out", str(out), *forwarded], check=False
            )
            if child.returncode != 0 or not out.is_file():
                failures[name] = f"exit code {child.returncode}"
                print(f"{name}: failed ({failures[name]})")
                continue
            results[name] = json.loads(out.read_text())
            results[name]["wall_s"] = time.perf_counter() - began
            if results[name]["step_s"] is None:
                print(f"{name}: {results[name]['flops'] / 1e12:,.2f} TFLOP counted on the meta device", flush=True)
            else:
                print(
                    f"{name}: {results[name]['step_s']:.1f} s per {results[name]['unit']}, "
                    f"{results[name]['matmul_fraction']:.0%} of matmul (load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    print_results(results, options.target)
    plan = budget(results, options.mfu)
    print_budget(plan)
    if options.json:
        state["load_average_end"] = os.getloadavg()
        payload = {
            "machine": state,
            "options": vars(options),
            "results": results,
            "failures": failures,
            "budget": plan,
        }
        Path(options.json).write_text(json.dumps(payload, indent=1, default=float))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
