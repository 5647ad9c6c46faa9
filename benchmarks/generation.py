"""Generation benchmark: pipeline overhead, image -> audio speed and quality, cost per generated second.

Run: ``python benchmarks/generation.py`` (about 25 minutes on 2 busy CPU cores, most of it Riffusion's own inverse in
(b); ``--parts bd --rounds 1`` for the inversion and forward figures only, about 15 minutes).
Every figure is measured in this run; ratios compare against a baseline measured in the same run.

(a) SoSgenPipeline against diffusers' StableDiffusionPipeline with the same small components,
    scheduler and steps (``output_type="latent"``, so both run exactly the denoising loop):
    median latency ratio over interleaved runs. Target: at most 1.05.
(b) 15 s Riffusion spectrogram images (1536 columns, Riffusion's parameters) -> audio, on gradio's saxophone
    recording (``media_assets/audio/sax.wav``, a real recording shipped with the installed gradio) and synthetic
    clips: the batched converter (``SpectrogramConverter.images_to_audio``, converter construction included) with
    every Griffin-Lim method (``exact``: equal to torchaudio's; ``fast``; ``refined``: the pipelines' default)
    against a straightforward per-clip implementation of Riffusion's inverse (numpy image steps,
    ``torchaudio.transforms.InverseMelScale`` least squares and ``GriffinLim``, 32 iterations):
    time ratios (rounds in A B C D, D C B A order) and spectral convergence of each against the source audio.
    Target: at least 2x faster than Riffusion's steps at equal or lower SC_mel on every clip.
(c) Seconds of compute per second of generated audio: measured end to end with tiny random
    components; estimated at Stable Diffusion 1.5 size (see ``estimate_sd15``) as
    FLOPs (counted with ``torch.utils.flop_counter`` on the meta device) / this machine's measured
    FLOP rate on the real SD 1.5 UNet, plus the Griffin-Lim time (pipelines' default method) measured in (b).
(d) Audio -> image of 15 s build slices (48 kHz stereo, one per call as the dataset builder makes them): slices
    per second of the converter, of the plain forward it must equal (torch FFT, dense mel product) and of Riffusion's
    (torchaudio MelSpectrogram), and how many pixels differ from each.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import string
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torchaudio
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from sound_of_story.audio import resample
from sound_of_story.audio.spectrogram import DEFAULT_GRIFFIN_LIM_METHOD
from sound_of_story.pipelines import (
    GRIFFIN_LIM_METHODS,
    SoSgenPipeline,
    SpectrogramConverter,
    SpectrogramParams,
    images_to_pil,
    load_audio,
    peak_normalize,
)

# Spectrogram parameters of the small pipelines: 8 kHz, 100 columns per second, 64 mel bins.
SMALL_SPECTROGRAM = SpectrogramParams(
    sample_rate=8000,
    step_size_ms=10,
    window_duration_ms=50,
    padded_duration_ms=100,
    num_frequencies=64,
    max_frequency=3500,
)


# Spectral convergences this close count as equal in (b)'s target.
SC_EQUAL_RTOL = 1e-4


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def small_components(channels: int, seed: int = 0) -> dict:
    """Random SD-shaped components: UNet (channels, 2 * channels), 2-block VAE, 2-layer CLIP text encoder."""
    torch.manual_seed(seed)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in string.ascii_lowercase + " ":
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    groups = min(8, channels)
    return dict(
        unet=UNet2DConditionModel(
            block_out_channels=(channels, 2 * channels), layers_per_block=1, sample_size=32, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, norm_num_groups=groups, attention_head_dim=4,
        ).eval(),
        vae=AutoencoderKL(
            block_out_channels=[channels, 2 * channels], down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
            latent_channels=4, norm_num_groups=groups,
        ).eval(),
        text_encoder=CLIPTextModel(
            CLIPTextConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2, vocab_size=128, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)
        ).eval(),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77),
        scheduler=DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1),
    )  # fmt: skip


def bench_pipeline_overhead(repeats: int) -> None:
    """Wall time is at the mercy of other processes on a shared machine, so this part runs on one thread and
    compares CPU time (time.process_time) as well."""
    print(
        "(a) SoSgenPipeline vs StableDiffusionPipeline, same components, DDIM 10 steps, CFG, 64 x 128 px, output_type='latent', 1 thread"
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    components = small_components(32)
    sosgen = SoSgenPipeline(**components, spectrogram_params=SMALL_SPECTROGRAM)
    reference = StableDiffusionPipeline(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    for pipe in (sosgen, reference):
        pipe.set_progress_bar_config(disable=True)
    common = dict(prompt="rain on a roof", num_inference_steps=10, guidance_scale=7.0, output_type="latent")

    def measure(run):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        return time.perf_counter() - wall, time.process_time() - cpu, result

    times = {"ours": [], "theirs": []}
    for k in range(repeats + 1):  # the first round warms up and is not counted; the order alternates
        runs = [("ours", lambda k=k: sosgen(width=128, generator=torch.Generator().manual_seed(k), **common).spectrograms),
                ("theirs", lambda k=k: reference(height=64, width=128, generator=torch.Generator().manual_seed(k), **common).images)]  # fmt: skip
        results = {name: measure(run) for name, run in (runs if k % 2 else runs[::-1])}
        assert torch.equal(results["ours"][2], results["theirs"][2])
        if k:
            for name in times:
                times[name].append(results[name][:2])
    torch.set_num_threads(threads)
    for index, clock in ((0, "wall"), (1, "CPU")):
        ours, theirs = [t[index] for t in times["ours"]], [t[index] for t in times["theirs"]]
        ratio = statistics.median(o / t for o, t in zip(ours, theirs))
        print(
            f"    {clock:>4} time: SD median {statistics.median(theirs):.3f} s, SoSgen median {statistics.median(ours):.3f} s; "
            f"ratio SoSgen / SD: median of {repeats} interleaved pairs {ratio:.3f}, total {sum(ours) / sum(theirs):.3f}"
        )
    print("    (target <= 1.05; the latents are identical in every pair)")


def synthetic_clip(seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    """Movie-like test audio: a chirp, a gated tone, a decaying pulse train and noise (float32, mono)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0, f1 = rng.uniform(100, 400), rng.uniform(2000, 6000)
    audio = 0.3 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) / (2 * seconds) * t**2))
    audio += 0.2 * np.sin(2 * np.pi * rng.uniform(300, 900) * t) * ((t % 3) < 1)
    audio += 0.3 * np.exp(-30 * (t % 0.5)) * np.sin(2 * np.pi * 80 * t)
    audio += 0.03 * rng.standard_normal(t.size)
    return (audio / np.abs(audio).max() * 0.8).astype(np.float32)


