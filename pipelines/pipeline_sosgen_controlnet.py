"""SoSgenControlNetPipeline: frames (+ text) -> spectrogram image -> audio (SoSgen_text+image / SoSgen_image).

The paper (section 4.2, eq. 13, Figure 5) adds the story's frame sequence as a condition through a
ControlNet on top of the frozen text-to-audio model. Here the frames enter the ControlNet in two
ways:

* **c_img, the cross-attention context.** Each frame's CLIP image embedding (the
  ``image_embeds`` of a ``CLIPVisionModelWithProjection``) is projected to the ControlNet's
  cross-attention width by the ControlNet's own ``encoder_hid_proj`` (when the two widths differ)
  and given a frame position embedding: the sinusoidal embedding of the image column at the centre
  of the frame's time span. The ControlNet attends to these frame tokens instead of the text; the
  UNet keeps the text.
* **the spatial hint.** A filmstrip as wide as the spectrogram: each frame is drawn, cover-fitted,
  over the columns of its time span (from its time to the next frame's), so the hint is
  time-aligned with the spectrogram's x axis.

``image_only=True`` (the paper's SoSgen_image) fixes the text to "Audio", as that model was
trained. With ``controlnet_conditioning_scale=0`` the output is exactly SoSgenPipeline's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.schedulers import KarrasDiffusionSchedulers
from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

from sound_of_story.audio.spectrogram import DEFAULT_GRIFFIN_LIM_METHOD, SpectrogramParams

from .pipeline_sosgen import GenerationWindow, SoSgenPipeline, SoSgenPipelineOutput, accepts_spectrogram_keywords

__all__ = [
    "IMAGE_ONLY_PROMPT",
    "ControlGuidance",
    "FrameCondition",
    "SoSgenControlNetPipeline",
    "WindowCondition",
    "controlnet_from_unet",
    "filmstrip",
    "frame_context",
    "frame_spans",
]

IMAGE_ONLY_PROMPT = "Audio"

FrameInput = PIL.Image.Image | np.ndarray | torch.Tensor


def frame_spans(frame_times: Sequence[float], width: int, columns_per_second: float) -> list[tuple[int, int]]:
    """Image columns ``[start, end)`` of each frame: from its time to the next frame's; the first starts at 0, the last ends at ``width``."""
    starts = [0] + [min(width, round(t * columns_per_second)) for t in frame_times[1:]]
    ends = starts[1:] + [width]
    return list(zip(starts, ends))


def filmstrip(frames: torch.Tensor, spans: Sequence[tuple[int, int]], height: int, width: int) -> torch.Tensor:
    """The time-aligned hint ``(3, height, width)`` in [0, 1]: frame ``i`` of ``(N, 3, h, w)`` cover-fitted into ``spans[i]``."""
    canvas = torch.zeros(3, height, width, dtype=torch.float32, device=frames.device)
    for frame, (start, end) in zip(frames, spans):
        span = end - start
        if span <= 0:
            continue
        h, w = frame.shape[-2:]
        scale = max(height / h, span / w)
        size = (max(height, math.ceil(h * scale)), max(span, math.ceil(w * scale)))
        resized = F.interpolate(frame[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[
            0
        ]
        top, left = (size[0] - height) // 2, (size[1] - span) // 2
        canvas[:, :, start:end] = resized[:, top : top + height, left : left + span].clamp(0, 1)
    return canvas


def frame_context(image_embeds: torch.Tensor, positions: torch.Tensor, controlnet: ControlNetModel) -> torch.Tensor:
    """c_img: frame embeddings ``(..., N, D)`` projected to the ControlNet's cross-attention width plus position embeddings.

    ``positions`` ``(..., N)`` are image columns (the centre of each frame's span within the
    generation window). The projection is ``controlnet.encoder_hid_proj`` when the ControlNet has
    one (``encoder_hid_dim`` = the CLIP projection width), else the widths must already agree.
    """
    projection = controlnet.encoder_hid_proj
    tokens = (
        projection(image_embeds.to(controlnet.dtype)) if projection is not None else image_embeds.to(controlnet.dtype)
    )
    dim = tokens.shape[-1]
    position_embeds = get_timestep_embedding(
        positions.reshape(-1).float(), dim, flip_sin_to_cos=True, downscale_freq_shift=0
    )
    return tokens + position_embeds.reshape(*positions.shape, dim).to(device=tokens.device, dtype=tokens.dtype)


def controlnet_from_unet(
    unet: UNet2DConditionModel,
    image_encoder: CLIPVisionModelWithProjection,
    conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256),
) -> ControlNetModel:
    """A ControlNet initialised from ``unet`` (ControlNetModel.from_unet), with a frame projection when needed.

    When the CLIP projection width differs from the UNet's cross-attention width, the ControlNet
    gets ``encoder_hid_dim`` = that width, i.e. a trainable ``encoder_hid_proj`` Linear that
    :func:`frame_context` applies.
    """
    controlnet = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=conditioning_embedding_out_channels
    )
    embed_dim = image_encoder.config.projection_dim
    if embed_dim == controlnet.config.cross_attention_dim:
        return controlnet
    config = dict(controlnet.config, encoder_hid_dim=embed_dim, encoder_hid_dim_type="text_proj")
    projected = ControlNetModel.from_config(config)
    missing, unexpected = projected.load_state_dict(controlnet.state_dict(), strict=False)
    if unexpected or any(not key.startswith("encoder_hid_proj.") for key in missing):
        raise RuntimeError(f"could not copy the ControlNet weights: missing {missing}, unexpected {unexpected}")
    return projected


