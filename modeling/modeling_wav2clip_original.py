"""The original Wav2CLIP (Wu et al., ICASSP 2022) as the paper's Table 2 audio-video baseline: its own audio encoder
(ResNet-18 on a log power spectrogram of 16 kHz audio, then its MLP "audio transform"), loadable from the released
checkpoint, against a frozen CLIP, with the retrieval interface of `SoSRetrievalModel`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel, PreTrainedModel
from transformers import initialization as init

from .configuration_wav2clip_original import Wav2CLIPOriginalConfig
from .modeling_sos import (
    ClipGlobalRetrievalMixin,
    RetrievalForwardMixin,
    SoSAudioFeatures,
    SoSVideoFeatures,
    clip_frame_embeddings,
    crop_pooled_embeds,
)
from .original_checkpoints import CheckpointSource, load_exactly, read_checkpoint, split_prefix

# The released checkpoint (`wav2clip.get_model()`'s MODEL_URL); core.model_ids.WAV2CLIP_CHECKPOINT names it too (a
# saved model's remote code cannot import the package, so it is spelled out here).
WAV2CLIP_CHECKPOINT = "https://github.com/descriptinc/lyrebird-wav2clip/releases/download/v0.1.0-alpha/Wav2CLIP.pt"
# Offsets of the original's `torch.log(x + 1e-7)` and `(x - mean) / (std + 1e-9)`.
LOG_OFFSET = 1e-7
STD_OFFSET = 1e-9


class Wav2CLIPSpectrogram(nn.Module):
    """`torchaudio.transforms.Spectrogram(n_fft, hop_length)` as Wav2CLIP builds it: a periodic Hann window of
    `n_fft` samples (a buffer, as in the checkpoint), centred frames with reflect padding, one-sided power."""

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """`(batch, samples)` -> `(batch, 1, n_fft // 2 + 1, 1 + samples // hop_length)`."""
        spectrum = torch.stft(
            waveform, self.n_fft, self.hop_length, win_length=self.n_fft, window=self.window, center=True,
            pad_mode="reflect", normalized=False, onesided=True, return_complex=True,
        )  # fmt: skip
        return spectrum.abs().pow(2.0).unsqueeze(1)


class Wav2CLIPBasicBlock(nn.Module):
    """torchvision's ResNet basic block, with the original's parameter names (conv1, bn1, conv2, bn2, downsample)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + identity)


