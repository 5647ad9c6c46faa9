"""SoSRetrievalProcessor: story text, frames and audio into model inputs, as paper section 4.1.2.

- Text: CLIP tokens, truncated to 77 and padded to 77 (so word features never depend on the batch).
- Frames: 40 per story; fewer are repeated in time order (each distinct frame processed once), more are sampled
  uniformly.
- Audio: mono, 16 kHz, one 10.24 s window (1024 fbank frames, AST's input): a random window for
  training, and for evaluation the window with the most energy (the paper's "information-rich area"),
  chosen deterministically. `audio_crops=K` instead takes K windows spread evenly over the story, which
  the model averages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from transformers import ASTFeatureExtractor, BatchFeature, CLIPImageProcessor, CLIPTokenizer, ProcessorMixin

from sound_of_story.audio import Resampler, ResamplingMethod
from sound_of_story.audio import prepare_waveform as audio_prepare_waveform

AST_SAMPLING_RATE = 16_000
# torchaudio's Kaiser sinc, not the package default resampy: AST's own recipe resamples with torchaudio,
# and resampy costs several times more on every training story.
AST_RESAMPLER: Resampler = "torchaudio"
# Candidate starts of the energetic window are one fbank frame shift (10 ms) apart.
ENERGY_HOP_SECONDS = 0.01

AudioCrop = Literal["energetic", "random"]


def prepare_waveform(
    audio: Any,
    sampling_rate: int | None = None,
    target_sampling_rate: int = AST_SAMPLING_RATE,
    resampler: ResamplingMethod = AST_RESAMPLER,
) -> np.ndarray:
    """One story's audio as a mono float32 array at `target_sampling_rate`.

    Args:
        audio: a `datasets` audio value (anything with `["array"]` and `["sampling_rate"]`), a
            torchcodec `AudioSamples` (`.data`, `.sample_rate`), or an array / tensor of shape
            `(samples,)` or `(channels, samples)` together with `sampling_rate`.
        sampling_rate: the rate of a bare array; must agree with the rate carried by `audio`, if any.
        target_sampling_rate: output rate (AST's 16 kHz by default).
        resampler: the resampling method (`AST_RESAMPLER` by default, the SoS processor's).

    The package's `sound_of_story.audio.prepare_waveform` (channels averaged, then resampled).
    """
    return audio_prepare_waveform(audio, sampling_rate, target_sampling_rate, resampler=resampler)


def select_audio_windows(
    waveform: np.ndarray,
    window: int,
    *,
    mode: AudioCrop = "energetic",
    num_windows: int = 1,
    hop: int = 160,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Start samples of the audio windows of one story.

    Args:
        waveform: mono samples.
        window: window length in samples.
        mode: with `num_windows=1`, `"energetic"` takes the window of largest energy (sum of squares)
            among the starts 0, hop, 2*hop, ... (the first one on ties), `"random"` a uniformly random
            start. With `num_windows > 1`, the windows are spread evenly from the start to the end of
            the story (the first starts at 0, the last ends at the last sample); `mode` must be
            `"energetic"` then (the default), as nothing is random.
        num_windows: how many windows.
        hop: grid of the energetic search, in samples (10 ms at 16 kHz).
        generator: random source of `"random"`.

    A story no longer than `window` gives start 0 (the feature extractor pads it).
    """
    if mode not in ("energetic", "random"):
        raise ValueError(f"audio_crop must be 'energetic' or 'random', got {mode!r}")
    if num_windows < 1:
        raise ValueError(f"audio_crops must be a positive integer, got {num_windows}")
    if num_windows > 1 and mode == "random":
        raise ValueError(
            "audio_crops > 1 spreads the windows evenly over the story; use audio_crop='energetic' (the default) with it"
        )
    last = len(waveform) - window
    if last <= 0:
        return [0] * num_windows
    if num_windows > 1:
        return [int(s) for s in np.rint(np.linspace(0, last, num_windows))]
    if mode == "random":
        return [int(torch.randint(0, last + 1, (1,), generator=generator).item())]
    power = np.concatenate([[0.0], np.cumsum(np.square(waveform, dtype=np.float64))])
    starts = np.arange(0, last + 1, hop)
    energy = power[starts + window] - power[starts]
    return [int(starts[int(np.argmax(energy))])]


def audio_windows(
    audio: Any,
    sampling_rate: int | None = None,
    *,
    target_sampling_rate: int,
    window_seconds: float,
    audio_crop: AudioCrop = "energetic",
    audio_crops: int = 1,
    generator: torch.Generator | None = None,
    resampler: ResamplingMethod = AST_RESAMPLER,
) -> tuple[np.ndarray, list[int]]:
    """One story's mono waveform at `target_sampling_rate` and the start samples of its windows.

    `prepare_waveform` (with `resampler`) then `select_audio_windows` with a `window_seconds` window and a 10 ms grid.
    """
    wave = prepare_waveform(audio, sampling_rate, target_sampling_rate, resampler=resampler)
    window = int(round(window_seconds * target_sampling_rate))
    hop = max(1, int(round(ENERGY_HOP_SECONDS * target_sampling_rate)))
    starts = select_audio_windows(wave, window, mode=audio_crop, num_windows=audio_crops, hop=hop, generator=generator)
    return wave, starts


def sample_frame_indices(num_available: int, num_frames: int = 40) -> list[int]:
    """Indices of the `num_frames` frames of a story with `num_available` key frames.

    Frame i is floor((i + 1/2) * num_available / num_frames): with fewer frames each is repeated
    (about equally often) in time order; with more they are sampled uniformly, centred in their
    intervals; with exactly `num_frames` every frame is used once.
    """
    if num_available < 1:
        raise ValueError("a story needs at least one frame")
    return [int((2 * i + 1) * num_available // (2 * num_frames)) for i in range(num_frames)]


def _is_single_story_frames(frames: Any) -> bool:
    """True for one story's frames (a list of images, or a 4-D array/tensor), False for a batch of stories."""
    if isinstance(frames, (np.ndarray, torch.Tensor)):
        if frames.ndim == 4:
            return True
        if frames.ndim == 5:
            return False
        raise ValueError(
            f"frames as an array must be (num_frames, ...) 4-D or (batch, num_frames, ...) 5-D, got shape {tuple(frames.shape)}"
        )
    if not isinstance(frames, Sequence) or isinstance(frames, (str, bytes)) or len(frames) == 0:
        raise ValueError("frames must be a non-empty list of images (one story) or a list of such lists (a batch)")
    first = frames[0]
    if isinstance(first, Image.Image) or (isinstance(first, (np.ndarray, torch.Tensor)) and first.ndim == 3):
        return True
    return False


def _is_single_audio(audio: Any) -> bool:
    if isinstance(audio, (list, tuple)):
        return False
    if isinstance(audio, (np.ndarray, torch.Tensor)) and audio.ndim > 2:
        raise ValueError(
            f"audio arrays must be (samples,) or (channels, samples); for a batch pass a list, got shape {tuple(audio.shape)}"
        )
    return True


class SoSRetrievalProcessor(ProcessorMixin):
    r"""Bundles the CLIP tokenizer, the CLIP image processor and the AST feature extractor.

    Args:
        image_processor (`CLIPImageProcessor`): frames to `pixel_values`.
        feature_extractor (`ASTFeatureExtractor`): 16 kHz audio to Kaldi fbank `input_values` (1024 x 128,
            AST's normalisation).
        tokenizer (`CLIPTokenizer`): story text to `input_ids`.
        num_frames (`int`, *optional*, defaults to 40): frames per story.
        max_text_length (`int`, *optional*, defaults to 77): CLIP's context; longer texts are cut at the end.
        audio_window_seconds (`float`, *optional*, defaults to 10.24): audio window, AST's 1024 frames of 10 ms.

    Example:

    ```python
    >>> row = dataset[0]  # {"audio": {...}, "frames": [PIL images], "text": "..."}
    >>> inputs = processor(text=row["text"], frames=row["frames"], audio=row["audio"])  # evaluation crop
    >>> inputs["input_values"].shape, inputs["pixel_values"].shape, inputs["input_ids"].shape
    (torch.Size([1, 1024, 128]), torch.Size([1, 40, 3, 224, 224]), torch.Size([1, 77]))
    ```
    """

    # How story audio is brought to the feature extractor's rate (a subclass for another model may change it).
    audio_resampler: ResamplingMethod = AST_RESAMPLER

    def __init__(
        self,
        image_processor=None,
        feature_extractor=None,
        tokenizer=None,
        num_frames: int = 40,
        max_text_length: int = 77,
        audio_window_seconds: float = 10.24,
    ):
        super().__init__(image_processor, feature_extractor, tokenizer)
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if max_text_length < 2:
            raise ValueError(f"max_text_length must be >= 2 (start and end tokens), got {max_text_length}")
        if not audio_window_seconds > 0:
            raise ValueError(f"audio_window_seconds must be > 0, got {audio_window_seconds}")
        self.num_frames = num_frames
        self.max_text_length = max_text_length
        self.audio_window_seconds = audio_window_seconds

    @classmethod
    def from_encoders(
        cls,
        clip: str = "openai/clip-vit-base-patch32",  # core.model_ids.CLIP: remote code imports no package
        audio: str = "MIT/ast-finetuned-audioset-10-10-0.4593",  # core.model_ids.AST
        **kwargs: Any,
    ) -> SoSRetrievalProcessor:
        """The processor of `SoSRetrievalModel.from_encoders(clip, audio)` (Hub ids or local folders)."""
        return cls(
            image_processor=CLIPImageProcessor.from_pretrained(clip),
            feature_extractor=ASTFeatureExtractor.from_pretrained(audio),
            tokenizer=CLIPTokenizer.from_pretrained(clip),
            **kwargs,
        )

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    @property
    def window_samples(self) -> int:
        return int(round(self.audio_window_seconds * self.sampling_rate))

    def _story_pixel_values(self, story: Any) -> np.ndarray:
        """`(num_frames, 3, H, W)` pixels of one story's frames: each distinct frame goes through the image
        processor once and is then repeated into its slots. A story of 4 key frames fills 40 slots; processing the
        40 copies would cost 10 times the work and memory for the same pixels, since a frame's pixels do not depend
        on the other images in the call."""
        indices = sample_frame_indices(len(story), self.num_frames)
        distinct = sorted(set(indices))
        processed = np.asarray(
            self.image_processor(images=[story[i] for i in distinct], return_tensors="pt")["pixel_values"]
        )
        row = {frame: position for position, frame in enumerate(distinct)}
        return processed[[row[i] for i in indices]]

    def __call__(
        self,
        text: str | list[str] | None = None,
        frames: Any = None,
        audio: Any = None,
        sampling_rate: int | None = None,
        *,
        audio_crop: AudioCrop = "energetic",
        audio_crops: int = 1,
        generator: torch.Generator | None = None,
        return_tensors: str = "pt",
    ) -> BatchFeature:
        """Model inputs for one story or a batch of stories (any of the three modalities).

        Args:
            text: a story text or a list of them.
            frames: one story's key frames in time order (a list of PIL images or arrays, or a 4-D
                array/tensor), or a list of such stories.
            audio: one story's audio (a `datasets` audio value, torchcodec samples, or an array with
                `sampling_rate`), or a list of them.
            sampling_rate: rate of bare audio arrays.
            audio_crop: `"energetic"` (evaluation, deterministic) or `"random"` (training).
            audio_crops: number of windows spread over the whole story (> 1 gives `input_values` of
                shape `(batch, audio_crops, 1024, 128)`).
            generator: random source of `audio_crop="random"`.

        Returns:
            `BatchFeature` with `input_ids`, `attention_mask` `(batch, 77)`; `pixel_values`
            `(batch, 40, 3, 224, 224)`, `frame_mask` `(batch, 40)` (all ones: every story is filled
            to 40 frames); `input_values` `(batch, 1024, 128)`.
        """
        if text is None and frames is None and audio is None:
            raise ValueError("give at least one of text, frames, audio")
        data: dict[str, Any] = {}
        sizes: dict[str, int] = {}
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            if not all(isinstance(t, str) for t in texts):
                raise ValueError("text must be a string or a list of strings")
            tokens = self.tokenizer(
                texts, padding="max_length", truncation=True, max_length=self.max_text_length, return_tensors="np"
            )
            data.update(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
            sizes["text"] = len(texts)
        if frames is not None:
            stories = [frames] if _is_single_story_frames(frames) else list(frames)
            pixel_values = []
            for story in stories:
                pixel_values.append(self._story_pixel_values(story))
            data["pixel_values"] = np.stack(pixel_values)
            data["frame_mask"] = np.ones((len(stories), self.num_frames), dtype=np.int64)
            sizes["frames"] = len(stories)
        if audio is not None:
            clips = [audio] if _is_single_audio(audio) else list(audio)
            windows = []
            for clip in clips:
                wave, starts = audio_windows(
                    clip, sampling_rate, target_sampling_rate=self.sampling_rate, window_seconds=self.audio_window_seconds,
                    audio_crop=audio_crop, audio_crops=audio_crops, generator=generator, resampler=self.audio_resampler,
                )  # fmt: skip
                windows.extend(wave[s : s + self.window_samples] for s in starts)
            values = self.feature_extractor(windows, sampling_rate=self.sampling_rate, return_tensors="np")[
                "input_values"
            ]
            data["input_values"] = (
                values if audio_crops == 1 else values.reshape(len(clips), audio_crops, *values.shape[1:])
            )
            sizes["audio"] = len(clips)
        if len(set(sizes.values())) > 1:
            raise ValueError(f"text, frames and audio must describe the same stories; got batch sizes {sizes}")
        return BatchFeature(data, tensor_type=return_tensors)


__all__ = [
    "SoSRetrievalProcessor",
    "audio_windows",
    "prepare_waveform",
    "sample_frame_indices",
    "select_audio_windows",
]
