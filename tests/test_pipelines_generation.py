"""SoSgenPipeline, SoSgenControlNetPipeline and `sound-of-story generate`, on tiny random components built in code."""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from PIL import Image
from transformers import CLIPConfig, CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from sound_of_story.app.generate_command import add_generate_parser
from sound_of_story.pipelines import (
    IMAGE_ONLY_PROMPT,
    SoSgenControlNetPipeline,
    SoSgenPipeline,
    SpectrogramParams,
    controlnet_from_unet,
    filmstrip,
    frame_context,
    frame_spans,
    load_audio,
)
from sound_of_story.pipelines.tiny_random import (
    SPECTROGRAM,
    STEPS,
    tiny_components,
    tiny_frame_components,
)
from sound_of_story.pipelines.tiny_random import tiny_sosgen as sosgen
from sound_of_story.pipelines.tiny_random import tiny_sosgen_controlnet as sosgen_controlnet


def story_frames(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (24, 40, 3), dtype=np.uint8) for _ in range(count)]


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def in_float64(pipe):
    """``pipe`` with every network in float64 (diffusers' and transformers' modules all run in float64 on the CPU)."""
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.double()
    return pipe


# Two float64 runs of one computation whose sums go in other orders (attention whole or in slices, stories in a batch
# or one at a time) differ by round-off only. Each float64 operation rounds by at most u = 2^-53; the networks and the
# sampler carry that to the latents with a gain which the same comparisons in float32 measure (1.4e-5 between batched
# and single latents of magnitude 14 with float32's u = 2^-24: a gain of about 17), and which float64 runs confirm
# (about 2e-14 at magnitude 12). The tolerance is float32's resolution at the latents' scale, 2^-23 max |x|: it leaves
# that gain a factor of 6 x 10^7 of room whatever the processor's kernels, and is far below what another story's
# conditions change (checked where it is used).
FLOAT64_REORDER_RTOL = 2.0**-23


# ----------------------------------------------------------------------------- SoSgenPipeline
@pytest.mark.parametrize("scheduler", ["ddim", "dpm"])
def test_latents_equal_stable_diffusion(scheduler):
    components = tiny_components(scheduler)
    ours = sosgen(components)
    reference = StableDiffusionPipeline(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    reference.set_progress_bar_config(disable=True)
    kwargs = dict(
        prompt=["rain on a roof", "waves"],
        negative_prompt=["music", "noise"],
        num_inference_steps=STEPS,
        guidance_scale=6.0,
        num_images_per_prompt=2,
        output_type="latent",
    )
    expected = reference(height=32, width=96, generator=seeded(5), **kwargs).images
    actual = ours(width=96, generator=seeded(5), **kwargs).spectrograms
    assert actual.shape == expected.shape == (4, 4, 16, 48)
    torch.testing.assert_close(actual, expected, atol=0, rtol=0)  # the same operations on the same tensors


def test_outputs_sizes_level_and_agreement_between_audio_and_spectrogram():
    pipe = sosgen(spectrogram_params=replace(SPECTROGRAM, num_griffin_lim_iters=32))
    out = pipe("rain on a roof", width=96, num_inference_steps=STEPS, generator=seeded(), output_type="np")
    params = pipe.spectrogram_params
    assert out.sample_rate == 8000 and out.audios.dtype == np.float32
    assert out.audios.shape == (1, 1, params.num_samples_for_width(96)) and out.spectrograms.shape == (1, 32, 96, 3)
    # Riffusion's -0.1 dBFS peak: the target, the gain target / peak and the product each round once in float32, 3 u
    # (u = 2^-24) to first order; 4 u holds the rest
    np.testing.assert_allclose(np.abs(out.audios).max(), 10 ** (-0.1 / 20), rtol=4 * 2.0**-24)
    # The audio is the inversion of the returned spectrogram: its mel amplitudes are much closer to it
    # than to another generation's (random tiny models give spectrograms no STFT matches exactly).
    converter = pipe.converter
    other = pipe("rain on a roof", width=96, num_inference_steps=STEPS, generator=seeded(1), output_type="np")

    def convergence(audio: np.ndarray, spectrogram: np.ndarray) -> float:
        heard = converter.audio_to_mel(torch.from_numpy(audio))[0].double()
        shown = converter.images_to_mel(torch.from_numpy(spectrogram[None]).permute(0, 3, 1, 2))[0, 0].double()
        gain = (heard * shown).sum() / (shown * shown).sum()
        return float((heard - gain * shown).norm() / heard.norm())

    own = convergence(out.audios[0], out.spectrograms[0])
    assert own < 0.55 and own < 0.65 * convergence(out.audios[0], other.spectrograms[0])

    # duration_s: 15 s -> 1536 px for Stable Diffusion's alignment of 64; here 1.0 s -> 101 columns -> 104, cut to 8000 samples.
    assert pipe.size_alignment == 4 and pipe.width_for_duration(1.0) == 104
    timed = pipe("rain", duration_s=1.0, num_inference_steps=STEPS, generator=seeded(), output_type="pil")
    assert timed.audios.shape == (1, 1, 8000)
    image = timed.spectrograms[0]
    assert image.size == (104, 32) and {tag: image.getexif()[tag] for tag in params.to_exif()} == params.to_exif()


def test_width_for_duration_at_stable_diffusion_size():
    unet = UNet2DConditionModel(
        block_out_channels=(4, 4, 8, 8),
        layers_per_block=1,
        norm_num_groups=2,
        cross_attention_dim=8,
        attention_head_dim=2,
    )
    vae = AutoencoderKL(
        block_out_channels=[4, 4, 4, 8],
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        norm_num_groups=2,
    )
    pipe = SoSgenPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=DDIMScheduler())
    assert pipe.size_alignment == 64 and pipe.width_for_duration(15.0) == 1536 and pipe.width_for_duration(5.0) == 512
    assert pipe.config.window_width == 1536 and pipe.spectrogram_params == SpectrogramParams()


