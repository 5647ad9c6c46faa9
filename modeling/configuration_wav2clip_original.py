"""Configuration of the original Wav2CLIP (Wu et al., ICASSP 2022) as the paper's Table 2 baseline."""

import math
from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import CLIPConfig, PreTrainedConfig

from .configuration_wav2clip_baseline import check_resnet_stages


@strict
class Wav2CLIPOriginalConfig(PreTrainedConfig):
    r"""
    Configuration of [`Wav2CLIPOriginalModel`]: Wav2CLIP's own audio encoder, which loads its released checkpoint
    (`Wav2CLIPOriginalModel.from_original_checkpoint`), against a frozen CLIP.

    The defaults are the released model's (`wav2clip` 0.1.0): a ResNet-18 on the log power spectrogram of 16 kHz
    mono audio (`torchaudio.transforms.Spectrogram(n_fft=512, hop_length=353)`, periodic Hann window, centred),
    average-pooled to 512, then the "audio transform" MLP 512 -> 512 -> 512 (Linear, ReLU, Dropout, Linear) into
    CLIP's image space, where Wav2CLIP was distilled against the mean CLIP embedding of a clip's video frames.

    Args:
        clip_config (`dict` or `CLIPConfig`, *optional*):
            The CLIP whose image space the audio lives in (video: the mean of the frames' CLIP image embeddings;
            text: CLIP's text embedding). Its `projection_dim` must equal `transform_units[-1]` (512 for
            the released checkpoint, as CLIP ViT-B/32).
        spectrogram_n_fft (`int`, *optional*, defaults to 512), spectrogram_hop_length (`int`, *optional*,
            defaults to 353): the STFT (the window is `spectrogram_n_fft` long).
        spectrogram_standardization (`"per_clip"` or `"batch"`, *optional*, defaults to `"per_clip"`):
            How the log spectrogram is standardised. `"batch"` is the original code: one mean and one (unbiased)
            standard deviation over the whole batch tensor, so a clip's embedding depends on the other clips of
            its batch. `"per_clip"` uses each clip's own mean and standard deviation, which equals the original
            for a batch of one (`wav2clip.embed_audio` of a single clip): an evaluation then gives every story
            the same embedding whatever the batch size and order, which Table 2 and its embedding cache need.
        audio_channels (`list[int]`, *optional*, defaults to `[64, 128, 256, 512]`),
        audio_blocks (`list[int]`, *optional*, defaults to `[2, 2, 2, 2]`):
            ResNet stage widths and basic blocks per stage (ResNet-18; other values only for tiny test models,
            the released checkpoint needs the defaults).
        transform_units (`list[int]`, *optional*, defaults to `[512, 512, 512]`):
            Widths of the MLP ("audio transform"); the first must equal `audio_channels[-1]`.
        transform_dropout (`float`, *optional*, defaults to 0.1): dropout of the MLP (training only).
        freeze_clip (`bool`, *optional*, defaults to `True`):
            Keep CLIP frozen, as Wav2CLIP's distillation did.
        logit_scale_init_value (`float`, *optional*, defaults to ln(1/0.07)):
            Initial log logit scale of the contrastive loss (Wav2CLIP's `CLIPLoss1D`); clamped at `logit_scale_max`.
        logit_scale_max (`float`, *optional*, defaults to ln(100)).
        initializer_range (`float`, *optional*, defaults to 0.02): of a new MLP.
    """

    model_type = "sos_wav2clip_original"
    sub_configs_defaults = {"clip_config": CLIPConfig}

    clip_config: dict | CLIPConfig | None = None
    spectrogram_n_fft: int = 512
    spectrogram_hop_length: int = 353
    spectrogram_standardization: Literal["per_clip", "batch"] = "per_clip"
    audio_channels: list[int] | tuple[int, ...] = (64, 128, 256, 512)
    audio_blocks: list[int] | tuple[int, ...] = (2, 2, 2, 2)
    transform_units: list[int] | tuple[int, ...] = (512, 512, 512)
    transform_dropout: float = 0.1
    freeze_clip: bool = True
    logit_scale_init_value: float = math.log(1 / 0.07)
    logit_scale_max: float = math.log(100.0)
    initializer_range: float = 0.02

    @property
    def projection_dim(self) -> int:
        return self.clip_config.projection_dim

    def validate_wav2clip_settings(self):
        """Checked at construction: sizes that would fail later, with the argument named."""
        check_resnet_stages(self.audio_channels, self.audio_blocks)
        if len(self.transform_units) < 2 or self.transform_units[0] != self.audio_channels[-1]:
            raise ValueError(
                f"transform_units must have at least two widths, the first the ResNet's output "
                f"({self.audio_channels[-1]}), got {list(self.transform_units)}"
            )
        if self.transform_units[-1] != self.projection_dim:
            raise ValueError(
                f"the audio embedding ({self.transform_units[-1]}, transform_units[-1]) must have CLIP's projection "
                f"dimension ({self.projection_dim})"
            )
        if self.spectrogram_n_fft < 2 or self.spectrogram_hop_length < 1:
            raise ValueError(
                f"spectrogram_n_fft must be >= 2 and spectrogram_hop_length >= 1, got {self.spectrogram_n_fft} and "
                f"{self.spectrogram_hop_length}"
            )


__all__ = ["Wav2CLIPOriginalConfig"]
