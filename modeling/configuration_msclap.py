"""Configuration of Microsoft CLAP (Elizalde et al., ICASSP 2023; `msclap`'s "2022" model), the paper's Table 2
audio-text baseline."""

import math

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

# The versions whose checkpoints load. msclap's "2023" model (HTSAT + GPT-2, arXiv 2309.05767) came out after
# the paper and is not implemented here.
MSCLAP_VERSIONS = ("2022",)


@strict
class MSClapConfig(PreTrainedConfig):
    r"""
    Configuration of [`MSClapModel`], msclap's `CLAP` module (`msclap/models/clap.py`) with the settings of
    its `configs/config_2022.yml`: a Cnn14 audio encoder (PANNs) on 64-band log-mel spectrograms of 44.1 kHz audio
    and a BERT text encoder, each followed by msclap's `Projection` into a shared 1024-d space.

    Args:
        version (`str`, *optional*, defaults to `"2022"`): the msclap model; only `"2022"` (the paper's reference,
            "CLAP: learning audio concepts from natural language supervision") is implemented.
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            The text encoder (`AutoModel.from_config`). Defaults to `BertConfig()`, whose defaults are
            `bert-base-uncased`'s architecture; its weights come from the msclap checkpoint.
        sampling_rate (`int`, *optional*, defaults to 44100), window_size (`int`, *optional*, defaults to 1024),
        hop_size (`int`, *optional*, defaults to 320), mel_bins (`int`, *optional*, defaults to 64),
        fmin (`float`, *optional*, defaults to 50), fmax (`float`, *optional*, defaults to 14000):
            Cnn14's front end (torchlibrosa's Spectrogram and LogmelFilterBank: Hann window, centred with
            reflect padding, power 2, Slaney mel filters, 10 log10 with amin 1e-10, no top_db).
        audio_channels (`list[int]`, *optional*, defaults to `[64, 128, 256, 512, 1024, 2048]`):
            Cnn14's six conv block widths (other values only for tiny test models).
        audio_embed_dim (`int`, *optional*, defaults to 2048): Cnn14's `fc1` output (`out_emb`).
        text_embed_dim (`int`, *optional*): the text encoder's output width (`transformer_embed_dim`); defaults
            to `text_config.hidden_size`.
        projection_dim (`int`, *optional*, defaults to 1024): the shared space (`d_proj`).
        projection_dropout (`float`, *optional*, defaults to 0.5): dropout inside msclap's `Projection`.
        logit_scale_init_value (`float`, *optional*, defaults to ln(1/0.07)): msclap's initial `logit_scale`.
    """

    model_type = "sos_msclap"
    sub_configs_defaults = {"text_config": SubConfigSpec(AutoConfig, model_type="bert")}

    version: str = "2022"
    text_config: dict | PreTrainedConfig | None = None
    sampling_rate: int = 44100
    window_size: int = 1024
    hop_size: int = 320
    mel_bins: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0
    audio_channels: list[int] | tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    audio_embed_dim: int = 2048
    text_embed_dim: int | None = None
    projection_dim: int = 1024
    projection_dropout: float = 0.5
    logit_scale_init_value: float = math.log(1 / 0.07)

    @property
    def text_width(self) -> int:
        return self.text_embed_dim if self.text_embed_dim is not None else self.text_config.hidden_size

    def validate_msclap_settings(self):
        """Checked at construction: values that would fail later, with the argument named."""
        if self.version not in MSCLAP_VERSIONS:
            raise ValueError(
                f"msclap version {self.version!r} is not implemented: choose one of {MSCLAP_VERSIONS} (the 2023 "
                "model, HTSAT + GPT-2, appeared after the paper)"
            )
        if self.text_config.model_type != "bert":
            raise ValueError(f"the 2022 model's text encoder is BERT, got a {self.text_config.model_type!r} config")
        if len(self.audio_channels) != 6 or min(self.audio_channels) < 1:
            raise ValueError(f"audio_channels must be six positive widths, got {list(self.audio_channels)}")
        if not 0 <= self.fmin < self.fmax <= self.sampling_rate / 2:
            raise ValueError(
                f"need 0 <= fmin < fmax <= sampling_rate / 2, got fmin={self.fmin}, fmax={self.fmax}, "
                f"sampling_rate={self.sampling_rate}"
            )


__all__ = ["MSCLAP_VERSIONS", "MSClapConfig"]
