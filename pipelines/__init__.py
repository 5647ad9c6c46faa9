"""Sound generation: SoSgenPipeline (text to audio) and SoSgenControlNetPipeline (text and frames to audio).

Both turn their generated spectrogram images back into audio with the package's one converter,
:mod:`sound_of_story.audio.spectrogram` (the dataset builder makes its training images with it too); the
converter's functions are re-exported here for convenience.
"""

from sound_of_story.audio.spectrogram import (
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

from .pipeline_sosgen import GenerationWindow, SoSgenPipeline, SoSgenPipelineOutput
from .pipeline_sosgen_controlnet import (
    IMAGE_ONLY_PROMPT,
    SoSgenControlNetPipeline,
    controlnet_from_unet,
    filmstrip,
    frame_context,
    frame_spans,
)

__all__ = [
    "GRIFFIN_LIM_METHODS",
    "GenerationWindow",
    "GriffinLimMethod",
    "IMAGE_ONLY_PROMPT",
    "SoSgenControlNetPipeline",
    "SoSgenPipeline",
    "SoSgenPipelineOutput",
    "SpectrogramConverter",
    "SpectrogramParams",
    "audio_to_image",
    "controlnet_from_unet",
    "filmstrip",
    "frame_context",
    "frame_spans",
    "get_converter",
    "image_to_audio",
    "images_from_pil",
    "images_to_pil",
    "load_audio",
    "peak_normalize",
    "save_audio",
]