def riffusion_per_clip(image: Image.Image, params: SpectrogramParams, inverse_mel, griffin_lim) -> np.ndarray:
    """Riffusion's image -> audio for one clip (spectrogram_image_converter + spectrogram_converter), torchaudio >= 2.1."""
    data = np.array(image).astype(np.float32)
    data = data[::-1, :, 0]  # flip back, mono = R
    data = 255 - data
    data = data / 255
    data = np.power(data, 1 / params.power_for_image)
    data = data * 30e6  # Riffusion's default max_value
    amplitudes = torch.from_numpy(np.ascontiguousarray(data))[None]
    audio = griffin_lim(inverse_mel(amplitudes))[0].numpy()
    return audio / np.abs(audio).max()


def spectral_convergence(reference: np.ndarray, estimate: np.ndarray, mel) -> float:
    n = min(reference.shape[-1], estimate.shape[-1])
    s, s_hat = (
        mel(torch.from_numpy(reference[..., :n])).double(),
        mel(torch.from_numpy(np.ascontiguousarray(estimate[..., :n]))).double(),
    )
    gain = (s * s_hat).sum() / (s_hat * s_hat).sum()
    return float((s - gain * s_hat).norm() / s.norm())


def real_recording(seconds: float, sample_rate: int) -> np.ndarray | None:
    """The first ``seconds`` of a real recording shipped with gradio (a 16 s saxophone solo), or None if absent."""
    spec = importlib.util.find_spec("gradio")  # found, not imported (slow)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "media_assets" / "audio" / "sax.wav"
    if not path.is_file():
        return None
    audio, rate = load_audio(path)
    audio = resample(torch.from_numpy(audio).mean(dim=0), rate, sample_rate, method="torchaudio_hann").numpy()
    num_samples = int(seconds * sample_rate)
    return audio[:num_samples] if audio.shape[-1] >= num_samples else None


