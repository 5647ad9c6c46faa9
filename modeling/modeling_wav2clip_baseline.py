"""Wav2CLIP-style baseline for audio-video retrieval (paper Table 2): a ResNet audio encoder trained
into the (frozen) CLIP image embedding space, with the retrieval interface of `SoSRetrievalModel`."""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel, PreTrainedModel
from transformers import initialization as init

from .configuration_wav2clip_baseline import Wav2CLIPBaselineConfig
from .modeling_sos import (
    ClipGlobalRetrievalMixin,
    RetrievalForwardMixin,
    SoSAudioFeatures,
    SoSVideoFeatures,
    clip_frame_embeddings,
    crop_pooled_embeds,
    masked_mean_pool,
)


class AudioResNetBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with batch norm and a (projected) shortcut.

    `modeling_wav2clip_original.Wav2CLIPBasicBlock` is the same block under the released checkpoint's parameter
    names (`downsample`, not `shortcut`); each keeps its names so that its saved weights load."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class AudioResNet(nn.Module):
    """Wav2CLIP's audio encoder layout (ResNet-18 by default) on a one-channel spectrogram, average-pooled."""

    def __init__(self, channels: list[int], blocks: list[int]):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages, width = [], channels[0]
        for index, (out, count) in enumerate(zip(channels, blocks)):
            stride = 1 if index == 0 else 2
            stage = [AudioResNetBlock(width, out, stride)] + [AudioResNetBlock(out, out, 1) for _ in range(count - 1)]
            stages.append(nn.Sequential(*stage))
            width = out
        self.stages = nn.Sequential(*stages)
        self.output_dim = width

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """`(batch, time, frequency)` -> `(batch, channels[-1])`."""
        return self.stages(self.stem(spectrogram.unsqueeze(1))).mean(dim=(2, 3))


class Wav2CLIPBaselineModel(ClipGlobalRetrievalMixin, RetrievalForwardMixin, PreTrainedModel):
    r"""Audio mapped into the CLIP image space; video = mean of the CLIP frame embeddings; text = CLIP text.

    Same interface as `SoSRetrievalModel` (`get_audio_features`, `get_video_features`,
    `get_text_features`, `similarity`, `forward(..., return_loss=True)`), with one vector per item:
    the similarity is the cosine of the global embeddings. Inputs come from `SoSRetrievalProcessor`.
    """

    config_class = Wav2CLIPBaselineConfig
    config: Wav2CLIPBaselineConfig
    base_model_prefix = "wav2clip"
    main_input_name = "input_values"
    input_modalities = ("audio", "image", "text")

    def __init__(self, config: Wav2CLIPBaselineConfig):
        super().__init__(config)
        self.clip = CLIPModel._from_config(config.clip_config)
        self.audio_encoder = AudioResNet(list(config.audio_channels), list(config.audio_blocks))
        dim = config.projection_dim
        # Wav2CLIP's "transform" head: a 3-layer MLP into the CLIP space.
        self.audio_projection = nn.Sequential(
            nn.Linear(self.audio_encoder.output_dim, dim),
            nn.ReLU(),
            nn.Linear(dim, dim),
            nn.ReLU(),
            nn.Linear(dim, dim),
        )
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        if config.freeze_clip:
            self.clip.requires_grad_(False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, nn.Conv2d):  # ResNet's initialisation
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def get_audio_features(self, input_values: torch.Tensor) -> SoSAudioFeatures:
        """`(batch, time, mel)` or `(batch, crops, time, mel)` fbank -> one normalised vector per story.

        Each spectrogram is standardised by its own mean and standard deviation (not the batch's).
        """

        def embed(spectrograms: torch.Tensor) -> torch.Tensor:
            mean = spectrograms.mean(dim=(1, 2), keepdim=True)
            std = spectrograms.std(dim=(1, 2), keepdim=True).clamp_min(1e-5)
            return self.audio_projection(self.audio_encoder((spectrograms - mean) / std))

        return SoSAudioFeatures(audio_embeds=crop_pooled_embeds(input_values, "time, mel", embed))

    def get_video_features(
        self, pixel_values: torch.Tensor, frame_mask: torch.Tensor | None = None
    ) -> SoSVideoFeatures:
        """CLIP image embedding of every frame, normalised; the video is their masked mean, normalised."""
        frames, frame_mask = clip_frame_embeddings(self.clip, pixel_values, frame_mask)
        frames = F.normalize(frames, dim=-1)
        return SoSVideoFeatures(
            video_embeds=masked_mean_pool(frames, frame_mask), frame_embeds=frames, frame_mask=frame_mask
        )

    @classmethod
    def from_encoders(
        cls, clip: str = "openai/clip-vit-base-patch32", **config_kwargs: object
    ) -> "Wav2CLIPBaselineModel":
        """The baseline around a pretrained CLIP (Hub id or folder); the audio encoder is new."""
        clip_model = CLIPModel.from_pretrained(clip)
        model = cls(Wav2CLIPBaselineConfig(clip_config=clip_model.config, **config_kwargs))
        model.clip.load_state_dict(clip_model.state_dict())
        return model


__all__ = ["AudioResNet", "Wav2CLIPBaselineModel"]