def test_reproducible_batched_and_output_types():
    pipe = sosgen()
    kwargs = dict(prompt="forest birds", width=64, num_inference_steps=STEPS)
    first = pipe(generator=seeded(1), output_type="pt", **kwargs)
    second = pipe(generator=seeded(1), output_type="pt", **kwargs)
    assert torch.equal(first.audios, second.audios) and torch.equal(first.spectrograms, second.spectrograms)
    as_np = pipe(generator=seeded(1), output_type="np", **kwargs)
    np.testing.assert_array_equal(as_np.audios, first.audios.numpy())
    as_pil = pipe(generator=seeded(1), output_type="pil", **kwargs)
    np.testing.assert_array_equal(
        np.asarray(as_pil.spectrograms[0]), np.round(as_np.spectrograms[0] * 255).astype(np.uint8)
    )
    other = pipe(generator=seeded(2), output_type="pt", **kwargs)
    assert not torch.equal(other.spectrograms, first.spectrograms)
    batch = pipe(
        prompt=["forest birds", "city traffic"],
        width=64,
        num_inference_steps=STEPS,
        num_images_per_prompt=2,
        generator=seeded(1),
        output_type="pt",
    )
    assert batch.audios.shape == (4, 1, pipe.spectrogram_params.num_samples_for_width(64))
    audios, sample_rate, spectrograms = pipe(generator=seeded(1), output_type="pt", return_dict=False, **kwargs)
    assert sample_rate == 8000 and torch.equal(audios, first.audios)


def test_callback_on_step_end_sees_every_step_of_every_window():
    pipe = sosgen()
    seen = []

    def zero_at_last_step(pipeline, step, timestep, tensors):
        seen.append(step)
        return (
            {"latents": torch.zeros_like(tensors["latents"])}
            if step == len(seen) - 1 and len(seen) == 3 * STEPS
            else {}
        )

    out = pipe(
        "rain",
        width=288,
        num_inference_steps=STEPS,
        generator=seeded(),
        output_type="latent",
        callback_on_step_end=zero_at_last_step,
    )
    assert seen == list(range(3 * STEPS))  # 288 px = 3 windows of 128 px overlapping by 32
    assert out.spectrograms.shape == (1, 4, 16, 144)  # 64 latent columns, then 48 new ones per window, cut to 144
    assert float(out.spectrograms[..., 112:].abs().max()) == 0.0  # the last window's new columns were zeroed
    assert float(out.spectrograms[..., :112].abs().min()) > 0.0


