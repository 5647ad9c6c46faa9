"""Tiny random-initialised SoSgen pipelines, built in code with no download.

For the tests: every code path of the real pipelines runs, at 8 kHz with 32 mel bins and 4/8-channel
networks, in seconds on a 2-core CPU. The outputs are noise shaped by random weights: they show the
pipeline works, not what a trained model generates.

For the offline demo: `small_sosgen_components`, a pipeline small enough to train in a minute that can
learn, because its fixed `identity_vae` passes the spectrogram to the UNet and back unchanged (the tiny
pipelines' random autoencoder loses it), at 16 kHz with mel bins up to 8 kHz (`SMALL_SPECTROGRAM`).
"""

from __future__ import annotations

import math
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
# Stable Diffusion's noise schedule, which Riffusion keeps.
BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)

# The offline demo's generator (`small_sosgen_components`): 16 kHz with mel bins up to 8 kHz (VGGish, which judges the
# output, hears 125-7500 Hz), and 80 ms columns, so that one 128-column window (10.24 s) holds a whole demo slice and
# the story text it is trained on describes all of the window. On the sample clips' held-out slices a round trip
# through these images (16 Griffin-Lim iterations) stays as close to the real slices as at 10 ms columns (docs/demo.md).
SMALL_SPECTROGRAM = SpectrogramParams(
    sample_rate=16000,
    step_size_ms=80,
    window_duration_ms=160,
    padded_duration_ms=160,
    num_frequencies=32,
    min_frequency=0,
    max_frequency=8000,
    num_griffin_lim_iters=16,
)
SMALL_WINDOWS = dict(window_width=128, window_overlap=16)


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
    schedulers = {
        "ddim": lambda: DDIMScheduler(clip_sample=False, set_alpha_to_one=False, **BETAS),
        "dpm": lambda: DPMSolverMultistepScheduler(**BETAS),
        "pndm": lambda: PNDMScheduler(skip_prk_steps=True, set_alpha_to_one=False, **BETAS),
    }
    return dict(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tiny_tokenizer(),
        unet=unet.eval(),
        scheduler=schedulers[scheduler](),
    )


