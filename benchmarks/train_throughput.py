"""Benchmark: training throughput of train/retrieval.py and train/gen.py at tiny size, as ratios.

Measures, with the training code itself (`sound_of_story.training`), in one run so every figure has its baseline
measured on the same (possibly shared) machine:

1. retrieval, audio-video, SoS model: optimizer steps per second end to end (CLIP on 40 frames, AST on the
   1024 x 128 fbank, temporal encoder, similarity, backward) against steps with `--freeze_encoders
   --feature_cache` (only the temporal encoder, the audio projection and the similarity run). Printed as samples
   per second and their ratio.
2. retrieval data preparation: stories per second through the processor (10 s of 44.1 kHz stereo audio resampled,
   fbank, 40 frames) — the work the feature cache also removes from every epoch.
3. gen.py, text mode: optimizer steps per second (VAE encode, text encoder, UNet, backward) at batch 1.
4. two-process speed-up: the same global batch of retrieval steps in 2 processes (gloo, gathered loss) against 1
   process, one thread each (global samples per second, ratio). On a 2-core machine shared with other work it is at most
   about 2 and often below 1.

Estimating full size (not measured here: no GPU and no real checkpoints): the step time scales with the
multiply-adds of the forward and backward passes. The script counts them with `torch.utils.flop_counter` for the
tiny model and for the full-size encoders built on the meta device (CLIP ViT-B/32 on 40 x 224 px frames, AST on
1024 x 128, 1213 tokens), and prints full-size step time ~ tiny step time x FLOP ratio, an upper bound on a CPU
(large matrix products run nearer peak than tiny ones).

Run: python benchmarks/train_throughput.py [--steps N] [--batch B] [--threads T] [--no-launch]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sound_of_story.modeling import SoSRetrievalModel
from sound_of_story.modeling.modeling_sos import clip_frame_embeddings
from sound_of_story.modeling.tiny_random import tiny_random_inputs, tiny_retrieval_config, tiny_retrieval_processor
from sound_of_story.training.retrieval import RetrievalEncoder, freeze_for_pair, global_contrastive_loss

VIDEO_KEYS = ("input_values", "pixel_values", "frame_mask")
NUM_FRAMES = 40


def _tiny_model(freeze: bool) -> SoSRetrievalModel:
    torch.manual_seed(0)
    model = SoSRetrievalModel(tiny_retrieval_config(audio_token_pooling="frequency"))
    freeze_for_pair(model, "audio-video", freeze_encoders=freeze)
    return model


def _time_steps(encoder: RetrievalEncoder, model, batch: dict, steps: int) -> float:
    """Seconds per optimizer step (best of two rounds after one warm-up step)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        loss = global_contrastive_loss(model, encoder(**batch), "audio-video")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def retrieval_end_to_end_vs_cached(batch_size: int, steps: int) -> dict:
    inputs = tiny_random_inputs(batch=batch_size, frames=NUM_FRAMES, seed=0)
    batch = {k: inputs[k] for k in VIDEO_KEYS}
    model = _tiny_model(freeze=False)
    full = _time_steps(RetrievalEncoder(model, "audio-video"), model, batch, steps)
    frozen = _tiny_model(freeze=True)
    with torch.no_grad():
        first, tokens = frozen.audio_encoder_states(batch["input_values"].unsqueeze(1))
        frames, mask = clip_frame_embeddings(frozen.clip, batch["pixel_values"], batch["frame_mask"])
    cached_batch = {"audio_first_token": first, "audio_tokens": tokens, "clip_frames": frames, "frame_mask": mask}
    cached = _time_steps(RetrievalEncoder(frozen, "audio-video", cached=True), frozen, cached_batch, steps)
    return {
        "end_to_end_samples_per_s": batch_size / full,
        "cached_samples_per_s": batch_size / cached,
        "speedup": full / cached,
        "end_to_end_step_s": full,
    }


def processor_stories_per_second(count: int = 4) -> float:
    processor = tiny_retrieval_processor()
    rng = np.random.default_rng(0)
    audio = [
        {"array": rng.standard_normal((2, 441_000)).astype(np.float32) * 0.1, "sampling_rate": 44_100}
        for _ in range(count)
    ]
    frames = [[rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(12)] for _ in range(count)]
    start = time.perf_counter()
    processor(frames=frames, audio=audio, audio_crop="random", generator=torch.Generator().manual_seed(0))
    return count / (time.perf_counter() - start)