@dataclass
class FrameCondition:
    """The frames of each item of a batch over the whole image, ready for the windows
    (:meth:`SoSgenControlNetPipeline.frame_condition`)."""

    hints: torch.Tensor  # (batch, 3, height, width) in [0, 1]
    embeds: list[torch.Tensor]  # per item (N_i, D) CLIP image embeddings
    spans: list[list[tuple[int, int]]]  # per item, per frame [start, end) columns


@dataclass(frozen=True)
class ControlGuidance:
    """How strongly, and in which of the steps, the ControlNet acts in one call: ``SoSgenControlNetPipeline.__call__``'s
    ``controlnet_conditioning_scale``, ``control_guidance_start``/``end`` and ``guess_mode``."""

    conditioning_scale: float = 1.0
    start: float = 0.0
    end: float = 1.0
    guess_mode: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.conditioning_scale, (int, float)) or not math.isfinite(self.conditioning_scale):
            raise ValueError(
                f"`controlnet_conditioning_scale` has to be a finite number, got {self.conditioning_scale!r}"
            )
        if not 0.0 <= self.start < self.end <= 1.0:
            raise ValueError(
                f"need 0 <= control_guidance_start < control_guidance_end <= 1, got {self.start} and {self.end}"
            )

    def scale_at(self, step_index: int, num_steps: int) -> float:
        """The residuals' scale at step ``step_index`` of ``num_steps``: ``conditioning_scale`` in [start, end], else 0."""
        outside = step_index / num_steps < self.start or (step_index + 1) / num_steps > self.end
        return self.conditioning_scale * (1.0 - float(outside))


@dataclass
class WindowCondition:
    """What the ControlNet takes for one generation window (:meth:`SoSgenControlNetPipeline.window_condition`)."""

    hint: torch.Tensor  # (batch, 3, height, window width)
    contexts: list[torch.Tensor]  # per item (N_i, cross-attention dim)
    guidance: ControlGuidance = ControlGuidance()