def bench_image_to_audio(num_clips: int, rounds: int) -> float:
    params = SpectrogramParams()
    width = 1536
    seconds = params.num_samples_for_width(width) / params.sample_rate
    recording = real_recording(seconds, params.sample_rate)
    sources = ([] if recording is None else [recording.astype(np.float32)])[:num_clips]
    sources += [synthetic_clip(seconds, params.sample_rate, seed) for seed in range(num_clips - len(sources))]
    kinds = ["a saxophone recording (gradio's sax.wav)"] * (recording is not None) + ["synthetic"] * num_clips
    print(
        f"(b) image -> audio, {num_clips} clip(s) of {seconds:.2f} s ({width} columns; {', '.join(kinds[:num_clips])}), "
        f"Riffusion parameters, 32 Griffin-Lim iterations"
    )
    forward = SpectrogramConverter(params)
    images, max_values = forward.audio_to_images(torch.from_numpy(np.stack(sources))[:, None])
    pil_images = images_to_pil(images, params, max_values)
    mel = riffusion_mel(params)

    inverse_mel = torchaudio.transforms.InverseMelScale(
        n_stft=params.n_fft // 2 + 1, n_mels=params.num_frequencies, sample_rate=params.sample_rate,
        f_min=params.min_frequency, f_max=params.max_frequency, norm=None, mel_scale="htk",
    )  # fmt: skip
    griffin_lim = torchaudio.transforms.GriffinLim(
        n_fft=params.n_fft, n_iter=params.num_griffin_lim_iters, win_length=params.win_length, hop_length=params.hop_length,
        power=1.0, momentum=0.99, rand_init=True,
    )  # fmt: skip

    def baseline():
        torch.manual_seed(0)
        return [riffusion_per_clip(image, params, inverse_mel, griffin_lim) for image in pil_images]

    def ours(method):
        def run():
            converter = SpectrogramConverter(params)  # includes factoring the mel inverse
            audio = converter.images_to_audio(images, generator=torch.Generator().manual_seed(0), method=method)
            return peak_normalize(audio).numpy()[:, 0]

        return run

    # Rounds in A B C D, D C B A order, wall and CPU time, so that load from other processes hits all alike.
    runs = {"baseline": baseline, **{method: ours(method) for method in GRIFFIN_LIM_METHODS}}
    clocks = {name: [0.0, 0.0] for name in runs}
    outputs = {}
    for round_index in range(rounds):
        for name in list(runs) if round_index % 2 == 0 else list(runs)[::-1]:
            wall, cpu = time.perf_counter(), time.process_time()
            outputs[name] = runs[name]()
            clocks[name][0] += (time.perf_counter() - wall) / rounds
            clocks[name][1] += (time.process_time() - cpu) / rounds
    labels = {
        "baseline": "per-clip Riffusion steps (torchaudio lstsq + GriffinLim)",
        **{method: f"batched SpectrogramConverter, method='{method}'" for method in GRIFFIN_LIM_METHODS},
    }
    sc = {name: [spectral_convergence(src, out, mel) for src, out in zip(sources, outputs[name])] for name in runs}
    for name, label in labels.items():
        wall, cpu = clocks[name]
        per_clip = " ".join(f"{value:.4f}" for value in sc[name])
        print(
            f"    {label:<57} wall {wall:6.1f} s ({wall / num_clips:.1f} s per clip), CPU {cpu:6.1f} s, "
            f"SC_mel mean {np.mean(sc[name]):.4f} (per clip {per_clip})"
        )
    for name in GRIFFIN_LIM_METHODS:
        speed_up = clocks["baseline"][0] / clocks[name][0]
        # "equal": to float precision (the exact method gives Riffusion's own output for a seed, up to rounding)
        lower = all(ours <= theirs * (1 + SC_EQUAL_RTOL) for ours, theirs in zip(sc[name], sc["baseline"]))
        print(
            f"    {name:>7} / per-clip Riffusion (mean of {rounds} round(s)): speed-up {speed_up:.2f}x wall, "
            f"{clocks['baseline'][1] / clocks[name][1]:.2f}x CPU; SC_mel {np.mean(sc[name]):.4f} vs {np.mean(sc['baseline']):.4f}; "
            f"target (>= 2x wall, SC_mel <= Riffusion's on every clip, rtol {SC_EQUAL_RTOL:g}): "
            f"{'met' if speed_up >= 2 and lower else 'NOT met'}"
        )
    return clocks[DEFAULT_GRIFFIN_LIM_METHOD][0] / num_clips