def test_long_audio_inpaints_the_overlap_and_joins_without_clicks():
    # band-limited: a click stands out from sample steps
    pipe = sosgen(spectrogram_params=replace(SPECTROGRAM, max_frequency=1500, num_griffin_lim_iters=16))
    finals = {}

    def keep_window_results(pipeline, step, timestep, tensors):
        if (step + 1) % STEPS == 0:
            finals[step // STEPS] = tensors["latents"].clone()
        return {}

    out = pipe(
        "rain on a roof",
        width=288,
        num_inference_steps=STEPS,
        generator=seeded(),
        output_type="pt",
        callback_on_step_end=keep_window_results,
    )
    windows = pipe.plan_windows(288)
    assert [(w.start, w.width, w.overlap) for w in windows] == [(0, 128, 0), (96, 128, 32), (192, 128, 32)]
    # Each window's overlap ends as exactly the previous window's tail (16 latent columns = 32 px).
    for k in (1, 2):
        assert torch.equal(finals[k][..., :16], finals[k - 1][..., -16:])
    # The stitched spectrogram is the linear crossfade of the decoded windows over each overlap.
    decoded = [pipe.vae.decode(finals[k] / pipe.vae.config.scaling_factor).sample for k in range(3)]

    def to_image(x):
        return (x / 2 + 0.5).clamp(0, 1)

    ramp = torch.arange(1, 33, dtype=torch.float32) / 33
    expected_overlap = to_image(decoded[0][..., 96:] * (1 - ramp) + decoded[1][..., :32] * ramp)
    # The ramps: torch.linspace's start + k step (end - (33 - k) step in its second half) is within 1.25 u of k / 33,
    # k / 33 here within u / 2 (u = 2^-24, the float32 step below 1), so at most 2 u apart, which moves
    # a (1 - r) + b r by |a - b| 2 u <= 4 M u (M = max |a|, |b|). Each side rounds it three times (1 - r, the product
    # with a, the sum), within 3 u M; / 2 + 0.5 halves all that and rounds once more (u / 2 a side): (5 M + 1) u.
    largest = float(max(decoded[0][..., 96:].abs().max(), decoded[1][..., :32].abs().max()))
    torch.testing.assert_close(
        out.spectrograms[..., 96:128], expected_overlap, atol=(5 * largest + 1) * 2.0**-24, rtol=0
    )
    assert torch.equal(out.spectrograms[..., 128:192], to_image(decoded[1][..., 32:96]))  # the same operations

    # One inversion of the whole spectrogram: no click at the seams. The content stops at 1500 Hz, so a click
    # shows as energy above 2500 Hz; inverting the windows separately and butting them together clicks.
    hop = pipe.spectrogram_params.hop_length

    def click_ratio(audio: torch.Tensor, seams: list[int]) -> float:
        """Largest short-time energy above 2500 Hz near the seams, over its 99th percentile elsewhere."""
        spectrum = torch.fft.rfft(audio)
        spectrum[torch.fft.rfftfreq(audio.numel(), 1 / 8000) < 2500] = 0
        high = torch.fft.irfft(spectrum, n=audio.numel()).square() / audio.square().mean()
        energy = torch.nn.functional.avg_pool1d(high[None, None], 16, stride=1, padding=8)[0, 0, : audio.numel()]
        near = torch.zeros_like(energy, dtype=torch.bool)
        for s in seams:
            near[s - 8 : s + 8] = True
        return float(energy[near].max() / energy[~near].quantile(0.99))

    converter = pipe.converter
    cuts = [0, 112, 208, 288]
    pieces = [
        converter.images_to_audio(out.spectrograms[..., a:b], generator=seeded(k))[0, 0]
        for k, (a, b) in enumerate(zip(cuts, cuts[1:]))
    ]
    pieces = [p / p.abs().max() for p in pieces]  # per-clip normalisation, as Riffusion's clips
    assert click_ratio(torch.cat(pieces), np.cumsum([len(p) for p in pieces])[:-1].tolist()) > 10
    assert click_ratio(out.audios[0, 0], [c * hop for c in (96, 128, 192, 224)]) < 2
    # No level jump: the short-time level on either side of each seam agrees as well as anywhere else.
    level = out.audios[0, 0][: hop * 287].reshape(-1, hop).square().mean(dim=1).sqrt()
    jumps = (level[1:] / level[:-1]).log().abs()
    seam_jumps = jumps[[95, 127, 191, 223]]
    assert float(seam_jumps.max()) <= float(jumps.quantile(0.99))


def test_save_and_load_round_trip_is_bit_identical(tmp_path):
    pipe = sosgen(spectrogram_params=replace(SPECTROGRAM, stereo=True, power_for_image=0.3))
    kwargs = dict(prompt="church bells", width=64, num_inference_steps=STEPS, output_type="pt")
    before = pipe(generator=seeded(3), **kwargs)
    assert before.audios.shape[1] == 2  # stereo parameters: two channels out of G and B
    pipe.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert (
        index["_class_name"] == "SoSgenPipeline"
        and index["spectrogram_params"]["stereo"] is True
        and index["spectrogram_params"]["power_for_image"] == 0.3
        and index["window_width"] == 128
    )
    loaded = SoSgenPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.spectrogram_params == pipe.spectrogram_params
    after = loaded(generator=seeded(3), **kwargs)
    assert torch.equal(before.audios, after.audios) and torch.equal(before.spectrograms, after.spectrograms)


def flatten_spectrogram_params(folder) -> None:
    """Rewrite a saved pipeline's model_index.json with the spectrogram parameters as separate keys
    (``"sample_rate": 8000, ...``), as pipelines saved by earlier versions of the package hold them."""
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index.update(index.pop("spectrogram_params"))
    index_path.write_text(json.dumps(index))


@pytest.mark.parametrize("controlnet", [False, True])
def test_pipelines_saved_with_separate_spectrogram_keys_load_with_their_parameters(tmp_path, controlnet):
    params = replace(SPECTROGRAM, stereo=True, max_frequency=2000, power_for_image=0.3)
    if controlnet:
        pipe = sosgen_controlnet(spectrogram_params=params, image_only=True)
        kwargs = dict(frames=story_frames(2), width=64, num_inference_steps=STEPS, output_type="pt")
    else:
        pipe = sosgen(spectrogram_params=params)
        kwargs = dict(prompt="rain", width=64, num_inference_steps=STEPS, output_type="pt")
    before = pipe(generator=seeded(), **kwargs)
    pipe.save_pretrained(tmp_path / "pipe")
    flatten_spectrogram_params(tmp_path / "pipe")
    assert json.loads((tmp_path / "pipe" / "model_index.json").read_text())["max_frequency"] == 2000
    loaded = type(pipe).from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.spectrogram_params == params and loaded.config.window_width == 128
    assert loaded.config.get("image_only") is (True if controlnet else None)
    after = loaded(generator=seeded(), **kwargs)
    assert torch.equal(before.audios, after.audios) and torch.equal(before.spectrograms, after.spectrograms)
    # saved again, the parameters are one entry; a separate key given to from_pretrained still overrides its field
    loaded.save_pretrained(tmp_path / "again")
    index = json.loads((tmp_path / "again" / "model_index.json").read_text())
    assert index["spectrogram_params"] == params.to_dict() and "max_frequency" not in index
    overridden = type(pipe).from_pretrained(tmp_path / "pipe", max_frequency=1500, window_width=64)
    assert (
        overridden.spectrogram_params == replace(params, max_frequency=1500) and overridden.config.window_width == 64
    )


def test_spectrogram_params_as_one_object_a_dict_or_separate_keywords():
    components = tiny_components()
    frame_components = tiny_frame_components(components)
    params = replace(SPECTROGRAM, stereo=True)
    as_object = SoSgenControlNetPipeline(**components, **frame_components, spectrogram_params=params)
    as_dict = SoSgenControlNetPipeline(**components, **frame_components, spectrogram_params=params.to_dict())
    with pytest.warns(FutureWarning, match="spectrogram_params=SpectrogramParams"):
        as_keywords = SoSgenControlNetPipeline(**components, **frame_components, **params.to_dict(), image_only=True)
    assert as_object.spectrogram_params == as_dict.spectrogram_params == as_keywords.spectrogram_params == params
    assert as_keywords.config.image_only is True
    # what training does: the base pipeline's options, components and spectrogram parameters into a ControlNet pipeline
    base = sosgen(components, spectrogram_params=params, window_overlap=16)
    options = {k: v for k, v in base.config.items() if not k.startswith("_") and not isinstance(v, (list, tuple))}
    derived = SoSgenControlNetPipeline(**base.components, **frame_components, **options)
    assert derived.spectrogram_params == params and derived.config.window_overlap == 16
    assert set(derived.components) == set(base.components) | set(frame_components)
    with pytest.raises(TypeError, match="sample_rte"):
        SoSgenPipeline(**components, sample_rte=8000)
    with pytest.raises(ValueError, match="sample_rte"):
        SoSgenPipeline(**components, spectrogram_params={"sample_rte": 8000})
    with pytest.raises(ValueError, match="not both"):
        SoSgenPipeline(**components, spectrogram_params=params, sample_rate=8000)


def test_loads_the_riffusion_model_layout_as_it_is(tmp_path):
    """riffusion/riffusion-model-v1 is a 2022 StableDiffusionPipeline folder with a safety checker, a CLIPFeatureExtractor and unet_traced/."""
    components = tiny_components("pndm")
    safety_checker = StableDiffusionSafetyChecker(
        CLIPConfig(
            text_config=dict(
                hidden_size=8, intermediate_size=16, num_attention_heads=2, num_hidden_layers=1, vocab_size=100
            ),
            vision_config=dict(
                hidden_size=8,
                intermediate_size=16,
                num_attention_heads=2,
                num_hidden_layers=1,
                image_size=32,
                patch_size=8,
            ),
            projection_dim=8,
        )
    )
    feature_extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    reference = StableDiffusionPipeline(
        **components, safety_checker=safety_checker, feature_extractor=feature_extractor
    )
    reference.set_progress_bar_config(disable=True)
    folder = tmp_path / "riffusion-model-v1"
    reference.save_pretrained(folder)
    (folder / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "_diffusers_version": "0.9.0",
                "feature_extractor": ["transformers", "CLIPFeatureExtractor"],
                "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
                "scheduler": ["diffusers", "PNDMScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            }
        )
    )
    (folder / "unet_traced").mkdir()
    (folder / "unet_traced" / "unet_traced.pt").write_bytes(b"TorchScript UNet for CUDA fp16, not loaded")

    pipe = SoSgenPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    assert set(pipe.components) == {"vae", "text_encoder", "tokenizer", "unet", "scheduler"}
    assert (
        pipe.spectrogram_params == SpectrogramParams() and pipe.config.window_width == 1536
    )  # Riffusion's parameters by default
    kwargs = dict(prompt="jazzy piano", num_inference_steps=STEPS, guidance_scale=7.0, output_type="latent")
    expected = reference(height=512, width=64, generator=seeded(), **kwargs).images
    # the same weights (saved and loaded bit for bit) through the same operations
    torch.testing.assert_close(pipe(width=64, generator=seeded(), **kwargs).spectrograms, expected, atol=0, rtol=0)


def test_lora_weights_load(tmp_path):
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    kwargs = dict(prompt="rain", width=64, num_inference_steps=STEPS, output_type="latent")
    trained = sosgen()
    base = trained(generator=seeded(), **kwargs).spectrograms
    trained.unet.add_adapter(
        LoraConfig(
            r=2, lora_alpha=2, init_lora_weights="gaussian", target_modules=["to_k", "to_q", "to_v", "to_out.0"]
        )
    )
    torch.manual_seed(6)
    for name, parameter in trained.unet.named_parameters():
        if "lora_B" in name:  # B starts at zero; a trained adapter is not
            torch.nn.init.normal_(parameter, std=0.5)
    adapted = trained(generator=seeded(), **kwargs).spectrograms
    assert float((adapted - base).abs().max()) > 1e-3
    SoSgenPipeline.save_lora_weights(
        tmp_path / "lora", unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(trained.unet))
    )

    fresh = sosgen()
    fresh.load_lora_weights(tmp_path / "lora")
    # the same adapter weights through the same LoRA layers
    torch.testing.assert_close(fresh(generator=seeded(), **kwargs).spectrograms, adapted, atol=0, rtol=0)