class SoSgenControlNetPipeline(SoSgenPipeline):
    r"""Audio generation conditioned on a story's frames (and text) with a ControlNet.

    Args:
        vae, text_encoder, tokenizer, unet, scheduler: as in [`SoSgenPipeline`] (the frozen text-to-audio model).
        controlnet ([`ControlNetModel`]): the frame ControlNet (see :func:`controlnet_from_unet`).
        image_encoder ([`~transformers.CLIPVisionModelWithProjection`]): CLIP image encoder of the frames.
        feature_extractor ([`~transformers.CLIPImageProcessor`]): its preprocessing.
        spectrogram_params, window_width, window_overlap, griffin_lim_method: as in [`SoSgenPipeline`].
        image_only (`bool`, defaults to False): the text is fixed to "Audio" (SoSgen_image).
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->unet->vae"
    _optional_components: list[str] = []
    _card_tags = ("sosgen", "riffusion", "spectrogram", "controlnet", "text-to-audio", "image-to-audio")
    _card_summary = (
        "a story's frames (and text) to audio (SoSgen_text+image / SoSgen_image of the Sound of Story paper, section 4.2): "
        "a ControlNet conditioned on the frames' CLIP embeddings and a time-aligned filmstrip"
    )
    _card_example = (
        'out = pipe("rain on a tin roof", frames=[frame0, frame1], frame_times=[0.0, 7.5], duration_s=15.0)'
    )

    @accepts_spectrogram_keywords
    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        controlnet: ControlNetModel,
        scheduler: KarrasDiffusionSchedulers,
        image_encoder: CLIPVisionModelWithProjection,
        feature_extractor: CLIPImageProcessor,
        spectrogram_params: SpectrogramParams | dict[str, Any] | None = None,
        window_width: int = 1536,
        window_overlap: int = 256,
        griffin_lim_method: str = DEFAULT_GRIFFIN_LIM_METHOD,  # a GriffinLimMethod; `str` because diffusers warns on Literal
        image_only: bool = False,
        **spectrogram_keywords: Any,
    ):
        super().__init__(
            vae,
            text_encoder,
            tokenizer,
            unet,
            scheduler,
            spectrogram_params,
            window_width,
            window_overlap,
            griffin_lim_method,
            **spectrogram_keywords,
        )
        if not isinstance(controlnet, ControlNetModel):
            raise ValueError(f"controlnet must be one ControlNetModel, got {type(controlnet).__name__}")
        self.register_modules(controlnet=controlnet, image_encoder=image_encoder, feature_extractor=feature_extractor)
        self.register_to_config(image_only=bool(image_only))
        self._check_components()

    def _check_components(self) -> None:
        if self.controlnet is None or self.image_encoder is None:
            return
        context_dim = (
            self.controlnet.config.encoder_hid_dim
            if self.controlnet.encoder_hid_proj is not None
            else self.controlnet.config.cross_attention_dim
        )
        if self.image_encoder.config.projection_dim != context_dim:
            raise ValueError(
                f"image_encoder.config.projection_dim ({self.image_encoder.config.projection_dim}) must equal the ControlNet's frame input width "
                f"({context_dim}: encoder_hid_dim if it has an encoder_hid_proj, else cross_attention_dim); build it with controlnet_from_unet"
            )
        stages = len(self.controlnet.config.conditioning_embedding_out_channels) - 1
        if 2**stages != self.vae_scale_factor:
            raise ValueError(
                f"the ControlNet's conditioning embedding downsamples {2**stages}x but the VAE {self.vae_scale_factor}x: "
                f"conditioning_embedding_out_channels needs {int(math.log2(self.vae_scale_factor)) + 1} entries"
            )

    # --------------------------------------------------------------------------- frames
    def encode_frames(self, frames: list[torch.Tensor], device: torch.device) -> torch.Tensor:
        """CLIP ``image_embeds`` ``(N, D)`` of frames given as ``(3, h, w)`` tensors in [0, 1]."""
        pixel_values = self.feature_extractor(
            images=[f.cpu() for f in frames], do_rescale=False, return_tensors="pt"
        ).pixel_values
        return self.image_encoder(pixel_values.to(device=device, dtype=self.image_encoder.dtype)).image_embeds

    # Public so that training conditions the ControlNet exactly as generation does (training/sosgen.py):
    # frame_condition once per image, then window_condition per generation window.
    def frame_condition(
        self,
        stories: list[list[torch.Tensor]],
        times: list[list[float]] | None,
        width: int,
        num_samples: int,
        device: torch.device,
        *,
        num_prompts: int | None = None,
        num_images_per_prompt: int = 1,
    ) -> FrameCondition:
        """The frame condition of a whole spectrogram image: filmstrip hints, CLIP frame embeddings, column spans.

        Args:
            stories: per story, its frames as float ``(3, h, w)`` tensors in [0, 1]; one story for all
                prompts, or one per prompt.
            times: per story, each frame's time in seconds (non-decreasing, before the end of the audio);
                None: evenly spaced over the audio.
            width: the image width in columns (all windows together).
            num_samples: the length of the audio the image stands for, at ``spectrogram_params.sample_rate``.
            device: where the embeddings and hints are made.
            num_prompts: the number of prompts (default: one per story).
            num_images_per_prompt: images per prompt; the batch is ``num_prompts * num_images_per_prompt``
                items, each story repeated for its prompt's images.

        Returns:
            A :class:`FrameCondition` with one entry per batch item, for :meth:`window_condition`.
        """
        params = self.spectrogram_params
        num_prompts = len(stories) if num_prompts is None else num_prompts
        batch_size = num_prompts * num_images_per_prompt
        if len(stories) not in (1, num_prompts):
            raise ValueError(
                f"`frames` holds {len(stories)} stories but there are {num_prompts} prompts: give one story, or one per prompt"
            )
        duration = num_samples / params.sample_rate
        times = times if times is not None else [_even_times(len(story), duration) for story in stories]
        spans = []
        for k, story_times in enumerate(times):
            last = story_times[-1] if story_times else 0.0
            if last >= duration:
                raise ValueError(
                    f"`frame_times` of story {k} reach {last:g} s, beyond the {duration:g} s being generated"
                )
            spans.append(frame_spans(story_times, width, params.columns_per_second))
        flat = [frame for story in stories for frame in story]
        embeds = self.encode_frames(flat, device).split([len(story) for story in stories])
        hints = torch.stack(
            [
                filmstrip(torch.stack(story), story_spans, params.num_frequencies, width)
                for story, story_spans in zip(stories, spans)
            ]
        )
        repeat = batch_size // len(stories)  # one story for all prompts, then num_images_per_prompt copies
        order = [k for k in range(len(stories)) for _ in range(repeat)]
        return FrameCondition(
            hints=hints[order].to(device=device, dtype=self.controlnet.dtype),
            embeds=[embeds[k] for k in order],
            spans=[spans[k] for k in order],
        )

    def window_condition(
        self,
        condition: FrameCondition,
        window: GenerationWindow,
        device: torch.device,
        guidance: ControlGuidance = ControlGuidance(),
    ) -> WindowCondition:
        """The ControlNet's inputs for one generation ``window`` of the image ``condition`` covers.

        The hint columns of the window (zero-padded where the window reaches past the image) and, per
        batch item, the frame tokens (:func:`frame_context`) of the frames whose spans overlap it, each
        placed at the centre of its span's part inside the window; ``guidance`` goes with them.
        """
        end = window.start + window.width
        hint = condition.hints[..., window.start : end]
        hint = F.pad(hint, (0, window.width - hint.shape[-1]))  # the last window may reach past the requested width
        contexts = []
        for embeds, spans in zip(condition.embeds, condition.spans):
            inside = [
                i for i, (s, e) in enumerate(spans) if s < end and (e > window.start or (s == e and s >= window.start))
            ]
            centres = torch.tensor(
                [(max(spans[i][0], window.start) + min(spans[i][1], end)) / 2 - window.start for i in inside],
                device=device,
            )
            contexts.append(frame_context(embeds[inside], centres, self.controlnet))
        return WindowCondition(hint=hint, contexts=contexts, guidance=guidance)

    def predict_noise(self, latent_model_input, t, step_index, prompt_embeds, timestep_cond, window):
        """The UNet's noise prediction with the ControlNet's residuals for the frames of ``window`` (its ``condition``,
        a :class:`WindowCondition` that :meth:`__call__` built for this call)."""
        condition = window.condition
        if not isinstance(condition, WindowCondition):
            raise ValueError(
                f"window {window} has no frame condition (window.condition is {type(condition).__name__}): "
                "call the pipeline with `frames`"
            )
        guidance = condition.guidance
        scale = guidance.scale_at(step_index, self.num_timesteps)
        contexts, hint = condition.contexts, condition.hint
        cond_only = guidance.guess_mode and self.do_classifier_free_guidance
        if cond_only:
            control_input = latent_model_input.chunk(2)[1]  # the ControlNet sees only the conditional half
        else:
            control_input = latent_model_input
            if self.do_classifier_free_guidance:
                contexts, hint = contexts + contexts, torch.cat([hint, hint])
        down, mid = self._run_controlnet(control_input, t, contexts, hint, scale, guidance.guess_mode)
        if cond_only:
            down = [torch.cat([torch.zeros_like(d), d]) for d in down]
            mid = torch.cat([torch.zeros_like(mid), mid])
        return self.unet(
            latent_model_input,
            t,
            encoder_hidden_states=prompt_embeds,
            timestep_cond=timestep_cond,
            cross_attention_kwargs=self.cross_attention_kwargs,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
            return_dict=False,
        )[0]

    def _run_controlnet(self, sample, t, contexts, hint, scale, guess_mode):
        """ControlNet residuals; items whose frame counts differ run one by one (cross-attention has no key mask)."""
        if len({c.shape[0] for c in contexts}) == 1:
            groups = [(slice(None), torch.stack(contexts))]
        else:
            groups = [(slice(k, k + 1), c[None]) for k, c in enumerate(contexts)]
        results = [
            self.controlnet(
                sample[rows],
                t,
                encoder_hidden_states=context,
                controlnet_cond=hint[rows],
                conditioning_scale=scale,
                guess_mode=guess_mode,
                return_dict=False,
            )
            for rows, context in groups
        ]
        down = [torch.cat(parts) for parts in zip(*(r[0] for r in results))]
        mid = torch.cat([r[1] for r in results])
        return down, mid

    # ------------------------------------------------------------------------------ call
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        frames: Sequence[FrameInput] | Sequence[Sequence[FrameInput]] | torch.Tensor | None = None,
        frame_times: Sequence[float] | Sequence[Sequence[float]] | None = None,
        *,
        controlnet_conditioning_scale: float = 1.0,
        control_guidance_start: float = 0.0,
        control_guidance_end: float = 1.0,
        guess_mode: bool = False,
        prompt_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SoSgenPipelineOutput | tuple:
        r"""Generate audio for a story's frames (and text).

        Args:
            prompt: the text; must be None (or "Audio") for an ``image_only`` pipeline, which uses "Audio".
            frames: the story's frames in time order: PIL images, ``(h, w, 3)`` arrays (uint8, or
                float in [0, 1]) or ``(3, h, w)`` tensors in [0, 1], or an ``(N, 3, h, w)`` tensor;
                or a list of such stories, one per prompt.
            frame_times: the time (seconds from the start of the audio) of each frame, non-decreasing;
                a list per story when there are several. Default: evenly spaced over the duration.
            controlnet_conditioning_scale: multiplies the ControlNet residuals (0 = text only).
            control_guidance_start, control_guidance_end: fraction of the steps in which the ControlNet acts.
            guess_mode: the ControlNet sees only the conditional half of classifier-free guidance.
            prompt_embeds, **kwargs: everything else [`SoSgenPipeline.__call__`] takes (``duration_s``,
                ``width``, ``num_inference_steps``, ``guidance_scale``, ``generator``, ``output_type``, ...),
                with the same meaning.
        """
        if self.config.image_only:
            if prompt_embeds is not None or (prompt is not None and prompt != IMAGE_ONLY_PROMPT):
                raise ValueError(
                    f"this pipeline is image-only (its text is always {IMAGE_ONLY_PROMPT!r}): pass no `prompt` or `prompt_embeds`"
                )
            stories = _as_stories(frames)
            prompt = [IMAGE_ONLY_PROMPT] * len(stories)
        elif prompt is None and prompt_embeds is None:
            raise ValueError(
                "Provide `prompt` (or `prompt_embeds`): this pipeline conditions on text and frames (image_only is False)"
            )
        else:
            stories = _as_stories(frames)
        story_times = _as_story_times(frame_times, stories)
        guidance = ControlGuidance(
            controlnet_conditioning_scale,
            control_guidance_start,
            control_guidance_end,
            guess_mode=bool(guess_mode or self.controlnet.config.global_pool_conditions),
        )

        def condition_windows(windows, *, width, num_samples, num_prompts, num_images_per_prompt, device):
            """This call's frames over each window, once the image width and the batch are known."""
            frames = self.frame_condition(
                stories,
                story_times,
                width,
                num_samples,
                device,
                num_prompts=num_prompts,
                num_images_per_prompt=num_images_per_prompt,
            )
            return [self.window_condition(frames, window, device, guidance) for window in windows]

        return super().__call__(prompt, prompt_embeds=prompt_embeds, condition_windows=condition_windows, **kwargs)


