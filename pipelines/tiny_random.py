"""Tiny random-initialised SoSgen pipelines, built in code with no download.

For the offline demo and the tests: every code path of the real pipelines runs, at 8 kHz with 32
mel bins and 4/8-channel networks, in seconds on a 2-core CPU. The outputs are noise shaped by
random weights: they show the pipeline works, not what a trained model generates.
"""

from __future__ import annotations

import string

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler, PNDMScheduler, UNet2DConditionModel
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from sound_of_story.audio.spectrogram import SpectrogramParams

from .pipeline_sosgen import SoSgenPipeline
from .pipeline_sosgen_controlnet import SoSgenControlNetPipeline, controlnet_from_unet

# 8 kHz, 100 columns per second, 32 mel bins (the image height), 8 Griffin-Lim iterations.
SPECTROGRAM = SpectrogramParams(
    sample_rate=8000,
    step_size_ms=10,
    window_duration_ms=50,
    padded_duration_ms=100,
    num_frequencies=32,
    max_frequency=3000,
    num_griffin_lim_iters=8,
)
WINDOWS = dict(window_width=128, window_overlap=32)
STEPS = 3


def tiny_tokenizer() -> CLIPTokenizer:
    """A character-level CLIP tokenizer built in code (no merges): enough to tell prompts apart."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in string.ascii_lowercase + string.digits + ".,'!?-":
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)


def tiny_components(scheduler: str = "ddim") -> dict:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=8,
        norm_num_groups=2,
        attention_head_dim=2,
    )
    torch.manual_seed(1)
    vae = AutoencoderKL(
        block_out_channels=[4, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=32,
    )
    torch.manual_seed(2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=8, intermediate_size=16, num_attention_heads=2,
            num_hidden_layers=2, vocab_size=100, max_position_embeddings=16,
        )
    )  # fmt: skip
    betas = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    schedulers = {
        "ddim": lambda: DDIMScheduler(clip_sample=False, set_alpha_to_one=False, **betas),
        "dpm": lambda: DPMSolverMultistepScheduler(**betas),
        "pndm": lambda: PNDMScheduler(skip_prk_steps=True, set_alpha_to_one=False, **betas),
    }
    return dict(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tiny_tokenizer(),
        unet=unet.eval(),
        scheduler=schedulers[scheduler](),
    )


def tiny_frame_components(components: dict) -> dict:
    """CLIP vision encoder (projection 12 != cross-attention 8, so the ControlNet gets a frame projection) and a ControlNet."""
    torch.manual_seed(3)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=8,
            intermediate_size=16,
            num_attention_heads=2,
            num_hidden_layers=2,
            image_size=32,
            patch_size=8,
            projection_dim=12,
        )
    ).eval()
    controlnet = controlnet_from_unet(components["unet"], image_encoder, conditioning_embedding_out_channels=(16, 32))
    torch.manual_seed(4)
    for block in [
        *controlnet.controlnet_down_blocks,
        controlnet.controlnet_mid_block,
    ]:  # zero convs start at 0: make them act
        torch.nn.init.normal_(block.weight, std=0.5)
    feature_extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return dict(controlnet=controlnet.eval(), image_encoder=image_encoder, feature_extractor=feature_extractor)


def tiny_sosgen(
    components: dict | None = None, spectrogram_params: SpectrogramParams = SPECTROGRAM, **config
) -> SoSgenPipeline:
    """A SoSgenPipeline of ``components`` (default: :func:`tiny_components`); ``config``: window and Griffin-Lim options."""
    pipe = SoSgenPipeline(
        **(components or tiny_components()), spectrogram_params=spectrogram_params, **{**WINDOWS, **config}
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sosgen_controlnet(
    components: dict | None = None, spectrogram_params: SpectrogramParams = SPECTROGRAM, **config
) -> SoSgenControlNetPipeline:
    """A SoSgenControlNetPipeline over ``components`` with :func:`tiny_frame_components`; ``config`` as in :func:`tiny_sosgen`, and ``image_only``."""
    components = components or tiny_components()
    pipe = SoSgenControlNetPipeline(
        **components,
        **tiny_frame_components(components),
        spectrogram_params=spectrogram_params,
        **{**WINDOWS, **config},
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


__all__ = [
    "SPECTROGRAM",
    "STEPS",
    "WINDOWS",
    "tiny_components",
    "tiny_frame_components",
    "tiny_sosgen",
    "tiny_sosgen_controlnet",
    "tiny_tokenizer",
]
