"""SoSgenPipeline: text -> spectrogram image -> audio (SoSgen_text of the Sound of Story paper, section 4.2).

A Stable Diffusion text-to-image pipeline over Riffusion spectrogram images, then the project's
spectrogram converter back to audio. It loads ``riffusion/riffusion-model-v1`` as it is (its
safety checker and feature extractor are ignored: the NSFW filter blacks out spectrograms) and the
pipelines that ``train/gen.py`` saves. The denoising loop is diffusers' StableDiffusionPipeline
loop; the tests check that both give the same latents.

Audio longer than ``window_width`` pixels (15.36 s by default) is generated as consecutive windows
that overlap by ``window_overlap`` pixels: each new window inpaints its overlap from the previous
window's tail (the known latents, re-noised to each step's level, replace the overlap after every
step), the decoded windows are crossfaded over the overlap, and the whole spectrogram is turned into
audio at once, so the joins carry no phase or level jump.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import VaeImageProcessor
from diffusers.loaders import StableDiffusionLoraLoaderMixin, TextualInversionLoaderMixin
from diffusers.pipelines.pipeline_utils import StableDiffusionMixin
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg, retrieve_timesteps
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import BaseOutput, hub_utils
from diffusers.utils.torch_utils import randn_tensor
from huggingface_hub import ModelCard
from transformers import CLIPTextModel, CLIPTokenizer

from sound_of_story.audio.spectrogram import (
    DEFAULT_GRIFFIN_LIM_METHOD,
    GRIFFIN_LIM_METHODS,
    SpectrogramConverter,
    SpectrogramParams,
    get_converter,
    images_to_pil,
    peak_normalize,
)
from sound_of_story.cards import build_model_card, public_path
from sound_of_story.core.atomic_files import atomic_path, write_text_atomic

__all__ = ["SoSgenPipeline", "SoSgenPipelineOutput", "GenerationWindow"]

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


@dataclass
class SoSgenPipelineOutput(BaseOutput):
    """Output of the SoSgen pipelines.

    Args:
        audios: ``(batch, channels, samples)`` float32 audio peak-normalised to -0.1 dBFS (as
            Riffusion), a numpy array (a torch tensor for ``output_type="pt"``); ``None`` for
            ``output_type="latent"``.
        sample_rate: sample rate of ``audios`` in Hz.
        spectrograms: the generated spectrogram images: PIL images with Riffusion's EXIF
            (``"pil"``), ``(batch, height, width, 3)`` floats in [0, 1] (``"np"``),
            ``(batch, 3, height, width)`` (``"pt"``), or the latents (``"latent"``).
    """

    audios: np.ndarray | torch.Tensor | None
    sample_rate: int
    spectrograms: list[PIL.Image.Image] | np.ndarray | torch.Tensor


@dataclass(frozen=True)
class GenerationWindow:
    """One denoising window: image columns ``[start, start + width)``; the first ``overlap`` columns are inpainted.

    ``condition`` is what the window is conditioned on besides the text, built for one call by the call's
    ``condition_windows`` (the ControlNet pipeline's frames: a ``WindowCondition``); None for text alone. It takes no
    part in comparing or hashing windows.
    """

    start: int
    width: int
    overlap: int
    condition: Any = field(default=None, compare=False, repr=False)


# diffusers' per-call attributes: callbacks read them through the pipeline while it runs (``pipeline.num_timesteps``)
# and may change them (SDCFGCutoffCallback sets ``_guidance_scale``, a user's callback ``_interrupt``).
_CALL_STATE = (
    "_guidance_scale",
    "_guidance_rescale",
    "_clip_skip",
    "_cross_attention_kwargs",
    "_interrupt",
    "_num_timesteps",
)


def _forgets_call_state(call: Callable) -> Callable:
    """Remove diffusers' per-call attributes (:data:`_CALL_STATE`) from the pipeline when ``call`` ends, however it ends.

    So nothing of one call is left on the pipeline for the next: a call depends on its own arguments only.
    """

    @functools.wraps(call)
    def call_and_forget(self, *args: Any, **kwargs: Any):
        try:
            return call(self, *args, **kwargs)
        finally:
            for name in _CALL_STATE:
                vars(self).pop(name, None)

    return call_and_forget


SPECTROGRAM_FIELDS = frozenset(field.name for field in dataclasses.fields(SpectrogramParams))


def accepts_spectrogram_keywords(init: Callable) -> Callable:
    """Let a pipeline's ``__init__`` take the spectrogram parameters one by one too (``sample_rate=8000, ...``).

    The parameters are one ``spectrogram_params`` object; callers that pass them separately keep working. diffusers
    reads a pipeline's components off its ``__init__`` signature and takes every parameter without a default for one,
    ``**spectrogram_keywords`` included, so the signature it sees leaves that catch-all out.
    """
    signature = inspect.signature(init)
    init.__signature__ = signature.replace(
        parameters=[p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    )
    return init


def _as_spectrogram_params(
    pipeline_name: str, value: SpectrogramParams | Mapping[str, Any] | None, keywords: dict[str, Any]
) -> SpectrogramParams:
    """The pipeline's ``spectrogram_params`` from the object, a dict (a saved config) or separate keywords."""
    unknown = sorted(set(keywords) - SPECTROGRAM_FIELDS)
    if unknown:
        raise TypeError(f"{pipeline_name}.__init__() got unexpected keyword arguments {unknown}")
    if keywords:
        if value is not None:
            raise ValueError(
                f"{pipeline_name}: pass `spectrogram_params` or its fields as keywords ({sorted(keywords)}), not both"
            )
        warnings.warn(
            f"{pipeline_name}: pass the spectrogram parameters as one object, "
            f"spectrogram_params=SpectrogramParams({', '.join(f'{k}=...' for k in keywords)})",
            FutureWarning,
            stacklevel=3,
        )
        return SpectrogramParams(**keywords)
    if value is None:
        return SpectrogramParams()
    if isinstance(value, SpectrogramParams):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - SPECTROGRAM_FIELDS)
        if unknown:
            raise ValueError(f"{pipeline_name}: `spectrogram_params` has unknown fields {unknown}")
        return SpectrogramParams(**value)
    raise ValueError(
        f"{pipeline_name}: `spectrogram_params` must be a SpectrogramParams or a dict, got {type(value).__name__}"
    )