def test_push_to_hub_uploads_a_loadable_pipeline(tmp_path, monkeypatch):
    import diffusers.utils.hub_utils as hub_utils

    uploaded = tmp_path / "hub"
    calls = {}

    def fake_create_repo(repo_id, **kwargs):
        calls["create_repo"] = repo_id
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def fake_upload_folder(repo_id, folder_path, **kwargs):
        calls["upload_folder"] = repo_id
        shutil.copytree(folder_path, uploaded)

    monkeypatch.setattr(hub_utils, "create_repo", fake_create_repo)
    monkeypatch.setattr(hub_utils, "upload_folder", fake_upload_folder)
    monkeypatch.setattr(
        hub_utils,
        "load_or_create_model_card",
        lambda repo_id, **kwargs: hub_utils.ModelCard("---\nlicense: apache-2.0\n---\n# SoSgen\n"),
    )
    pipe = sosgen()
    pipe.push_to_hub("someone/sosgen-tiny")
    assert calls == {"create_repo": "someone/sosgen-tiny", "upload_folder": "someone/sosgen-tiny"}
    assert (uploaded / "README.md").exists() and json.loads((uploaded / "model_index.json").read_text())[
        "_class_name"
    ] == "SoSgenPipeline"
    loaded = SoSgenPipeline.from_pretrained(uploaded)
    loaded.set_progress_bar_config(disable=True)
    kwargs = dict(prompt="sea", width=64, num_inference_steps=STEPS, output_type="pt")
    assert torch.equal(loaded(generator=seeded(), **kwargs).audios, pipe(generator=seeded(), **kwargs).audios)


