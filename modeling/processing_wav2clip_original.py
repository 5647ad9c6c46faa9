"""Wav2CLIPOriginalProcessor: story text, frames and audio into the inputs of `Wav2CLIPOriginalModel`."""

from __future__ import annotations

from typing import Any

from transformers import CLIPImageProcessor, CLIPTokenizer

from sound_of_story.audio import ResamplingMethod

from .feature_extraction_waveform import WaveformWindowFeatureExtractor
from .processing_sos import SoSRetrievalProcessor

WAV2CLIP_SAMPLING_RATE = 16_000
# Wav2CLIP was distilled on 10 s VGGSound clips (`pre_training/dataset.py`, duration=10).
WAV2CLIP_WINDOW_SECONDS = 10.0


class Wav2CLIPOriginalProcessor(SoSRetrievalProcessor):
    r"""The SoS protocol (40 frames per story, 77 CLIP tokens, one audio window per story: the most energetic one
    for evaluation, a random one for training) with Wav2CLIP's audio input: a 10 s mono waveform at 16 kHz
    (`input_values` `(batch, 160000)`), from which the model computes its own spectrogram.

    Wav2CLIP read its audio with `librosa.load(sr=16000)` (soxr); stories are resampled here with torchaudio's
    Kaiser sinc (`audio_resampler`), the SoS processor's. A story shorter than the window is repeated to fill it.

    Args:
        image_processor (`CLIPImageProcessor`), tokenizer (`CLIPTokenizer`): CLIP's, for frames and text.
        feature_extractor (`WaveformWindowFeatureExtractor`): the window length and rate (16 kHz, 10 s).
        num_frames (`int`, *optional*, defaults to 40), max_text_length (`int`, *optional*, defaults to 77):
            as `SoSRetrievalProcessor`.
    """

    # Saved without remote code: the package (installed) registers it with AutoProcessor.
    _auto_class = None
    audio_resampler: ResamplingMethod = "torchaudio"

    def __init__(
        self,
        image_processor=None,
        feature_extractor=None,
        tokenizer=None,
        num_frames: int = 40,
        max_text_length: int = 77,
    ):
        if not isinstance(feature_extractor, WaveformWindowFeatureExtractor):
            raise ValueError(
                f"feature_extractor must be a WaveformWindowFeatureExtractor, got {type(feature_extractor).__name__}"
            )
        super().__init__(
            image_processor, feature_extractor, tokenizer, num_frames=num_frames, max_text_length=max_text_length,
            audio_window_seconds=feature_extractor.window_seconds,
        )  # fmt: skip

    @classmethod
    def from_encoders(
        cls,
        clip: str = "openai/clip-vit-base-patch32",
        **kwargs: Any,  # core.model_ids.CLIP
    ) -> Wav2CLIPOriginalProcessor:
        """The processor of `Wav2CLIPOriginalModel.from_original_checkpoint(clip=clip)` (Hub id or local folder)."""
        return cls(
            image_processor=CLIPImageProcessor.from_pretrained(clip),
            feature_extractor=WaveformWindowFeatureExtractor(
                sampling_rate=WAV2CLIP_SAMPLING_RATE, window_seconds=WAV2CLIP_WINDOW_SECONDS
            ),
            tokenizer=CLIPTokenizer.from_pretrained(clip),
            **kwargs,
        )


__all__ = ["WAV2CLIP_SAMPLING_RATE", "WAV2CLIP_WINDOW_SECONDS", "Wav2CLIPOriginalProcessor"]