def gen_steps_per_second(steps: int) -> float:
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    from sound_of_story.pipelines.tiny_random import tiny_sosgen

    pipe = tiny_sosgen()
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    pipe.vae.requires_grad_(False)
    params = [*pipe.unet.parameters(), *pipe.text_encoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-6)
    images = torch.rand(1, 3, pipe.spectrogram_params.num_frequencies, int(pipe.config.window_width)) * 2 - 1
    ids = pipe.tokenizer(
        ["rain on a tin roof"], padding="max_length", max_length=pipe.tokenizer.model_max_length, return_tensors="pt"
    ).input_ids

    def step():
        with torch.no_grad():
            latents = pipe.vae.encode(images).latent_dist.sample() * pipe.vae.config.scaling_factor
        noise = torch.randn_like(latents)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (1,))
        pred = pipe.unet(
            noise_scheduler.add_noise(latents, noise, t), t, encoder_hidden_states=pipe.text_encoder(ids)[0]
        ).sample
        loss = F.mse_loss(pred, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def _launch_worker(num_processes: int, batch_size: int, steps: int) -> float:
    """Global samples per second of retrieval steps with `num_processes` processes (global batch `batch_size`)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        worker = [__file__, "--worker", "--batch", str(batch_size), "--steps", str(steps), "--result", str(out)]
        if num_processes == 1:
            cmd = [sys.executable, *worker]
        else:
            # accelerate 1.15 starts one process for --cpu without mpirun: torchrun (--multi_gpu) kept on the CPU instead.
            cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes), "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0", *worker]  # fmt: skip
        # One thread per process in both runs (torchrun's default), so the ratio measures processes, not threads.
        env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"{num_processes}-process worker failed:\n{done.stderr[-3000:]}")
        return json.loads(out.read_text())["samples_per_s"]


def _worker(batch_size: int, steps: int, result: str) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator()
    per_process = batch_size // accelerator.num_processes
    inputs = tiny_random_inputs(batch=batch_size, frames=NUM_FRAMES, seed=0)
    rows = slice(accelerator.process_index * per_process, (accelerator.process_index + 1) * per_process)
    batch = {k: inputs[k][rows] for k in VIDEO_KEYS}
    model = _tiny_model(freeze=False)
    encoder = accelerator.prepare(RetrievalEncoder(model, "audio-video"))
    optimizer = accelerator.prepare(torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4))

    def step():
        loss = global_contrastive_loss(model, encoder(**batch), "audio-video")
        optimizer.zero_grad()
        accelerator.backward(loss)
        optimizer.step()

    step()
    accelerator.wait_for_everyone()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        Path(result).write_text(json.dumps({"samples_per_s": batch_size * steps / (time.perf_counter() - start)}))


def flop_ratio(batch_size: int) -> float | None:
    """Forward+backward multiply-adds of the full-size model over the tiny one (one audio-video step), counted on
    the meta device for the full size. None when a kernel has no meta implementation."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import ASTConfig, CLIPConfig

    from sound_of_story.modeling import SoSRetrievalConfig

    def count(model, batch) -> int:
        encoder = RetrievalEncoder(model, "audio-video")
        with FlopCounterMode(display=False) as counter:
            global_contrastive_loss(model, encoder(**batch), "audio-video").backward()
        return counter.get_total_flops()

    tiny_inputs = tiny_random_inputs(batch=batch_size, frames=NUM_FRAMES, seed=0)
    tiny = count(_tiny_model(freeze=False), {k: tiny_inputs[k] for k in VIDEO_KEYS})
    try:
        with torch.device("meta"):
            config = SoSRetrievalConfig(
                clip_config=CLIPConfig().to_dict(), audio_config=ASTConfig().to_dict(), max_frames=NUM_FRAMES
            )
            full_model = SoSRetrievalModel(config)
            freeze_for_pair(full_model, "audio-video", freeze_encoders=False)
            batch = {
                "input_values": torch.randn(batch_size, 1024, 128),
                "pixel_values": torch.randn(batch_size, NUM_FRAMES, 3, 224, 224),
                "frame_mask": torch.ones(batch_size, NUM_FRAMES, dtype=torch.long),
            }
            full = count(full_model, batch)
    except (NotImplementedError, RuntimeError) as error:
        print(f"  (full-size FLOP count unavailable on the meta device: {type(error).__name__}: {str(error)[:120]})")
        return None
    return full / tiny


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--batch", type=int, default=8, help="global retrieval batch (stories)")
    parser.add_argument("--no-launch", action="store_true", help="skip the two-process measurement")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads in this process (1: as each launched process)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.batch, args.steps, args.result)
        return
    torch.set_num_threads(args.threads)
    print(
        f"train_throughput: {platform.node()} {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    r = retrieval_end_to_end_vs_cached(args.batch, args.steps)
    print(
        f"retrieval (tiny, batch {args.batch}, 40 frames): end to end {r['end_to_end_samples_per_s']:.2f} samples/s, "
        f"cached frozen features {r['cached_samples_per_s']:.2f} samples/s: x{r['speedup']:.1f}"
    )
    print(
        f"retrieval data preparation (processor, 10 s 44.1 kHz stereo + 12 frames per story): {processor_stories_per_second():.2f} stories/s"
    )
    print(
        f"gen.py text mode (tiny pipeline, batch 1, one window_width window): {gen_steps_per_second(args.steps):.2f} steps/s"
    )
    if not args.no_launch:
        one = _launch_worker(1, args.batch, args.steps)
        two = _launch_worker(2, args.batch, args.steps)
        print(
            f"two processes (global batch {args.batch}): {two:.2f} vs {one:.2f} samples/s with one: speed-up x{two / one:.2f}"
        )
    ratio = flop_ratio(2)
    if ratio is not None:
        print(
            f"full-size estimate: one step costs ~{ratio:.0f}x the tiny model's multiply-adds -> "
            f"~{r['end_to_end_step_s'] * ratio * (128 / args.batch):.0f} s per batch-128 step on this CPU (upper bound; method in the docstring)"
        )


if __name__ == "__main__":
    main()