def test_cpu_offload_attention_slicing_and_vae_tiling(monkeypatch):
    pipe = sosgen()
    kwargs = dict(prompt="wind", width=128, num_inference_steps=STEPS, output_type="pt")
    reference = pipe(generator=seeded(), **kwargs)

    wide = in_float64(sosgen())
    whole = wide(generator=seeded(), **kwargs)
    wide.enable_attention_slicing(1)
    sliced = wide(generator=seeded(), **kwargs)
    # The float64 images agree to round-off (~1e-14, FLOAT64_REORDER_RTOL's reasoning); the pipeline then rounds them to
    # float32 twice (x.float(), then x / 2 + 0.5 in [0, 1]), which leaves them one float32 step (2^-23) apart at most
    # besides that: 2^-22 holds it.
    assert whole.spectrograms.dtype == torch.float32
    torch.testing.assert_close(sliced.spectrograms, whole.spectrograms, atol=2.0**-22, rtol=0)

    tiles = []
    original = pipe.vae.tiled_decode
    monkeypatch.setattr(pipe.vae, "tiled_decode", lambda *a, **k: tiles.append(a[0].shape) or original(*a, **k))
    pipe.vae.enable_tiling()  # tiles of 32 px: the 128 px window is decoded in blended tiles
    tiled = pipe(generator=seeded(), **kwargs)
    pipe.vae.disable_tiling()
    assert tiles and float((tiled.spectrograms - reference.spectrograms).abs().mean()) < 0.05

    pipe.enable_model_cpu_offload(device="cpu")  # the hooks, on the only device there is here
    offloaded = pipe(generator=seeded(), **kwargs)
    assert torch.equal(offloaded.spectrograms, reference.spectrograms)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(width=60), "divisible by 8"),
        (dict(width=64, height=64), "num_frequencies"),
        (dict(width=64, duration_s=1.0), "not both"),
        (dict(duration_s=-1.0), "positive number of seconds"),
        (dict(width=64, output_type="wav"), "output_type"),
        (dict(width=64, num_inference_steps=0), "num_inference_steps"),
        (dict(width=64, callback_on_step_end_tensor_inputs=["noise_pred"]), "callback_on_step_end_tensor_inputs"),
        (dict(width=256, latents=torch.zeros(1, 4, 16, 128)), "one window"),
        (dict(width=64, prompt=None), "prompt"),
        (dict(width=64, prompt=["a", 3]), "prompt"),
    ],
)
def test_clear_errors(kwargs, message):
    pipe = sosgen()
    with pytest.raises(ValueError, match=message):
        pipe(**{"prompt": "rain", "num_inference_steps": STEPS, **kwargs})


def test_window_configuration_errors():
    with pytest.raises(ValueError, match="window_width"):
        sosgen(window_width=100)
    with pytest.raises(ValueError, match="window_overlap"):
        sosgen(window_overlap=128)


# -------------------------------------------------------------------- SoSgenControlNetPipeline
def test_frame_spans_and_filmstrip_are_time_aligned():
    assert frame_spans([0.0, 0.25, 0.6], 100, 100.0) == [(0, 25), (25, 60), (60, 100)]
    assert frame_spans([0.5, 0.5], 80, 100.0) == [(0, 50), (50, 80)]  # the first frame covers from the start
    red, green = torch.zeros(3, 10, 20), torch.zeros(3, 10, 20)
    red[0], green[1] = 1.0, 1.0
    split = torch.zeros(3, 10, 20)
    split[2, :, :10], split[0, :, 10:] = 1.0, 1.0  # left half blue, right half red
    hint = filmstrip(torch.stack([red, green, split]), [(0, 30), (30, 70), (70, 76)], height=32, width=76)
    assert hint.shape == (3, 32, 76)
    torch.testing.assert_close(hint[:, :, :30], red[:, :1, :1].expand(3, 32, 30))
    torch.testing.assert_close(hint[:, :, 30:70], green[:, :1, :1].expand(3, 32, 40))
    # Cover fit of a 10x20 frame into 32x6 columns: scaled to 32x64, centre-cropped to columns 29-34, which
    # hold the boundary between its blue half (0-31) and red half (32-63) in the middle.
    blue, red_ = hint[2, 0, 70:76], hint[0, 0, 70:76]
    assert float(blue[0]) > 0.95 and float(red_[0]) < 0.05 and float(red_[-1]) > 0.95 and float(blue[-1]) < 0.05
    assert bool((blue[:3] > red_[:3]).all()) and bool((red_[3:] > blue[3:]).all())


