"""Configuration of a Wav2CLIP-style audio-video baseline on the AST fbank (a variant of Table 2's Wav2CLIP)."""

import math

from huggingface_hub.dataclasses import strict
from transformers import CLIPConfig, PreTrainedConfig


@strict
class Wav2CLIPBaselineConfig(PreTrainedConfig):
    r"""
    Configuration of [`Wav2CLIPBaselineModel`]: a ResNet audio encoder trained into the CLIP image
    embedding space (Wav2CLIP, Wu et al. 2022), against a frozen CLIP.

    Differences from the original Wav2CLIP, on purpose:
    - the audio input is the same AST fbank (1024 x 128) as `SoSRetrievalModel`'s, so both models take
      the `input_values` of `SoSRetrievalProcessor` (Wav2CLIP used a linear STFT of 16 kHz audio);
    - each spectrogram is standardised with its own mean and standard deviation. The original
      standardised with one mean/std over the whole batch tensor, so an embedding depended on the
      rest of the batch.
    The released Wav2CLIP checkpoint does not fit this input and is not loaded; the audio encoder starts
    from random weights. The paper's baseline, fine-tuned from that checkpoint, is `Wav2CLIPOriginalModel`
    (kind `wav2clip_original`); this model (kind `wav2clip`) is a variant on the SoS model's own audio input.

    Args:
        clip_config (`dict` or `CLIPConfig`, *optional*):
            The CLIP model whose image space the audio is mapped into (video: the normalised mean of
            the normalised frame embeddings; text: CLIP's text embedding).
        audio_channels (`list[int]`, *optional*, defaults to `[64, 128, 256, 512]`):
            Widths of the ResNet stages (ResNet-18: 64, 128, 256, 512).
        audio_blocks (`list[int]`, *optional*, defaults to `[2, 2, 2, 2]`):
            Basic blocks per stage (ResNet-18: 2, 2, 2, 2).
        freeze_clip (`bool`, *optional*, defaults to `True`):
            Keep CLIP frozen, as in Wav2CLIP's distillation; only the audio side and the logit scale train.
        logit_scale_init_value (`float`, *optional*, defaults to ln(1/0.07)):
            Initial log logit scale (CLIP's); clamped at `logit_scale_max`.
        logit_scale_max (`float`, *optional*, defaults to ln(100)).
        initializer_range (`float`, *optional*, defaults to 0.02): of the MLP head.
    """

    model_type = "sos_wav2clip_baseline"
    sub_configs_defaults = {"clip_config": CLIPConfig}

    clip_config: dict | CLIPConfig | None = None
    audio_channels: list[int] | tuple[int, ...] = (64, 128, 256, 512)
    audio_blocks: list[int] | tuple[int, ...] = (2, 2, 2, 2)
    freeze_clip: bool = True
    logit_scale_init_value: float = math.log(1 / 0.07)
    logit_scale_max: float = math.log(100.0)
    initializer_range: float = 0.02

    @property
    def projection_dim(self) -> int:
        return self.clip_config.projection_dim

    def validate_audio_encoder(self):
        check_resnet_stages(self.audio_channels, self.audio_blocks)


def check_resnet_stages(audio_channels, audio_blocks) -> None:
    """The ResNet stages of both Wav2CLIP configurations: as many widths as block counts, all positive."""
    if len(audio_channels) == 0 or len(audio_channels) != len(audio_blocks):
        raise ValueError(
            "audio_channels and audio_blocks must be non-empty and of equal length, got "
            f"{list(audio_channels)} and {list(audio_blocks)}"
        )
    if min(audio_channels) < 1 or min(audio_blocks) < 1:
        raise ValueError("audio_channels and audio_blocks must be positive")


__all__ = ["Wav2CLIPBaselineConfig"]
