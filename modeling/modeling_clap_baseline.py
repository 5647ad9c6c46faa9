"""CLAP baseline for audio-text retrieval (paper Table 2): `transformers.ClapModel` with the retrieval
interface of `SoSRetrievalModel`, and a processor that crops the audio the same way as
`SoSRetrievalProcessor` (at CLAP's 48 kHz and 10 s window)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import BatchFeature, ClapModel, ClapProcessor

from .modeling_sos import SoSAudioFeatures, SoSTextFeatures, global_similarity
from .processing_sos import AudioCrop, _is_single_audio, audio_windows


class ClapRetrievalBaseline(ClapModel):
    r"""`ClapModel` (e.g. `laion/clap-htsat-unfused`) with the SoS retrieval interface, for audio-text only.

    Loading, saving, `push_to_hub` and training (`forward(..., return_loss=True)`, CLAP's own loss with
    its two logit scales) are `ClapModel`'s. What changes: `get_audio_features` / `get_text_features`
    return `SoSAudioFeatures` / `SoSTextFeatures` (normalised embeddings), and `similarity` gives the
    cosine matrix, so the SoS evaluation runs on it unchanged. Inputs come from `ClapBaselineProcessor`.
    """

    def get_audio_features(
        self, input_features: torch.Tensor, is_longer: torch.Tensor | None = None, **kwargs: Any
    ) -> SoSAudioFeatures:
        """`(batch, 1, time, mel)`, or `(batch, crops, 1, time, mel)` with several crops: one normalised
        vector per story (the normalised mean of its crops' embeddings)."""
        if input_features.dim() == 4:
            input_features = input_features.unsqueeze(1)
            is_longer = None if is_longer is None else is_longer.unsqueeze(1)
        if input_features.dim() != 5:
            raise ValueError(
                f"input_features must have shape (batch, 1, time, mel) or (batch, crops, 1, time, mel), got {tuple(input_features.shape)}"
            )
        batch, crops = input_features.shape[:2]
        flat_longer = None if is_longer is None else is_longer.reshape(batch * crops, 1)
        embeds = (
            super()
            .get_audio_features(input_features=input_features.flatten(0, 1), is_longer=flat_longer, **kwargs)
            .pooler_output
        )
        return SoSAudioFeatures(audio_embeds=F.normalize(embeds.view(batch, crops, -1).mean(dim=1), dim=-1))

    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> SoSTextFeatures:
        """CLAP's normalised text embedding."""
        embeds = super().get_text_features(input_ids=input_ids, attention_mask=attention_mask, **kwargs).pooler_output
        return SoSTextFeatures(text_embeds=embeds, attention_mask=attention_mask)

    def scale(self) -> torch.Tensor:
        """The logit scale of the SoS training loss: CLAP's audio-side scale, exp(`logit_scale_a`).

        CLAP's own loss scales audio-to-text and text-to-audio logits by two separate scales; the SoS
        training loop uses one symmetric InfoNCE for every model, so it uses this one for both directions."""
        return self.logit_scale_a.exp()

    def similarity(
        self, audio_features: SoSAudioFeatures, other_features: SoSTextFeatures, **_: object
    ) -> torch.Tensor:
        """Cosine similarity, `(num_audio, num_text)` (block options are accepted and unused)."""
        return global_similarity(audio_features, other_features, audio_text_model="CLAP")


class ClapBaselineProcessor(ClapProcessor):
    r"""`ClapProcessor` with SoS's audio windows and text length.

    Args:
        feature_extractor (`ClapFeatureExtractor`), tokenizer: as `ClapProcessor`.
        max_text_length (`int`, *optional*, defaults to 77): LAION-CLAP's text length (and CLIP's).
        audio_window_seconds (`float`, *optional*, defaults to 10.0): CLAP's input window.
    """

    def __init__(
        self, feature_extractor=None, tokenizer=None, max_text_length: int = 77, audio_window_seconds: float = 10.0
    ):
        super().__init__(feature_extractor, tokenizer)
        self.max_text_length = max_text_length
        self.audio_window_seconds = audio_window_seconds

    def __call__(
        self,
        text: str | list[str] | None = None,
        audio: Any = None,
        sampling_rate: int | None = None,
        *,
        audio_crop: AudioCrop = "energetic",
        audio_crops: int = 1,
        generator: torch.Generator | None = None,
        return_tensors: str = "pt",
    ) -> BatchFeature:
        """As `SoSRetrievalProcessor.__call__` for text and audio: `input_ids`, `attention_mask`,
        `input_features` `(batch, 1, time, mel)` (or `(batch, crops, 1, time, mel)`) and `is_longer`."""
        if text is None and audio is None:
            raise ValueError("give text, audio, or both")
        data: dict[str, Any] = {}
        sizes = {}
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            tokens = self.tokenizer(
                texts, padding="max_length", truncation=True, max_length=self.max_text_length, return_tensors="np"
            )
            data.update(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
            sizes["text"] = len(texts)
        if audio is not None:
            clips = [audio] if _is_single_audio(audio) else list(audio)
            rate = self.feature_extractor.sampling_rate
            window = int(round(self.audio_window_seconds * rate))
            windows = []
            for clip in clips:
                wave, starts = audio_windows(
                    clip, sampling_rate, target_sampling_rate=rate, window_seconds=self.audio_window_seconds,
                    audio_crop=audio_crop, audio_crops=audio_crops, generator=generator,
                )  # fmt: skip
                windows.extend(wave[s : s + window] for s in starts)
            # Windows are at most CLAP's length, so "rand_trunc" never cuts; it also avoids "fusion"'s
            # random `is_longer` flag for batches without long clips.
            features = self.feature_extractor(
                windows, sampling_rate=rate, truncation="rand_trunc", return_tensors="np"
            )
            input_features, is_longer = np.asarray(features["input_features"]), np.asarray(features["is_longer"])
            if audio_crops > 1:
                input_features = input_features.reshape(len(clips), audio_crops, *input_features.shape[1:])
                is_longer = is_longer.reshape(len(clips), audio_crops, 1)
            data.update(input_features=input_features, is_longer=is_longer)
            sizes["audio"] = len(clips)
        if len(set(sizes.values())) > 1:
            raise ValueError(f"text and audio must describe the same stories; got batch sizes {sizes}")
        return BatchFeature(data, tensor_type=return_tensors)


__all__ = ["ClapBaselineProcessor", "ClapRetrievalBaseline"]