def test_frame_context_projects_and_adds_position_embeddings():
    from diffusers.models.embeddings import get_timestep_embedding

    components = tiny_components()
    controlnet = tiny_frame_components(components)["controlnet"]
    embeds = torch.randn(3, 12, generator=seeded())
    positions = torch.tensor([10.0, 40.0, 100.0])
    context = frame_context(embeds, positions, controlnet)
    expected = controlnet.encoder_hid_proj(embeds) + get_timestep_embedding(
        positions, 8, flip_sin_to_cos=True, downscale_freq_shift=0
    )
    torch.testing.assert_close(context, expected)
    assert context.shape == (3, controlnet.config.cross_attention_dim)


def test_controlnet_with_scale_zero_equals_sosgen():
    components = tiny_components()
    base = sosgen(components)
    pipe = sosgen_controlnet(components)
    kwargs = dict(prompt="rain on a roof", width=64, num_inference_steps=STEPS, output_type="pt")
    expected = base(generator=seeded(), **kwargs)
    frames = story_frames(3)
    off = pipe(
        frames=frames, frame_times=[0.0, 0.2, 0.4], controlnet_conditioning_scale=0.0, generator=seeded(), **kwargs
    )
    assert torch.equal(off.audios, expected.audios) and torch.equal(off.spectrograms, expected.spectrograms)
    # The ControlNet acts only in its guidance window: a window past the last step is also "off".
    gated = pipe(frames=frames, control_guidance_start=0.9, generator=seeded(), **kwargs)
    assert torch.equal(gated.spectrograms, expected.spectrograms)
    on = pipe(frames=frames, frame_times=[0.0, 0.2, 0.4], generator=seeded(), **kwargs)
    assert float((on.spectrograms - expected.spectrograms).abs().max()) > 1e-2
    other_frames = pipe(frames=story_frames(3, seed=1), frame_times=[0.0, 0.2, 0.4], generator=seeded(), **kwargs)
    other_times = pipe(frames=frames, frame_times=[0.0, 0.1, 0.5], generator=seeded(), **kwargs)
    for changed in (other_frames, other_times):
        assert float((changed.spectrograms - on.spectrograms).abs().max()) > 1e-3
    guessed = pipe(frames=frames, guess_mode=True, generator=seeded(), **kwargs)
    assert float((guessed.spectrograms - on.spectrograms).abs().max()) > 1e-3


def test_controlnet_batch_of_stories_with_different_frame_counts_matches_single_runs():
    pipe = in_float64(sosgen_controlnet())  # float64: the batch changes the order of sums (FLOAT64_REORDER_RTOL)
    stories, times = [story_frames(3), story_frames(2, seed=1)], [[0.0, 0.2, 0.4], [0.0, 0.3]]
    kwargs = dict(width=64, num_inference_steps=STEPS, output_type="latent")
    batch = pipe(
        ["rain", "waves"], frames=stories, frame_times=times, generator=[seeded(0), seeded(1)], **kwargs
    ).spectrograms
    assert batch.dtype == torch.float64
    singles = []
    for k, prompt in enumerate(["rain", "waves"]):
        singles.append(
            pipe(prompt, frames=stories[k], frame_times=times[k], generator=seeded(k), **kwargs).spectrograms
        )
        scale = float(singles[k].abs().max())
        torch.testing.assert_close(batch[k : k + 1], singles[k], atol=FLOAT64_REORDER_RTOL * scale, rtol=0)
    # what the tolerance tells apart: the other story's conditions move the latents by far more
    mixed = pipe("rain", frames=stories[1], frame_times=times[1], generator=seeded(0), **kwargs).spectrograms
    assert float((mixed - singles[0]).abs().max()) > 1e-3


def test_calls_on_one_pipeline_share_no_state():
    """Each call depends on its own arguments only: after calls with other frames, settings and batch (one of them
    interrupted by its callback, one failing part way) a call gives what it gives on a fresh pipeline, and no call
    leaves anything on the pipeline."""
    components = tiny_components()
    pipe, fresh = sosgen_controlnet(components), sosgen_controlnet(components)
    attributes = dict(vars(pipe))

    def unchanged() -> bool:
        return vars(pipe).keys() == attributes.keys() and all(vars(pipe)[k] is v for k, v in attributes.items())

    steps = []

    def interrupt_after_two_steps(pipeline, step, timestep, tensors):
        steps.append(step)
        pipeline._interrupt = step == 1  # diffusers' way to stop a call from a callback
        return {}

    second = dict(
        prompt=["waves", "wind"],
        frames=[story_frames(2, seed=1), story_frames(1, seed=2)],
        width=64,
        num_images_per_prompt=2,
        guidance_scale=3.0,
        num_inference_steps=STEPS,
        output_type="pt",
    )
    expected = fresh(generator=seeded(1), **second)
    pipe(
        "rain",
        frames=story_frames(3),
        frame_times=[0.0, 0.8, 1.6],
        width=288,
        guess_mode=True,
        controlnet_conditioning_scale=0.5,
        control_guidance_end=0.5,
        num_inference_steps=STEPS,
        generator=seeded(0),
        output_type="pt",
        callback_on_step_end=interrupt_after_two_steps,
    )
    assert steps == [0, 1] and unchanged()
    after_first = pipe(generator=seeded(1), **second)
    assert unchanged()
    with pytest.raises(ValueError, match="beyond"):
        pipe("rain", frames=story_frames(2), frame_times=[0.0, 5.0], width=64, num_inference_steps=STEPS)
    assert unchanged()
    after_failure = pipe(generator=seeded(1), **second)
    for out in (after_first, after_failure):
        assert torch.equal(out.audios, expected.audios) and torch.equal(out.spectrograms, expected.spectrograms)