class Wav2CLIPResNet(nn.Module):
    """Wav2CLIP's `ResNet` (`wav2clip/model/resnet.py`): spectrogram, log, standardisation, ResNet, average pool.

    The parameter names are the original's, so `audio_encoder.*` of the checkpoint loads as it is."""

    def __init__(self, config: Wav2CLIPOriginalConfig):
        super().__init__()
        channels, blocks = list(config.audio_channels), list(config.audio_blocks)
        self.spectrogram = Wav2CLIPSpectrogram(config.spectrogram_n_fft, config.spectrogram_hop_length)
        self.conv1 = nn.Conv2d(1, channels[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        width = channels[0]
        for index, (out, count) in enumerate(zip(channels, blocks)):
            stride = 1 if index == 0 else 2
            stage = [Wav2CLIPBasicBlock(width, out, stride)] + [
                Wav2CLIPBasicBlock(out, out, 1) for _ in range(count - 1)
            ]
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
            width = out
        self.num_stages = len(channels)
        self.output_dim = width

    def log_spectrogram(self, waveform: torch.Tensor) -> torch.Tensor:
        """`(batch, samples)` -> the log power spectrogram `(batch, 1, frequency, time)`, not yet standardised."""
        return torch.log(self.spectrogram(waveform) + LOG_OFFSET)

    def forward(self, log_spectrogram: torch.Tensor) -> torch.Tensor:
        """A standardised log spectrogram `(batch, 1, frequency, time)` -> `(batch, output_dim)`."""
        x = self.maxpool(F.relu(self.bn1(self.conv1(log_spectrogram))))
        for index in range(self.num_stages):
            x = getattr(self, f"layer{index + 1}")(x)
        return x.mean(dim=(2, 3))


class Wav2CLIPTransform(nn.Module):
    """Wav2CLIP's `MLPLayers`: Linear, ReLU, Dropout between each pair of widths, without the last ReLU and Dropout
    (keys `sequential.0`, `sequential.3`, ... as in the checkpoint's `audio_transform.*`)."""

    def __init__(self, units: list[int], dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        for width_in, width_out in zip(units[:-1], units[1:]):
            layers += [nn.Linear(width_in, width_out), nn.ReLU(), nn.Dropout(dropout)]
        self.sequential = nn.Sequential(*layers[:-2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sequential(x)


def standardize(log_spectrogram: torch.Tensor, mode: str) -> torch.Tensor:
    """The original's `(x - mean) / (std + 1e-9)`, over the whole batch (`"batch"`) or each clip (`"per_clip"`).

    The standard deviation is the unbiased one, as `torch.std`."""
    if mode == "batch":
        return (log_spectrogram - log_spectrogram.mean()) / (log_spectrogram.std() + STD_OFFSET)
    if mode == "per_clip":
        dims = tuple(range(1, log_spectrogram.dim()))
        mean = log_spectrogram.mean(dim=dims, keepdim=True)
        return (log_spectrogram - mean) / (log_spectrogram.std(dim=dims, keepdim=True) + STD_OFFSET)
    raise ValueError(f"spectrogram standardization must be 'per_clip' or 'batch', got {mode!r}")


class Wav2CLIPOriginalModel(ClipGlobalRetrievalMixin, RetrievalForwardMixin, PreTrainedModel):
    r"""The original Wav2CLIP audio encoder mapped into the CLIP image space; video = the mean of the frames' CLIP
    image embeddings; text = CLIP's text embedding.

    Same interface as `SoSRetrievalModel` (`get_audio_features`, `get_video_features`, `get_text_features`,
    `similarity`, `forward(..., return_loss=True)`), one vector per item: the similarity is the cosine of the global
    embeddings. Inputs come from `Wav2CLIPOriginalProcessor` (16 kHz mono waveforms as `input_values`).

    Example (online):

    ```python
    >>> model = Wav2CLIPOriginalModel.from_original_checkpoint()  # Wav2CLIP.pt + openai/clip-vit-base-patch32
    >>> processor = Wav2CLIPOriginalProcessor.from_encoders()
    ```
    """

    config_class = Wav2CLIPOriginalConfig
    config: Wav2CLIPOriginalConfig
    base_model_prefix = "wav2clip"
    main_input_name = "input_values"
    input_modalities = ("audio", "image", "text")
    # The pretrained parts (the rest, the logit scale, is new): for a fine-tuning's encoder learning rate.
    encoder_parameter_prefixes = ("clip.", "audio_encoder.", "audio_transform.")

    def __init__(self, config: Wav2CLIPOriginalConfig):
        super().__init__(config)
        self.clip = CLIPModel._from_config(config.clip_config)
        self.audio_encoder = Wav2CLIPResNet(config)
        self.audio_transform = Wav2CLIPTransform(list(config.transform_units), config.transform_dropout)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        if config.freeze_clip:
            self.clip.requires_grad_(False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, nn.Conv2d):  # the original ResNet's initialisation
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, Wav2CLIPSpectrogram):
            init.copy_(module.window, torch.hann_window(module.n_fft))
        elif isinstance(module, Wav2CLIPOriginalModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)

    # ------------------------------------------------------------------ the original checkpoint

    def load_original_checkpoint(self, checkpoint: CheckpointSource = WAV2CLIP_CHECKPOINT, **read_kwargs) -> None:
        """Load Wav2CLIP's released checkpoint into the audio encoder and the audio transform.

        The format is the one `wav2clip.get_model()` reads: a flat state dict whose `audio_encoder.*` keys fill the
        ResNet (with the spectrogram's window) and `audio_transform.*` keys the MLP, both strictly; other keys (the
        distillation's `image_transform.*`) are ignored, as the original ignores them. A PyTorch Lightning file
        (`{"state_dict": ...}`, the training script's output) is unwrapped first.

        Args:
            checkpoint: a path, an ``http(s)://`` URL (default: the release) or a loaded state dict.
            read_kwargs: `sha256`, `weights_only`, `progress` of `original_checkpoints.read_checkpoint`.

        Raises:
            FileNotFoundError: no such file, or the download failed.
            ValueError: not a checkpoint, or its keys or shapes do not fit this configuration.
        """
        state = read_checkpoint(checkpoint, **read_kwargs)
        if isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        name = checkpoint if not isinstance(checkpoint, dict) else "the state dict"
        load_exactly(
            self.audio_encoder,
            split_prefix(state, "audio_encoder."),
            f"Wav2CLIP checkpoint {name!s} (audio_encoder.*)",
        )
        load_exactly(
            self.audio_transform,
            split_prefix(state, "audio_transform."),
            f"Wav2CLIP checkpoint {name!s} (audio_transform.*)",
        )

    def original_state_dict(self) -> dict[str, torch.Tensor]:
        """The audio side in the released checkpoint's format (`torch.save` it for `wav2clip`'s `ResNetExtractor`)."""
        state = {f"audio_encoder.{k}": v for k, v in self.audio_encoder.state_dict().items()}
        state.update({f"audio_transform.{k}": v for k, v in self.audio_transform.state_dict().items()})
        return state

    @classmethod
    def from_original_checkpoint(
        cls,
        checkpoint: CheckpointSource = WAV2CLIP_CHECKPOINT,
        clip: str = "openai/clip-vit-base-patch32",  # core.model_ids.CLIP
        *,
        weights_only: bool = True,
        **config_kwargs: object,
    ) -> Wav2CLIPOriginalModel:
        """The paper's baseline before fine-tuning: Wav2CLIP's released audio encoder and a pretrained CLIP.

        Args:
            checkpoint: Wav2CLIP's checkpoint (path, URL or state dict); see `load_original_checkpoint`.
            clip: the CLIP checkpoint (Hub id or folder). Wav2CLIP's paper names no variant; ViT-B/32 is the
                usual reading, and its 512-d image space is the size of Wav2CLIP's embedding.
            weights_only: `False` only for a trusted file whose pickle holds more than tensors (see
                `original_checkpoints.read_checkpoint`).
            config_kwargs: other `Wav2CLIPOriginalConfig` settings (for example `spectrogram_standardization`).
        """
        clip_model = CLIPModel.from_pretrained(clip)
        model = cls(Wav2CLIPOriginalConfig(clip_config=clip_model.config, **config_kwargs))
        model.clip.load_state_dict(clip_model.state_dict())
        model.load_original_checkpoint(checkpoint, weights_only=weights_only)
        return model

    # ------------------------------------------------------------------ retrieval interface

    def embed_audio(self, input_values: torch.Tensor, standardization: str | None = None) -> torch.Tensor:
        """`(batch, samples)` 16 kHz waveforms -> Wav2CLIP's embeddings `(batch, 512)`, not normalised, as
        `wav2clip.embed_audio` gives them (with `standardization="batch"`, the original's).

        `standardization` defaults to `config.spectrogram_standardization`."""
        if input_values.dim() != 2:
            raise ValueError(f"input_values must have shape (batch, samples), got {tuple(input_values.shape)}")
        log_spectrogram = self.audio_encoder.log_spectrogram(input_values)
        mode = standardization or self.config.spectrogram_standardization
        return self.audio_transform(self.audio_encoder(standardize(log_spectrogram, mode)))

    def get_audio_features(self, input_values: torch.Tensor) -> SoSAudioFeatures:
        """`(batch, samples)` or `(batch, crops, samples)` 16 kHz waveforms -> one normalised vector per story
        (with several crops, the normalised mean of the crops' normalised embeddings)."""
        return SoSAudioFeatures(audio_embeds=crop_pooled_embeds(input_values, "samples", self.embed_audio))

    def get_video_features(
        self, pixel_values: torch.Tensor, frame_mask: torch.Tensor | None = None
    ) -> SoSVideoFeatures:
        """The video: the mean of the valid frames' CLIP image embeddings, normalised, as Wav2CLIP's distillation
        target (`torch.mean(images, 1)` over a clip's frame embeddings). `frame_embeds` are the frames' own,
        normalised."""
        frames, frame_mask = clip_frame_embeddings(self.clip, pixel_values, frame_mask)
        weights = frame_mask.to(frames.dtype).unsqueeze(-1)
        video = (frames * weights).sum(dim=1) / weights.sum(dim=1)
        return SoSVideoFeatures(
            video_embeds=F.normalize(video, dim=-1), frame_embeds=F.normalize(frames, dim=-1), frame_mask=frame_mask
        )


__all__ = [
    "WAV2CLIP_CHECKPOINT",
    "Wav2CLIPBasicBlock",
    "Wav2CLIPOriginalModel",
    "Wav2CLIPResNet",
    "Wav2CLIPSpectrogram",
    "Wav2CLIPTransform",
    "standardize",
]