def bench_forward(num_slices: int, rounds: int) -> None:
    """Audio -> image of 15 s build slices (the dataset builder's ``spectrogram_png`` without the PNG encoding)."""
    params = SpectrogramParams()
    width = 1536
    print(
        f"(d) audio -> image, {num_slices} slice(s) of 15 s at 48 kHz stereo -> {width} columns, one slice per call as the build"
    )
    slices = [
        np.stack([synthetic_clip(15.0, 48000, seed), synthetic_clip(15.0, 48000, seed + 100)])
        for seed in range(num_slices)
    ]
    converter, mel_transform = SpectrogramConverter(params), riffusion_mel(params)

    def plain_forward(audio: torch.Tensor) -> torch.Tensor:
        """The converter's forward done the plain way: torch's (MKL) FFT, complex abs(), the dense filterbank product.

        The converter's scipy FFT and banded mel product must give the same images (up to a grey level), faster."""
        hop, win = params.hop_length, params.win_length
        padded = torch.nn.functional.pad(audio[:, None], (converter.lead, win - converter.lead), mode="reflect")[:, 0]
        frames = padded.unfold(-1, win, hop) * converter.window
        magnitude = torch.fft.rfft(frames, n=params.n_fft)[..., : converter.num_bins].abs()
        return converter.mel_to_images((magnitude @ converter.mel_filterbank).transpose(1, 2)[:, None])[0]

    def as_mono(audio: np.ndarray) -> torch.Tensor:
        # what audio_to_image does before the converter: mono mix, resample, pad to the width
        mono = torch.from_numpy(audio).mean(dim=0, keepdim=True)
        mono = resample(mono, 48000, params.sample_rate, method="torchaudio_hann")
        target = params.num_samples_for_width(width)
        return torch.nn.functional.pad(mono, (0, max(0, target - mono.shape[-1])))[:, :target]

    runs = {
        "plain": lambda: [plain_forward(as_mono(audio)) for audio in slices],
        "converter": lambda: [converter.audio_to_images(as_mono(audio)[None])[0] for audio in slices],
        "torchaudio": lambda: [riffusion_forward(as_mono(audio), params, mel_transform) for audio in slices],
    }
    clocks = {name: [0.0, 0.0] for name in runs}
    outputs = {}
    order = list(runs)
    for _ in range(rounds):
        for name in order + order[::-1]:
            wall, cpu = time.perf_counter(), time.process_time()
            outputs[name] = runs[name]()
            clocks[name][0] += time.perf_counter() - wall
            clocks[name][1] += time.process_time() - cpu
    labels = {
        "torchaudio": "Riffusion's forward (torchaudio MelSpectrogram, full STFT)",
        "plain": "plain forward (torch FFT, dense mel product)",
        "converter": "SpectrogramConverter.audio_to_images",
    }
    for name, label in labels.items():
        wall, cpu = clocks[name]
        print(
            f"    {label:<60} {2 * rounds * num_slices / wall:5.2f} slices/s wall, {2 * rounds * num_slices / cpu:5.2f} per CPU s"
        )
    for name in ("plain", "torchaudio"):
        diff = torch.stack([(a.int() - b.int()).abs() for a, b in zip(outputs["converter"], outputs[name])])
        print(
            f"    converter / {name}: speed-up {clocks[name][0] / clocks['converter'][0]:.2f}x wall, {clocks[name][1] / clocks['converter'][1]:.2f}x CPU; "
            f"images: max |difference| {int(diff.max())} grey level(s), {float((diff > 0).float().mean()) * 100:.4f}% of pixels differ"
        )


def riffusion_mel(params: SpectrogramParams) -> torchaudio.transforms.MelSpectrogram:
    """Riffusion's forward transform (magnitude STFT and HTK mel filterbank) as torchaudio modules."""
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=params.sample_rate, n_fft=params.n_fft, win_length=params.win_length, hop_length=params.hop_length,
        f_min=params.min_frequency, f_max=params.max_frequency, n_mels=params.num_frequencies, power=1.0, norm=None, mel_scale="htk",
    )  # fmt: skip


def riffusion_forward(audio: torch.Tensor, params: SpectrogramParams, mel_transform) -> torch.Tensor:
    """Riffusion's image of mono audio ``(1, samples)``: torchaudio MelSpectrogram (power 1) and its image steps."""
    mel = mel_transform(audio)
    pixels = (255 - 255 * (mel / mel.max()).pow(params.power_for_image)).clamp(0, 255).to(torch.uint8).flip(-2)
    return pixels.expand(3, -1, -1)