class SoSgenPipeline(
    DiffusionPipeline, StableDiffusionMixin, TextualInversionLoaderMixin, StableDiffusionLoraLoaderMixin
):
    r"""Text-to-audio generation with a Stable Diffusion model of Riffusion spectrogram images.

    Args:
        vae ([`AutoencoderKL`]): encodes and decodes spectrogram images to and from latents.
        text_encoder ([`~transformers.CLIPTextModel`]): CLIP text encoder (SoSgen fine-tunes it).
        tokenizer ([`~transformers.CLIPTokenizer`]): its tokenizer.
        unet ([`UNet2DConditionModel`]): the denoiser.
        scheduler ([`SchedulerMixin`]): a diffusers scheduler.
        spectrogram_params ([`~sound_of_story.audio.spectrogram.SpectrogramParams`], defaults to Riffusion's): the
            spectrogram images' parameters, saved in ``model_index.json`` as one ``spectrogram_params`` entry. A dict of
            them is taken too, and so are the parameters as separate keywords (``sample_rate=...``, with a
            ``FutureWarning``); pipelines saved with separate keys load as they are.
        window_width (`int`, defaults to 1536): the widest image generated in one go (1536 px =
            15.36 s, what SoSgen is trained on; 512 for riffusion-model-v1). Wider requests are
            generated as overlapping windows.
        window_overlap (`int`, defaults to 256): overlap of consecutive windows in pixels.
        griffin_lim_method (`"exact"`, `"fast"` or `"refined"`, defaults to `"refined"`): how the spectrogram
            becomes audio (:meth:`~sound_of_story.audio.spectrogram.SpectrogramConverter.griffin_lim`):
            ``"refined"`` 1.25 times the iterations on the window-length FFT, then 0.25 times on the full grid,
            ``"exact"`` Riffusion's own inverse (the same output for a seed), ``"fast"`` the quickest but not always
            as close. ``benchmarks/generation.py`` measures their speed and spectral convergence; docs/generation.md
            gives the figures.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components: list[str] = []
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]
    # What the model card says about this kind of pipeline.
    _card_tags: tuple[str, ...] = ("sosgen", "riffusion", "spectrogram", "text-to-audio")
    _card_summary = (
        "text to audio (SoSgen_text of the Sound of Story paper, section 4.2) through Riffusion spectrogram images"
    )
    _card_example = 'out = pipe("rain on a tin roof, distant thunder", duration_s=15.0)'

    @accepts_spectrogram_keywords
    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
        spectrogram_params: SpectrogramParams | dict[str, Any] | None = None,
        window_width: int = 1536,
        window_overlap: int = 256,
        griffin_lim_method: str = DEFAULT_GRIFFIN_LIM_METHOD,  # a GriffinLimMethod; `str` because diffusers warns on Literal
        **spectrogram_keywords: Any,
    ):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if getattr(self, "vae", None) else 8
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        if not isinstance(window_width, int) or window_width <= 0 or window_width % 8:
            raise ValueError(f"window_width must be a positive multiple of 8 pixels, got {window_width!r}")
        if not isinstance(window_overlap, int) or not 0 < window_overlap < window_width or window_overlap % 8:
            raise ValueError(
                f"window_overlap must be a multiple of 8 pixels between 0 and window_width ({window_width}), got {window_overlap!r}"
            )
        if griffin_lim_method not in GRIFFIN_LIM_METHODS:
            raise ValueError(f"griffin_lim_method must be one of {GRIFFIN_LIM_METHODS}, got {griffin_lim_method!r}")
        params = _as_spectrogram_params(type(self).__name__, spectrogram_params, spectrogram_keywords)
        self.register_to_config(
            spectrogram_params=params.to_dict(),
            window_width=window_width,
            window_overlap=window_overlap,
            griffin_lim_method=griffin_lim_method,
        )

    @classmethod
    def extract_init_dict(cls, config_dict: dict[str, Any], **kwargs: Any):
        """diffusers' split of a saved config into ``__init__`` keywords, reading spectrogram parameters kept as separate
        keys too.

        Pipelines saved with the parameters one by one (``"sample_rate": 44100, ...`` in ``model_index.json``) and
        ``from_pretrained(..., sample_rate=...)`` overrides give them separately: they are folded into
        ``spectrogram_params``, so such pipelines load with their own parameters.
        """
        separate = {
            name: source[name] for source in (config_dict, kwargs) for name in SPECTROGRAM_FIELDS if name in source
        }
        if separate:
            config_dict = {k: v for k, v in config_dict.items() if k not in SPECTROGRAM_FIELDS}
            config_dict["spectrogram_params"] = {**(config_dict.get("spectrogram_params") or {}), **separate}
            kwargs = {k: v for k, v in kwargs.items() if k not in SPECTROGRAM_FIELDS}
        return super().extract_init_dict(config_dict, **kwargs)

    # ------------------------------------------------------------------------ saving and the Hub
    def model_card(self, model_name: str | None = None) -> ModelCard:
        """The pipeline's model card (README.md), built by :func:`sound_of_story.cards.build_model_card`.

        It says what the pipeline is, how to load and run it and its spectrogram parameters; the base
        model is the Hub id it was loaded from (never a local path, which would publish private names).
        """
        source = str(self.name_or_path or "")
        base_models = (
            [source] if source.count("/") == 1 and not os.path.isabs(source) and not os.path.exists(source) else []
        )
        params = self.spectrogram_params
        class_name = type(self).__name__
        description = (
            f"A `{class_name}` of the `sound-of-story` package: {self._card_summary}.\n\n"
            f"Spectrogram images: {params.sample_rate} Hz {'stereo' if params.stereo else 'mono'}, {params.num_frequencies} mel bins "
            f"({params.min_frequency}-{params.max_frequency} Hz), {params.columns_per_second:g} columns per second; audio from "
            f"{_griffin_lim_card_text(params, self.config.griffin_lim_method)}. Audio longer than "
            f"{self.config.window_width} columns is generated as windows overlapping by {self.config.window_overlap} columns.\n\n"
            "```python\n"
            f"from sound_of_story.pipelines import {class_name}\n\n"
            f'pipe = {class_name}.from_pretrained("{model_name or "THIS_REPO"}")\n'
            f"{self._card_example}\n"
            "audio, sample_rate = out.audios[0], out.sample_rate  # (channels, samples) float32\n"
            "```"
        )
        return build_model_card(
            library_name="diffusers",
            base_models=base_models,
            pipeline_tag="text-to-audio",
            tags=list(self._card_tags),
            model_name=model_name,
            description=description,
        )

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> None:
        """diffusers' ``save_pretrained``, plus the model card (README.md) of :meth:`model_card`, written atomically.

        ``push_to_hub=True`` then uploads the folder (``repo_id``, ``token``, ``private``, ``commit_message``,
        ``create_pr`` as in diffusers).
        """
        model_name = kwargs.pop("model_name", None) or os.path.basename(os.path.abspath(save_directory))
        super().save_pretrained(
            save_directory, safe_serialization=safe_serialization, variant=variant, max_shard_size=max_shard_size
        )
        _publish_source_paths(save_directory)
        with atomic_path(os.path.join(save_directory, "README.md")) as card_path:
            self.model_card(model_name).save(card_path)
        if push_to_hub:
            token = kwargs.pop("token", None)
            repo_id = kwargs.pop("repo_id", None) or model_name
            repo_id = hub_utils.create_repo(
                repo_id, private=kwargs.pop("private", None), token=token, exist_ok=True
            ).repo_id
            self._upload_folder(
                save_directory,
                repo_id,
                token=token,
                commit_message=kwargs.pop("commit_message", None),
                create_pr=kwargs.pop("create_pr", False),
            )

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        create_pr: bool = False,
        safe_serialization: bool = True,
        variant: str | None = None,
    ) -> str:
        """Upload the pipeline with its model card (see :meth:`model_card`) to ``repo_id`` on the Hub."""
        repo_id = hub_utils.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, safe_serialization=safe_serialization, variant=variant, model_name=repo_id)
            return self._upload_folder(
                folder, repo_id, token=token, commit_message=commit_message, create_pr=create_pr
            )

    # Diffusers' own implementations, so that prompts, latents and scheduler kwargs are exactly
    # StableDiffusionPipeline's (the equivalence test relies on it).
    encode_prompt = StableDiffusionPipeline.encode_prompt
    prepare_extra_step_kwargs = StableDiffusionPipeline.prepare_extra_step_kwargs
    prepare_latents = StableDiffusionPipeline.prepare_latents
    get_guidance_scale_embedding = StableDiffusionPipeline.get_guidance_scale_embedding

    @property
    def spectrogram_params(self) -> SpectrogramParams:
        """The spectrogram parameters of this pipeline's images."""
        return SpectrogramParams(**self.config["spectrogram_params"])

    @property
    def converter(self) -> SpectrogramConverter:
        """The spectrogram converter on the pipeline's execution device."""
        return get_converter(self.spectrogram_params, self._execution_device)

    @property
    def size_alignment(self) -> int:
        """Pixel multiple that makes every UNet level an integer size (64 for Stable Diffusion 1.x)."""
        return self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    def width_for_duration(self, duration_s: float) -> int:
        """Image width for ``duration_s`` seconds: enough columns, rounded up to :attr:`size_alignment` (15 s -> 1536)."""
        params = self.spectrogram_params
        columns = math.ceil(round(duration_s * params.sample_rate) / params.hop_length) + 1
        alignment = math.lcm(self.size_alignment, 8)
        return math.ceil(columns / alignment) * alignment

    def plan_windows(self, width: int) -> list[GenerationWindow]:
        """The windows that cover ``width`` columns: one if it fits ``window_width``, else overlapping ones."""
        window, overlap = self.config.window_width, self.config.window_overlap
        if width <= window:
            return [GenerationWindow(0, width, 0)]
        stride = window - overlap
        count = math.ceil((width - overlap) / stride)
        return [GenerationWindow(k * stride, window, overlap if k else 0) for k in range(count)]

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def guidance_rescale(self) -> float:
        return self._guidance_rescale

    @property
    def clip_skip(self) -> int | None:
        return self._clip_skip

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1 and self.unet.config.time_cond_proj_dim is None

    @property
    def cross_attention_kwargs(self) -> dict[str, Any] | None:
        return self._cross_attention_kwargs

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    def _resolve_size(self, height: int | None, width: int | None, duration_s: float | None) -> tuple[int, int]:
        """The image width and the number of audio samples to return; a ValueError names a size it cannot make."""
        params = self.spectrogram_params
        if height is not None and height != params.num_frequencies:
            raise ValueError(
                f"`height` must equal the spectrogram's num_frequencies ({params.num_frequencies}): each image row is one mel bin; got {height}"
            )
        if params.num_frequencies % 8:
            raise ValueError(f"`height` (num_frequencies = {params.num_frequencies}) has to be divisible by 8")
        if width is not None and duration_s is not None:
            raise ValueError(f"Pass `duration_s` or `width`, not both (got duration_s={duration_s}, width={width})")
        if width is not None and (not isinstance(width, (int, np.integer)) or width <= 0 or width % 8):
            raise ValueError(f"`width` has to be a positive integer divisible by 8, got {width!r}")
        if duration_s is not None and not (
            isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and duration_s > 0
        ):
            raise ValueError(f"`duration_s` has to be a positive number of seconds, got {duration_s!r}")
        if duration_s is not None:
            return self.width_for_duration(duration_s), round(duration_s * params.sample_rate)
        width = int(width) if width is not None else self.config.window_width
        return width, params.num_samples_for_width(width)

    def _check_options(
        self,
        num_inference_steps: int,
        num_images_per_prompt: int,
        output_type: str,
        callback_on_step_end_tensor_inputs: Sequence[str] | None,
    ) -> None:
        """Raise a ValueError naming the argument for a step count, image count, output type or callback input."""
        if not isinstance(num_inference_steps, (int, np.integer)) or num_inference_steps <= 0:
            raise ValueError(f"`num_inference_steps` has to be a positive integer, got {num_inference_steps!r}")
        if not isinstance(num_images_per_prompt, (int, np.integer)) or num_images_per_prompt <= 0:
            raise ValueError(f"`num_images_per_prompt` has to be a positive integer, got {num_images_per_prompt!r}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` has to be one of {OUTPUT_TYPES}, got {output_type!r}")
        if callback_on_step_end_tensor_inputs is not None and not all(
            k in self._callback_tensor_inputs for k in callback_on_step_end_tensor_inputs
        ):
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` has to be in {self._callback_tensor_inputs}, but found "
                f"{[k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]}"
            )

    def _check_prompts(
        self,
        prompt: str | list[str] | None,
        negative_prompt: str | list[str] | None,
        prompt_embeds: torch.Tensor | None,
        negative_prompt_embeds: torch.Tensor | None,
    ) -> None:
        """Raise a ValueError naming the argument for prompts (or their embeddings) the pipeline cannot take."""
        if prompt is not None and prompt_embeds is not None:
            raise ValueError("Pass `prompt` or `prompt_embeds`, not both")
        if prompt is None and prompt_embeds is None:
            raise ValueError("Provide either `prompt` or `prompt_embeds`")
        if prompt is not None and not (
            isinstance(prompt, str)
            or (isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt))
        ):
            raise ValueError(
                f"`prompt` has to be a string or a non-empty list of strings, got {type(prompt).__name__}"
            )
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError("Pass `negative_prompt` or `negative_prompt_embeds`, not both")
        if (
            prompt_embeds is not None
            and negative_prompt_embeds is not None
            and prompt_embeds.shape != negative_prompt_embeds.shape
        ):
            raise ValueError(
                f"`prompt_embeds` {tuple(prompt_embeds.shape)} and `negative_prompt_embeds` {tuple(negative_prompt_embeds.shape)} must have the same shape"
            )

    @_forgets_call_state
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        duration_s: float | None = None,
        width: int | None = None,
        height: int | None = None,
        num_inference_steps: int = 50,
        timesteps: list[int] | None = None,
        sigmas: list[float] | None = None,
        guidance_scale: float = 7.0,
        guidance_rescale: float = 0.0,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        cross_attention_kwargs: dict[str, Any] | None = None,
        clip_skip: int | None = None,
        num_griffin_lim_iters: int | None = None,
        callback_on_step_end: Callable[[DiffusionPipeline, int, int, dict], dict]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        condition_windows: Callable[..., list[Any]] | None = None,
    ) -> SoSgenPipelineOutput | tuple:
        r"""Generate audio for text prompts.

        Args:
            prompt: the prompt(s), e.g. SoS descriptions.
            negative_prompt: what to guide away from (with ``guidance_scale > 1``).
            duration_s: seconds of audio to return. The image is ``width_for_duration(duration_s)``
                columns wide (100 per second, rounded up to a multiple of 64: 15 s -> 1536) and the
                audio is cut to exactly ``duration_s``. Give this or ``width``.
            width: image width in pixels (a multiple of 8); the audio is ``hop_length * (width - 1)``
                samples (Riffusion's inverse). Defaults to ``window_width``.
            height: image height; must equal ``num_frequencies`` (512), which is the default.
            num_inference_steps, timesteps, sigmas, guidance_scale, guidance_rescale, eta, generator,
            latents, prompt_embeds, negative_prompt_embeds, cross_attention_kwargs, clip_skip: as in
                [`StableDiffusionPipeline`]. ``latents`` are only accepted for a single window.
            num_images_per_prompt: audios per prompt.
            output_type: ``"pil"`` (default), ``"np"``, ``"pt"`` or ``"latent"``; see [`SoSgenPipelineOutput`].
            return_dict: return a [`SoSgenPipelineOutput`] (default) or a tuple ``(audios, sample_rate, spectrograms)``.
            num_griffin_lim_iters: overrides the configured Griffin-Lim iterations (32).
            callback_on_step_end, callback_on_step_end_tensor_inputs: called after every denoising
                step of every window, as in diffusers; the step index counts on across windows.
            condition_windows: for pipelines that condition on more than the text (SoSgenControlNetPipeline passes
                its frames this way): called once the windows and the batch are known, as ``condition_windows(windows,
                width=, num_samples=, num_prompts=, num_images_per_prompt=, device=)``; it returns one condition per
                window, which :meth:`predict_noise` gets as ``window.condition``.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs

        # 1. Check the inputs, plan the image and its windows
        width, num_samples = self._resolve_size(height, width, duration_s)
        height = self.spectrogram_params.num_frequencies
        self._check_options(
            num_inference_steps, num_images_per_prompt, output_type, callback_on_step_end_tensor_inputs
        )
        self._check_prompts(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds)
        windows = self.plan_windows(width)
        if latents is not None and len(windows) > 1:
            raise ValueError(
                f"`latents` can only be given for one window: width {width} exceeds window_width {self.config.window_width}"
            )
        # diffusers' per-call attributes, which callbacks read and change; _forgets_call_state removes them afterwards
        self._guidance_scale = guidance_scale
        self._guidance_rescale = guidance_rescale
        self._clip_skip = clip_skip
        self._cross_attention_kwargs = cross_attention_kwargs
        self._interrupt = False
        batch_size = 1 if isinstance(prompt, str) else len(prompt) if prompt is not None else prompt_embeds.shape[0]
        device = self._execution_device

        # 2. Encode the prompt
        lora_scale = (
            self.cross_attention_kwargs.get("scale", None) if self.cross_attention_kwargs is not None else None
        )
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt,
            device,
            num_images_per_prompt,
            self.do_classifier_free_guidance,
            negative_prompt,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            lora_scale=lora_scale,
            clip_skip=self.clip_skip,
        )
        if self.do_classifier_free_guidance:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
        timestep_cond = self._guidance_scale_condition(batch_size * num_images_per_prompt, device, prompt_embeds.dtype)
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)

        # 3. Prepare what each window is conditioned on besides the text
        if condition_windows is not None:
            conditions = condition_windows(
                windows,
                width=width,
                num_samples=num_samples,
                num_prompts=batch_size,
                num_images_per_prompt=num_images_per_prompt,
                device=device,
            )
            windows = [dataclasses.replace(w, condition=c) for w, c in zip(windows, conditions, strict=True)]

        # 4. Denoise window after window: prepare its latents, inpaint its overlap from the previous window
        window_latents: list[torch.Tensor] = []
        step = 0  # the callback's step index counts on across windows
        with self.progress_bar(total=num_inference_steps * len(windows)) as progress_bar:
            for window in windows:
                window_timesteps, window_steps = retrieve_timesteps(
                    self.scheduler, num_inference_steps, device, timesteps, sigmas
                )
                self._num_timesteps = len(window_timesteps)
                current = self.prepare_latents(
                    batch_size * num_images_per_prompt,
                    self.unet.config.in_channels,
                    height,
                    window.width,
                    prompt_embeds.dtype,
                    device,
                    generator,
                    latents,
                )
                known = self._known_overlap(window, window_latents, generator)
                num_warmup_steps = len(window_timesteps) - window_steps * self.scheduler.order
                for i, t in enumerate(window_timesteps):
                    if self.interrupt:
                        continue
                    latent_model_input = torch.cat([current] * 2) if self.do_classifier_free_guidance else current
                    latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
                    noise_pred = self.predict_noise(latent_model_input, t, i, prompt_embeds, timestep_cond, window)
                    if self.do_classifier_free_guidance:
                        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                        noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)
                        if self.guidance_rescale > 0.0:
                            noise_pred = rescale_noise_cfg(
                                noise_pred, noise_pred_text, guidance_rescale=self.guidance_rescale
                            )
                    current = self.scheduler.step(noise_pred, t, current, **extra_step_kwargs, return_dict=False)[0]
                    if known is not None:
                        current = self._paste_known(current, known, window_timesteps, i)

                    if callback_on_step_end is not None:
                        tensors = {
                            "latents": current,
                            "prompt_embeds": prompt_embeds,
                            "negative_prompt_embeds": negative_prompt_embeds,
                        }
                        callback_outputs = callback_on_step_end(
                            self, step, t, {k: tensors[k] for k in callback_on_step_end_tensor_inputs}
                        )
                        current = callback_outputs.pop("latents", current)
                        prompt_embeds = callback_outputs.pop("prompt_embeds", prompt_embeds)
                        negative_prompt_embeds = callback_outputs.pop("negative_prompt_embeds", negative_prompt_embeds)
                    step += 1
                    if i == len(window_timesteps) - 1 or (
                        (i + 1) > num_warmup_steps and (i + 1) % self.scheduler.order == 0
                    ):
                        progress_bar.update()
                window_latents.append(current)

        if output_type == "latent":
            self.maybe_free_model_hooks()
            stitched = self._stitch_latents(window_latents, windows)[..., : width // self.vae_scale_factor]
            return self._output(None, stitched, output_type, return_dict)

        # 5. Decode each window and crossfade the overlaps
        decoded = [
            self.vae.decode(w / self.vae.config.scaling_factor, return_dict=False, generator=generator)[0]
            for w in window_latents
        ]
        images = (self._stitch_images(decoded, windows)[..., :width].float() / 2 + 0.5).clamp(0, 1)
        self.maybe_free_model_hooks()

        # 6. Invert the whole spectrogram at once (no seams in the audio)
        audio = self.spectrogram_to_audio(images, num_griffin_lim_iters, generator)[..., :num_samples]
        return self._output(audio, images, output_type, return_dict)

    # ------------------------------------------------------------------ the hook for subclasses
    def predict_noise(
        self,
        latent_model_input: torch.Tensor,
        t: torch.Tensor,
        step_index: int,
        prompt_embeds: torch.Tensor,
        timestep_cond: torch.Tensor | None,
        window: GenerationWindow,
    ) -> torch.Tensor:
        """The UNet's noise prediction at step ``step_index`` of ``window`` (before guidance is applied).

        Subclasses override this to add conditioning (the ControlNet pipeline adds its residuals); what they add
        for this call and window is ``window.condition`` (see ``condition_windows`` of :meth:`__call__`).
        """
        return self.unet(
            latent_model_input,
            t,
            encoder_hidden_states=prompt_embeds,
            timestep_cond=timestep_cond,
            cross_attention_kwargs=self.cross_attention_kwargs,
            return_dict=False,
        )[0]

    # -------------------------------------------------------------------------- steps of __call__
    def _guidance_scale_condition(
        self, batch_size: int, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor | None:
        """The guidance-scale embedding of guidance-distilled UNets (``time_cond_proj_dim``), else None."""
        if self.unet.config.time_cond_proj_dim is None:
            return None
        guidance_scale_tensor = torch.tensor(self.guidance_scale - 1).repeat(batch_size)
        embedding = self.get_guidance_scale_embedding(
            guidance_scale_tensor, embedding_dim=self.unet.config.time_cond_proj_dim
        )
        return embedding.to(device=device, dtype=dtype)

    def _known_overlap(
        self,
        window: GenerationWindow,
        window_latents: list[torch.Tensor],
        generator: torch.Generator | list[torch.Generator] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        """The previous window's tail that ``window`` inpaints over its overlap, with the noise to re-noise it; None for the first."""
        if not window.overlap:
            return None
        overlap = window.overlap // self.vae_scale_factor
        known_latents = window_latents[-1][..., -overlap:]
        known_noise = randn_tensor(
            known_latents.shape, generator=generator, device=known_latents.device, dtype=known_latents.dtype
        )
        return known_latents, known_noise, overlap

    def spectrogram_to_audio(
        self,
        images: torch.Tensor,
        num_griffin_lim_iters: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """Audio ``(batch, channels, hop * (width - 1))`` of images ``(batch, 3, height, width)`` in [0, 1], peak-normalised as Riffusion's.

        Griffin-Lim runs with the pipeline's ``griffin_lim_method``; its initial phases come from ``generator``.
        """
        device = self._execution_device
        converter = self.converter
        num_iters = (
            num_griffin_lim_iters
            if num_griffin_lim_iters is not None
            else self.spectrogram_params.num_griffin_lim_iters
        )
        with self.progress_bar(
            total=converter.num_griffin_lim_steps(num_iters, self.config.griffin_lim_method)
        ) as progress_bar:
            audio = converter.mel_to_audio(
                converter.images_to_mel(images.to(device)),
                num_iters=num_iters,
                generator=_griffin_lim_generator(generator, device),
                callback=lambda _: progress_bar.update(),
                method=self.config.griffin_lim_method,
            )
        return peak_normalize(audio)

    def _output(
        self, audio: torch.Tensor | None, spectrograms: torch.Tensor, output_type: str, return_dict: bool
    ) -> SoSgenPipelineOutput | tuple:
        """Package audio and spectrograms (images in [0, 1], or latents) as ``output_type`` says."""
        sample_rate = self.spectrogram_params.sample_rate
        if output_type == "latent" or output_type == "pt":
            audios = audio
        else:
            audios = audio.cpu().numpy().astype(np.float32)
            if output_type == "np":
                spectrograms = spectrograms.permute(0, 2, 3, 1).cpu().numpy()
            else:
                spectrograms = images_to_pil((spectrograms * 255).round().to(torch.uint8), self.spectrogram_params)
        if not return_dict:
            return audios, sample_rate, spectrograms
        return SoSgenPipelineOutput(audios=audios, sample_rate=sample_rate, spectrograms=spectrograms)

    def _paste_known(
        self, latents: torch.Tensor, known: tuple[torch.Tensor, torch.Tensor, int], timesteps: torch.Tensor, i: int
    ) -> torch.Tensor:
        """Replace the overlap by the previous window's latents, noised to the level of the next step."""
        known_latents, known_noise, overlap = known
        if i < len(timesteps) - 1:
            known_latents = self.scheduler.add_noise(known_latents, known_noise, timesteps[i + 1 : i + 2])
        return torch.cat([known_latents.to(latents.dtype), latents[..., overlap:]], dim=-1)

    def _stitch_latents(self, window_latents: list[torch.Tensor], windows: list[GenerationWindow]) -> torch.Tensor:
        parts = [w[..., window.overlap // self.vae_scale_factor :] for w, window in zip(window_latents, windows)]
        return torch.cat(parts, dim=-1)

    @staticmethod
    def _stitch_images(images: list[torch.Tensor], windows: list[GenerationWindow]) -> torch.Tensor:
        """Join decoded windows, crossfading linearly over each overlap."""
        canvas = images[0]
        for image, window in zip(images[1:], windows[1:]):
            ramp = torch.linspace(0, 1, window.overlap + 2, device=image.device, dtype=image.dtype)[1:-1]
            head = canvas[..., window.start :] * (1 - ramp) + image[..., : window.overlap] * ramp
            canvas = torch.cat([canvas[..., : window.start], head, image[..., window.overlap :]], dim=-1)
        return canvas


def _griffin_lim_card_text(params: SpectrogramParams, method: str) -> str:
    """What the pipeline's Griffin-Lim runs, for its model card: the method, its iterations and their FFT grids."""
    n_fft, asked = params.n_fft, params.num_griffin_lim_iters
    if method == "exact":
        return (
            f"Griffin-Lim, `exact` method (Riffusion's own inverse, torchaudio's fast Griffin-Lim): {asked} iterations "
            f"on the {n_fft}-point FFT grid, momentum {params.griffin_lim_momentum:g}"
        )
    converter = get_converter(params)
    coarse, full = converter.griffin_lim_grid_iterations(asked, method)
    steps = f"{coarse} iterations on the {n_fft // converter.coarse_stride}-point FFT grid of the window's length"
    if full:
        steps += f", then {full} on the full {n_fft}-point grid"
    return (
        f"Griffin-Lim, `{method}` method: {steps} ({coarse + full} in all for the {asked} configured; the `exact` "
        f"method, Riffusion's own inverse, runs {asked} on the full grid)"
    )


def _griffin_lim_generator(
    generator: torch.Generator | list[torch.Generator] | None, device: torch.device
) -> torch.Generator | None:
    """A generator for Griffin-Lim's initial phases, seeded from the user's generator (so a seed fixes the audio)."""
    if generator is None:
        return None
    source = generator[0] if isinstance(generator, list) else generator
    seed = int(torch.randint(0, 2**62, (1,), generator=source, device=source.device))
    return torch.Generator(device=device).manual_seed(seed)


def _publish_source_paths(save_directory: str | os.PathLike) -> None:
    """Rewrite the ``_name_or_path`` that diffusers' ``save_config`` copies into ``model_index.json`` and each
    component's configuration: the folder the pipeline was loaded from is an absolute local path (it names the
    machine's folders and, through the home folder, its user), and the saved folder is what ``push_to_hub``
    publishes. The path becomes what a card may show (:func:`sound_of_story.cards.public_path`)."""
    import json
    from pathlib import Path

    for config_file in sorted(Path(save_directory).glob("*.json")) + sorted(Path(save_directory).glob("*/*.json")):
        try:
            data = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        source = data.get("_name_or_path") if isinstance(data, dict) else None
        if isinstance(source, str) and public_path(source) != source:
            data["_name_or_path"] = public_path(source)
            write_text_atomic(config_file, json.dumps(data, indent=2, sort_keys=True) + "\n")