def test_image_only_mode_uses_the_text_audio():
    components = tiny_components()
    image_only = sosgen_controlnet(components, image_only=True)
    text_and_image = sosgen_controlnet(components)
    kwargs = dict(frames=story_frames(2), width=64, num_inference_steps=STEPS, output_type="pt")
    expected = text_and_image(IMAGE_ONLY_PROMPT, generator=seeded(), **kwargs)
    actual = image_only(generator=seeded(), **kwargs)
    assert torch.equal(actual.spectrograms, expected.spectrograms)
    with pytest.raises(ValueError, match="image-only"):
        image_only("rain", **kwargs)


def test_controlnet_long_audio_and_save_load_round_trip(tmp_path):
    pipe = sosgen_controlnet()
    kwargs = dict(
        prompt="city traffic",
        frames=story_frames(4),
        frame_times=[0.0, 0.8, 1.6, 2.4],
        width=288,
        num_inference_steps=STEPS,
        output_type="pt",
    )
    before = pipe(generator=seeded(), **kwargs)
    assert before.audios.shape == (1, 1, pipe.spectrogram_params.num_samples_for_width(288))
    pipe.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["controlnet"] == ["diffusers", "ControlNetModel"] and index["image_encoder"] == [
        "transformers",
        "CLIPVisionModelWithProjection",
    ]
    loaded = SoSgenControlNetPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.controlnet.encoder_hid_proj is not None and loaded.config.image_only is False
    after = loaded(generator=seeded(), **kwargs)
    assert torch.equal(before.audios, after.audios) and torch.equal(before.spectrograms, after.spectrograms)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(frames=None), "frames"),
        (dict(frame_times=[0.0, 0.1]), "3 frames but `frame_times` has 2"),
        (dict(frame_times=[0.0, 0.3, 0.1]), "non-decreasing"),
        (dict(frame_times=[0.0, 0.1, 0.9]), "beyond"),
        (dict(frames=[story_frames(2), story_frames(2)]), "2 stories but there are 1 prompts"),
        (dict(frames=[np.zeros((3, 8, 8))]), r"\(height, width, 3\)"),
        (dict(control_guidance_start=0.5, control_guidance_end=0.5), "control_guidance_start"),
        (dict(controlnet_conditioning_scale=float("nan")), "controlnet_conditioning_scale"),
        (dict(prompt=None), "prompt"),
    ],
)
def test_controlnet_clear_errors(kwargs, message):
    pipe = sosgen_controlnet()
    with pytest.raises(ValueError, match=message):
        pipe(**{"prompt": "rain", "frames": story_frames(3), "width": 64, "num_inference_steps": STEPS, **kwargs})


def test_controlnet_component_errors():
    components = tiny_components()
    frame_components = tiny_frame_components(components)
    wrong_width = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=8,
            intermediate_size=16,
            num_attention_heads=2,
            num_hidden_layers=1,
            image_size=32,
            patch_size=8,
            projection_dim=6,
        )
    )
    with pytest.raises(ValueError, match="projection_dim"):
        SoSgenControlNetPipeline(
            **components, **{**frame_components, "image_encoder": wrong_width}, spectrogram_params=SPECTROGRAM
        )
    four_stage = controlnet_from_unet(
        components["unet"], frame_components["image_encoder"], conditioning_embedding_out_channels=(16, 32, 96, 256)
    )
    with pytest.raises(ValueError, match="downsamples 8x but the VAE 2x"):
        SoSgenControlNetPipeline(
            **components, **{**frame_components, "controlnet": four_stage}, spectrogram_params=SPECTROGRAM
        )