def bench_tiny_generation(steps: int) -> None:
    print(f"(c) cost per generated second of audio, {steps} DDIM steps with CFG, 32 Griffin-Lim iterations")
    components = small_components(4)
    components["unet"] = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=16, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, norm_num_groups=2, attention_head_dim=2,
    ).eval()  # fmt: skip
    components["vae"] = AutoencoderKL(
        block_out_channels=[4, 8],
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=2,
    ).eval()
    pipe = SoSgenPipeline(
        **components, spectrogram_params=replace(SMALL_SPECTROGRAM, num_frequencies=32), window_width=1536
    )
    pipe.set_progress_bar_config(disable=True)
    pipe("warm up", duration_s=1.0, num_inference_steps=2)
    seconds, out = timed(
        pipe, "rain on a roof", duration_s=15.0, num_inference_steps=steps, generator=torch.Generator().manual_seed(0)
    )
    print(
        f"    tiny random components (UNet 4/8 ch, 32 x 1504 px, 8 kHz): {seconds:.2f} s for {out.audios.shape[-1] / out.sample_rate:.1f} s -> {seconds / 15:.3f} s per audio second"
    )


def estimate_sd15(steps: int, griffin_lim_seconds: float) -> None:
    """Stable Diffusion 1.5 size, 512 x 1536 px (latent 64 x 192), CFG batch 2: FLOPs counted, rate measured here."""
    sd_unet = dict(cross_attention_dim=768, attention_head_dim=8)  # UNet2DConditionModel's defaults are SD 1.x's
    sd_vae = dict(
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2, latent_channels=4, sample_size=512,
    )  # fmt: skip

    def flops(run) -> int:
        """FLOPs of ``run()``, which builds its inputs, on the meta device (no memory, no time)."""
        with FlopCounterMode(display=False) as counter, torch.device("meta"):
            run()
        return counter.get_total_flops()

    with torch.device("meta"):
        unet_meta, vae_meta = UNet2DConditionModel(**sd_unet), AutoencoderKL(**sd_vae)
    probe_shape = (2, 4, 16, 48)

    def unet_step(shape):
        return lambda: unet_meta(torch.randn(*shape), torch.tensor(500), encoder_hidden_states=torch.randn(2, 77, 768))

    step_flops = flops(unet_step((2, 4, 64, 192)))
    decode_flops = flops(lambda: vae_meta.decode(torch.randn(1, 4, 64, 192)))
    probe_flops = flops(unet_step(probe_shape))

    unet = UNet2DConditionModel(**sd_unet).eval()  # random weights: same arithmetic as the real checkpoint
    with torch.no_grad():
        inputs = (torch.randn(*probe_shape), torch.tensor(500))
        unet(*inputs, encoder_hidden_states=torch.randn(2, 77, 768))  # warm-up
        probe_seconds = min(timed(unet, *inputs, encoder_hidden_states=torch.randn(2, 77, 768))[0] for _ in range(2))
    rate = probe_flops / probe_seconds
    total = (steps * step_flops + decode_flops) / rate + griffin_lim_seconds
    print(
        f"    SD 1.5 size estimate (512 x 1536 px, {steps} steps): UNet step {step_flops / 1e12:.2f} TFLOP (CFG batch 2), VAE decode {decode_flops / 1e12:.2f} TFLOP;\n"
        f"      this CPU runs the real SD 1.5 UNet (random weights) on a {probe_shape} latent at {rate / 1e9:.0f} GFLOP/s;\n"
        f"      ({steps} x {step_flops / 1e12:.2f} + {decode_flops / 1e12:.2f}) TFLOP / {rate / 1e9:.0f} GFLOP/s + Griffin-Lim {griffin_lim_seconds:.1f} s (from b) "
        f"= {total:.0f} s for 15.36 s -> {total / 15.36:.1f} s per audio second on this CPU (Griffin-Lim: the pipelines' default method)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="timed pairs in (a)")
    parser.add_argument("--clips", type=int, default=2, help="15 s clips in (b)")
    parser.add_argument("--steps", type=int, default=50, help="denoising steps in (c)")
    parser.add_argument("--slices", type=int, default=4, help="15 s build slices in (d)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="timed rounds (each in A B C C B A order) in (b) and (d)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--parts", default="abcd", help="which parts to run (c's SD 1.5 estimate uses b's Griffin-Lim time)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    if "a" in args.parts:
        bench_pipeline_overhead(args.repeats)
    if "b" in args.parts:
        griffin_lim_seconds = bench_image_to_audio(args.clips, args.rounds)
    if "c" in args.parts:
        bench_tiny_generation(args.steps)
        if "b" in args.parts:
            estimate_sd15(args.steps, griffin_lim_seconds)
    if "d" in args.parts:
        bench_forward(args.slices, args.rounds)


if __name__ == "__main__":
    with torch.inference_mode():
        main()