def identity_vae(shift: float = 0.25, scale: float = 0.4) -> AutoencoderKL:
    """An AutoencoderKL whose weights are set, not learnt, so that it passes a spectrogram image through: the latent
    is the image's grey level (in the pipelines' [-1, 1] range) minus ``shift``, one channel at full resolution; the
    decoder returns latent + ``shift`` on all three channels; ``scaling_factor`` (1 / ``scale``) gives the UNet latents
    of about unit spread when ``shift`` and ``scale`` are the images' mean and spread.

    A random frozen autoencoder loses the image (the tiny one's round trip of the sample clips' spectrograms is
    further from them than their mean image), so nothing a UNet learns over it can reach the sound.

    How: every convolution inside the blocks is zero, so each ResNet block passes its input on. The only
    nonlinearities left are the closing GroupNorm and SiLU. The input convolution writes ``u`` and ``-u`` next to two
    constant channels ``K`` and ``-K``; over the four channels the GroupNorm's mean is 0 and its spread
    sigma = sqrt((K^2 + mean(u^2)) / 2), constant to a relative 1e-5 for |u| < 2 at K = 100. Its affine map sends the
    two signal channels to ``+-5 u / UMAX + BIAS``, where SiLU is the identity to within
    (BIAS + 5) * exp(-(BIAS - 5)) (about 1e-5). The output convolution takes half their difference, which gives back
    ``u``. The encoder's log-variance is -30, so a sampled latent is the mean.
    """
    big, bias, u_max = 100.0, 20.0, 4.0
    gain = 5.0 * big / (math.sqrt(2.0) * u_max)
    sigma = big / math.sqrt(2.0)
    vae = AutoencoderKL(
        block_out_channels=[4],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D"],
        latent_channels=1,
        norm_num_groups=1,
        sample_size=32,
        mid_block_add_attention=False,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=1.0 / scale,
    )
    with torch.no_grad():
        for parameter in vae.parameters():
            parameter.zero_()
        for coder in (vae.encoder, vae.decoder):
            for block in [*getattr(coder, "down_blocks", []), *getattr(coder, "up_blocks", []), coder.mid_block]:
                for resnet in block.resnets:
                    resnet.norm1.weight.fill_(1.0)
                    resnet.norm2.weight.fill_(1.0)
            coder.conv_norm_out.weight.copy_(torch.tensor([gain, gain, 0.0, 0.0]))
            coder.conv_norm_out.bias.copy_(torch.tensor([bias, bias, 0.0, 0.0]))
        encoder, decoder = vae.encoder, vae.decoder
        encoder.conv_in.weight[0, :, 1, 1] = 1.0 / 3.0  # the grey level
        encoder.conv_in.weight[1, :, 1, 1] = -1.0 / 3.0
        encoder.conv_in.bias.copy_(torch.tensor([-shift, shift, big, -big]))
        encoder.conv_out.weight[0, 0, 1, 1] = sigma / (2 * gain)
        encoder.conv_out.weight[0, 1, 1, 1] = -sigma / (2 * gain)
        encoder.conv_out.bias[1] = -30.0  # log-variance
        decoder.conv_in.weight[0, 0, 1, 1] = 1.0
        decoder.conv_in.weight[1, 0, 1, 1] = -1.0
        decoder.conv_in.bias.copy_(torch.tensor([0.0, 0.0, big, -big]))
        for channel in range(3):
            decoder.conv_out.weight[channel, 0, 1, 1] = sigma / (2 * gain)
            decoder.conv_out.weight[channel, 1, 1, 1] = -sigma / (2 * gain)
            decoder.conv_out.bias[channel] = shift
    return vae.eval()


def small_sosgen_components(
    tokenizer: CLIPTokenizer, width: int = 32, channels: tuple[int, ...] = (16, 32, 64), shift: float = 0.25,
    scale: float = 0.4, seed: int = 0, prediction_type: str = "v_prediction",
) -> dict:  # fmt: skip
    """Random components of a SoSgen small enough to train on 2 CPU cores in a minute and able to learn: the
    :func:`identity_vae` (so the UNet works on the spectrogram itself, 32 mel bins by the window's columns), a
    one-channel UNet of ``channels`` with cross-attention at its lowest resolution, and a ``width``-wide 2-layer CLIP
    text encoder over ``tokenizer`` (for example a word-level tokenizer trained on the stories)."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=channels,
        layers_per_block=1,
        sample_size=32,
        in_channels=1,
        out_channels=1,
        down_block_types=("DownBlock2D",) * (len(channels) - 1) + ("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (len(channels) - 1),
        cross_attention_dim=width,
        norm_num_groups=8,
        attention_head_dim=8,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            hidden_size=width, intermediate_size=2 * width, num_attention_heads=4, num_hidden_layers=2,
            vocab_size=len(tokenizer), max_position_embeddings=min(tokenizer.model_max_length, 77),
        )
    )  # fmt: skip
    return dict(
        vae=identity_vae(shift, scale),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=DDIMScheduler(clip_sample=False, set_alpha_to_one=False, prediction_type=prediction_type, **BETAS),
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
    stages = len(components["vae"].config.block_out_channels)  # the hint encoder downsamples as much as the VAE
    controlnet = controlnet_from_unet(
        components["unet"], image_encoder, conditioning_embedding_out_channels=(16, 32)[:stages]
    )
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
    "SMALL_SPECTROGRAM",
    "SMALL_WINDOWS",
    "SPECTROGRAM",
    "STEPS",
    "WINDOWS",
    "identity_vae",
    "small_sosgen_components",
    "tiny_components",
    "tiny_frame_components",
    "tiny_sosgen",
    "tiny_sosgen_controlnet",
    "tiny_tokenizer",
]