# ------------------------------------------------------------------------------ command line
# The command writes the pipeline's float32 audio (the same computation as the test's call: same weights, seed and
# device) as 16-bit PCM, read back as k / 32768. libsndfile writes k = trunc(32768 x), less than one step from x, or in
# other builds k = round(32767 x), within (0.5 + |x|) / 32768; the audio peaks at -0.1 dBFS (|x| <= 0.989), so every
# sample is within 1.49 steps of the pipeline's: 1.5 steps holds either build.
PCM16_ATOL = 1.5 / 32768


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sound-of-story")
    add_generate_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_generate_writes_the_pipeline_output(tmp_path, capsys):
    pipe = sosgen()
    pipe.save_pretrained(tmp_path / "model")
    out = tmp_path / "out" / "rain.wav"
    argv = [
        "generate",
        "--model",
        str(tmp_path / "model"),
        "--text",
        "rain on a roof",
        "--duration",
        "2.5",
        "--steps",
        "3",
        "--seed",
        "4",
    ]
    # on the CPU in float32, as the expected call below (by default a CUDA machine would run float16 on its GPU)
    assert run_cli(argv + ["--window-width", "64", "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    audio, sample_rate = load_audio(out)
    pipe.register_to_config(window_width=64)  # what --window-width overrides
    expected = pipe("rain on a roof", duration_s=2.5, num_inference_steps=3, guidance_scale=7.0, generator=seeded(4))
    assert sample_rate == 8000 and audio.shape == (1, 20000)
    np.testing.assert_allclose(audio, expected.audios[0], atol=PCM16_ATOL)
    image = Image.open(out.with_suffix(".png"))
    np.testing.assert_array_equal(np.asarray(image), np.asarray(expected.spectrograms[0]))
    assert {
        tag: image.getexif()[tag] for tag in pipe.spectrogram_params.to_exif()
    } == pipe.spectrogram_params.to_exif()
    assert "wrote" in capsys.readouterr().out


def test_cli_generate_with_frames(tmp_path):
    pipe = sosgen_controlnet()
    pipe.save_pretrained(tmp_path / "model")
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    frames = story_frames(3)
    for k, frame in enumerate(frames):
        Image.fromarray(frame).save(frames_dir / f"{k:03d}.png")
    out = tmp_path / "story.wav"
    argv = [
        "generate",
        "--model",
        str(tmp_path / "model"),
        "--text",
        "sea",
        "--frames",
        str(frames_dir),
        "--frame-times",
        "0,0.4,0.9",
        "--duration",
        "1.2",
        "--steps",
        "3",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--quiet",
    ]
    assert run_cli(argv) == 0
    audio, _ = load_audio(out)
    expected = pipe(
        "sea", frames=frames, frame_times=[0, 0.4, 0.9], duration_s=1.2, num_inference_steps=3, generator=seeded(0)
    )
    np.testing.assert_allclose(audio, expected.audios[0], atol=PCM16_ATOL)
    with pytest.raises(ValueError, match="3 images"):
        run_cli(argv[:-1] + ["--frame-times", "0,1", "--quiet"])
    with pytest.raises(ValueError, match="--frames needs a SoSgenControlNetPipeline"):
        sosgen().save_pretrained(tmp_path / "text_model")
        run_cli(
            [
                "generate",
                "--model",
                str(tmp_path / "text_model"),
                "--text",
                "x",
                "--frames",
                str(frames_dir),
                "--out",
                str(out),
            ]
        )
    with pytest.raises(FileNotFoundError, match="--model"):
        run_cli(["generate", "--model", str(tmp_path / "missing"), "--text", "x", "--out", str(out)])


def test_identity_vae_passes_a_spectrogram_image_through_and_the_small_sosgen_makes_a_slice_in_one_window(tmp_path):
    """The demo's small SoSgen: the fixed autoencoder gives back the image (a random frozen one loses it), its latents
    are the image's grey level at unit spread, and one 128-column window of 80 ms columns holds a 10 s slice."""
    from sound_of_story.audio.spectrogram import audio_to_image
    from sound_of_story.pipelines.tiny_random import (
        SMALL_SPECTROGRAM,
        SMALL_WINDOWS,
        identity_vae,
        small_sosgen_components,
        tiny_tokenizer,
    )

    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((1, 10 * 16000)) * np.linspace(0.01, 0.3, 10 * 16000)).astype(np.float32)
    image = torch.from_numpy(np.array(audio_to_image(audio, 16000, SMALL_SPECTROGRAM).convert("RGB")))
    pixels = image.permute(2, 0, 1)[None].float() / 127.5 - 1.0  # the training's [-1, 1] images, (1, 3, 32, 126)
    assert pixels.shape == (1, 3, 32, 126)
    vae = identity_vae(shift=0.25, scale=0.4)
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.sample()
        decoded = vae.decode(latents).sample
    # The construction's stated errors (GroupNorm spread constant to 1e-5, SiLU the identity to 1e-5) on values of 1.
    np.testing.assert_allclose(latents[0, 0].numpy(), (pixels[0].mean(0) - 0.25).numpy(), atol=1e-4)
    np.testing.assert_allclose(decoded.numpy(), pixels.numpy(), atol=1e-4)
    assert vae.config.scaling_factor == pytest.approx(2.5)

    components = small_sosgen_components(tiny_tokenizer())
    pipe = SoSgenPipeline(**components, spectrogram_params=SMALL_SPECTROGRAM, **SMALL_WINDOWS)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("rain", duration_s=10.0, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.sample_rate == 16000 and out.audios[0].shape[-1] == SMALL_SPECTROGRAM.num_samples_for_width(126)
    assert SMALL_WINDOWS["window_width"] * SMALL_SPECTROGRAM.step_size_ms / 1000 >= 10.0  # one window per slice
    controlnet_pipe = sosgen_controlnet(components, spectrogram_params=SMALL_SPECTROGRAM, **SMALL_WINDOWS)
    frames = [Image.new("RGB", (32, 32), (200, 30, 30)), Image.new("RGB", (32, 32), (30, 30, 200))]
    out = controlnet_pipe(
        "rain", frames=frames, frame_times=[0.0, 5.0], duration_s=10.0, num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert out.audios[0].shape[-1] == SMALL_SPECTROGRAM.num_samples_for_width(126)
