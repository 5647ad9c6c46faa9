"""MSClapProcessor: story text and audio into the inputs of `MSClapModel`, as msclap prepares them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer, BatchFeature, ProcessorMixin

from .feature_extraction_waveform import WaveformWindowFeatureExtractor
from .processing_sos import AudioCrop, _is_single_audio, audio_windows

MSCLAP_SAMPLING_RATE = 44_100
# config_2022.yml: `duration: 5`, `text_len: 100`.
MSCLAP_WINDOW_SECONDS = 5.0
MSCLAP_TEXT_LENGTH = 100


class MSClapProcessor(ProcessorMixin):
    r"""msclap's input preparation (`CLAPWrapper.preprocess_audio` / `preprocess_text`) with the SoS windows.

    - Audio: mono at 44.1 kHz, resampled with torchaudio's defaults (msclap's `torchaudio.transforms.Resample`),
      one 5 s window per story (`input_values` `(batch, 220500)`): the most energetic window for evaluation,
      a random one for training (msclap takes a random crop), `audio_crops=K` windows spread over the story.
      A story shorter than the window is repeated and cut, as msclap does. Stereo is averaged; msclap instead
      concatenates the channels (`reshape(-1)`) and crops from that.
    - Text: the tokenizer's `[CLS] ... [SEP]`, padded to `max_text_length` (100). msclap does not truncate (a
      longer text gives a longer sequence, which breaks its batches); SoS descriptions are often longer, so
      this processor truncates them to `max_text_length` tokens, keeping the final `[SEP]`.

    Args:
        feature_extractor (`WaveformWindowFeatureExtractor`): 44.1 kHz, 5 s windows.
        tokenizer: BERT's (`bert-base-uncased` for the 2022 model).
        max_text_length (`int`, *optional*, defaults to 100): msclap's `text_len`.
    """

    # How story audio is brought to 44.1 kHz: torchaudio's defaults, as msclap's `Resample(sr, 44100)`.
    audio_resampler = "torchaudio_hann"

    def __init__(self, feature_extractor=None, tokenizer=None, max_text_length: int = MSCLAP_TEXT_LENGTH):
        if not isinstance(feature_extractor, WaveformWindowFeatureExtractor):
            raise ValueError(
                f"feature_extractor must be a WaveformWindowFeatureExtractor, got {type(feature_extractor).__name__}"
            )
        super().__init__(feature_extractor, tokenizer)
        if max_text_length < 2:
            raise ValueError(f"max_text_length must be >= 2 (start and end tokens), got {max_text_length}")
        self.max_text_length = max_text_length

    @classmethod
    def from_encoders(cls, text_model: str = "bert-base-uncased", **kwargs: Any) -> MSClapProcessor:
        """The processor of `MSClapModel.from_original_checkpoint()`: the 2022 model's BERT tokenizer (msclap's
        `AutoTokenizer.from_pretrained("bert-base-uncased")`, core.model_ids.MSCLAP_TEXT_MODEL) and its audio window."""
        return cls(
            feature_extractor=WaveformWindowFeatureExtractor(
                sampling_rate=MSCLAP_SAMPLING_RATE, window_seconds=MSCLAP_WINDOW_SECONDS
            ),
            tokenizer=AutoTokenizer.from_pretrained(text_model),
            **kwargs,
        )

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    @property
    def audio_window_seconds(self) -> float:
        return self.feature_extractor.window_seconds

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
        """As `SoSRetrievalProcessor.__call__` for text and audio: `input_ids`, `attention_mask` `(batch, 100)` and
        `input_values` `(batch, samples)` (or `(batch, crops, samples)`)."""
        if text is None and audio is None:
            raise ValueError("give text, audio, or both")
        data: dict[str, Any] = {}
        sizes = {}
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            if not all(isinstance(t, str) for t in texts):
                raise ValueError("text must be a string or a list of strings")
            tokens = self.tokenizer(
                texts, padding="max_length", truncation=True, max_length=self.max_text_length, return_tensors="np"
            )
            data.update(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
            sizes["text"] = len(texts)
        if audio is not None:
            clips = [audio] if _is_single_audio(audio) else list(audio)
            window = self.feature_extractor.window_samples
            windows = []
            for clip in clips:
                wave, starts = audio_windows(
                    clip, sampling_rate, target_sampling_rate=self.sampling_rate, window_seconds=self.audio_window_seconds,
                    audio_crop=audio_crop, audio_crops=audio_crops, generator=generator, resampler=self.audio_resampler,
                )  # fmt: skip
                windows.extend(wave[s : s + window] for s in starts)
            values = np.asarray(self.feature_extractor(windows, sampling_rate=self.sampling_rate)["input_values"])
            data["input_values"] = values if audio_crops == 1 else values.reshape(len(clips), audio_crops, -1)
            sizes["audio"] = len(clips)
        if len(set(sizes.values())) > 1:
            raise ValueError(f"text and audio must describe the same stories; got batch sizes {sizes}")
        return BatchFeature(data, tensor_type=return_tensors)


__all__ = ["MSCLAP_SAMPLING_RATE", "MSCLAP_TEXT_LENGTH", "MSCLAP_WINDOW_SECONDS", "MSClapProcessor"]
