"""Sound generation: SoSgenPipeline, SoSgenControlNetPipeline and the spectrogram converter.

``sound_of_story.pipelines.spectrogram`` is the project's one audio <-> Riffusion spectrogram
image converter (the dataset builder uses it too). The pipelines are imported on first use, so
that the converter does not pay for importing diffusers and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

from .spectrogram import (
    GRIFFIN_LIM_METHODS,
    GriffinLimMethod,
    SpectrogramConverter,
    SpectrogramParams,
    audio_to_image,
    get_converter,
    image_to_audio,
    images_from_pil,
    images_to_pil,
    load_audio,
    peak_normalize,
    save_audio,
)

_LAZY = {
    "GenerationWindow": "pipeline_sosgen",
    "SoSgenPipeline": "pipeline_sosgen",
    "SoSgenPipelineOutput": "pipeline_sosgen",
    "IMAGE_ONLY_PROMPT": "pipeline_sosgen_controlnet",
    "SoSgenControlNetPipeline": "pipeline_sosgen_controlnet",
    "controlnet_from_unet": "pipeline_sosgen_controlnet",
    "filmstrip": "pipeline_sosgen_controlnet",
    "frame_context": "pipeline_sosgen_controlnet",
    "frame_spans": "pipeline_sosgen_controlnet",
}

__all__ = [
    "GRIFFIN_LIM_METHODS",
    "GriffinLimMethod",
    "SpectrogramConverter",
    "SpectrogramParams",
    "audio_to_image",
    "get_converter",
    "image_to_audio",
    "images_from_pil",
    "images_to_pil",
    "load_audio",
    "peak_normalize",
    "save_audio",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