def _as_frame(frame: FrameInput, where: str) -> torch.Tensor:
    """One frame as a float ``(3, h, w)`` tensor in [0, 1]."""
    if isinstance(frame, PIL.Image.Image):
        return torch.from_numpy(np.array(frame.convert("RGB"))).permute(2, 0, 1).float() / 255
    if isinstance(frame, np.ndarray):
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(f"{where}: a numpy frame must be (height, width, 3), got shape {frame.shape}")
        tensor = torch.from_numpy(np.array(frame)).permute(2, 0, 1)
        return tensor.float() / 255 if frame.dtype == np.uint8 else tensor.float()
    if isinstance(frame, torch.Tensor):
        if frame.ndim != 3 or frame.shape[0] != 3:
            raise ValueError(f"{where}: a tensor frame must be (3, height, width), got shape {tuple(frame.shape)}")
        return frame.detach().float().cpu()
    raise ValueError(
        f"{where}: a frame must be a PIL image, a numpy array or a torch tensor, got {type(frame).__name__}"
    )


def _as_stories(frames) -> list[list[torch.Tensor]]:
    if frames is None:
        raise ValueError("`frames` is required: the story's frames in time order")
    if isinstance(frames, torch.Tensor):
        if frames.ndim != 4:
            raise ValueError(
                f"`frames` as a tensor must be (num_frames, 3, height, width), got shape {tuple(frames.shape)}"
            )
        frames = list(frames)
    if not isinstance(frames, (list, tuple)) or len(frames) == 0:
        raise ValueError("`frames` must be a non-empty list of frames (or of stories, one list of frames per prompt)")
    nested = isinstance(frames[0], (list, tuple)) or (isinstance(frames[0], torch.Tensor) and frames[0].ndim == 4)
    stories = [list(story) for story in frames] if nested else [list(frames)]
    for k, story in enumerate(stories):
        if not story:
            raise ValueError(f"`frames`: story {k} has no frames")
    return [
        [_as_frame(frame, f"`frames` story {k} frame {i}") for i, frame in enumerate(story)]
        for k, story in enumerate(stories)
    ]


def _as_story_times(frame_times, stories: list[list[torch.Tensor]]) -> list[list[float]] | None:
    if frame_times is None:
        return None
    frame_times = list(frame_times)
    nested = bool(frame_times) and isinstance(frame_times[0], (list, tuple, np.ndarray, torch.Tensor))
    per_story = [list(map(float, t)) for t in frame_times] if nested else [[float(t) for t in frame_times]]
    if len(per_story) != len(stories):
        raise ValueError(f"`frame_times` has {len(per_story)} stories but `frames` has {len(stories)}")
    for k, (story_times, story) in enumerate(zip(per_story, stories)):
        if len(story_times) != len(story):
            raise ValueError(
                f"story {k}: `frames` has {len(story)} frames but `frame_times` has {len(story_times)} times"
            )
        if any(not math.isfinite(t) or t < 0 for t in story_times):
            raise ValueError(f"story {k}: `frame_times` must be finite and >= 0, got {story_times}")
        if any(b < a for a, b in zip(story_times, story_times[1:])):
            raise ValueError(
                f"story {k}: `frame_times` must be non-decreasing (frames in time order), got {story_times}"
            )
    return per_story


def _even_times(count: int, duration: float) -> list[float]:
    return [duration * i / count for i in range(count)]
