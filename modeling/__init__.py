"""SoSRetrievalModel (paper section 4.1), its configuration and processor, and the Table 2 baselines.

Every model here exposes one retrieval interface, so one evaluation runs on all of them:

- ``get_audio_features(**audio_inputs) -> SoSAudioFeatures``
- ``get_video_features(pixel_values, frame_mask=None) -> SoSVideoFeatures``
- ``get_text_features(input_ids, attention_mask=None) -> SoSTextFeatures``
- ``similarity(audio_features, video_or_text_features) -> (num_audio, num_other)`` tensor, before the logit scale

and loads one way, :func:`load_retrieval_model` (by the saved configuration's ``model_type``).

Table 2's baselines: ``Wav2CLIPOriginalModel`` (the original Wav2CLIP, from its released checkpoint, kind
``wav2clip_original``) and ``MSClapModel`` (Microsoft CLAP 2022 from msclap's checkpoint, kind ``msclap``), as the
paper ran them; ``Wav2CLIPBaselineModel`` (kind ``wav2clip``: a Wav2CLIP-style ResNet on the SoS model's AST fbank
input, from random weights) and ``ClapRetrievalBaseline`` (kind ``clap``: LAION's CLAP) are variants beside them.

Importing this package registers ``SoSRetrievalConfig`` / ``SoSRetrievalModel`` with ``AutoConfig`` /
``AutoModel``; saved models also carry an ``auto_map``, so ``AutoModel.from_pretrained(repo,
trust_remote_code=True)`` loads them without this package.
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoProcessor

from .configuration_msclap import MSClapConfig
from .configuration_sos import SoSRetrievalConfig
from .configuration_wav2clip_baseline import Wav2CLIPBaselineConfig
from .configuration_wav2clip_original import Wav2CLIPOriginalConfig
from .feature_extraction_waveform import WaveformWindowFeatureExtractor
from .loading import MODEL_KINDS, LoadedRetrievalModel, ModelKind, load_retrieval_model, retrieval_model_kind
from .modeling_clap_baseline import ClapBaselineProcessor, ClapRetrievalBaseline
from .modeling_msclap import MSClapModel
from .modeling_sos import (
    SoSAudioFeatures,
    SoSRetrievalModel,
    SoSRetrievalOutput,
    SoSSimilarityOutput,
    SoSTextFeatures,
    SoSVideoFeatures,
    contrastive_loss,
    masked_mean_pool,
    multi_grained_similarity,
)
from .modeling_wav2clip_baseline import Wav2CLIPBaselineModel
from .modeling_wav2clip_original import Wav2CLIPOriginalModel
from .processing_msclap import MSClapProcessor
from .processing_sos import SoSRetrievalProcessor, prepare_waveform, sample_frame_indices, select_audio_windows
from .processing_wav2clip_original import Wav2CLIPOriginalProcessor

AutoConfig.register(SoSRetrievalConfig.model_type, SoSRetrievalConfig, exist_ok=True)
AutoModel.register(SoSRetrievalConfig, SoSRetrievalModel, exist_ok=True)
AutoProcessor.register(SoSRetrievalConfig, SoSRetrievalProcessor, exist_ok=True)
AutoConfig.register(Wav2CLIPBaselineConfig.model_type, Wav2CLIPBaselineConfig, exist_ok=True)
AutoModel.register(Wav2CLIPBaselineConfig, Wav2CLIPBaselineModel, exist_ok=True)
# The Table 2 baselines as the paper ran them: the original Wav2CLIP and Microsoft CLAP (msclap 2022).
for _config, _model, _processor in (
    (Wav2CLIPOriginalConfig, Wav2CLIPOriginalModel, Wav2CLIPOriginalProcessor),
    (MSClapConfig, MSClapModel, MSClapProcessor),
):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _model, exist_ok=True)
    AutoProcessor.register(_config, _processor, exist_ok=True)
    AutoFeatureExtractor.register(_config, WaveformWindowFeatureExtractor, exist_ok=True)
    _config.register_for_auto_class()
    _model.register_for_auto_class("AutoModel")
# Written into config.json as `auto_map` on save, with the code files copied next to the weights.
SoSRetrievalConfig.register_for_auto_class()
SoSRetrievalModel.register_for_auto_class("AutoModel")
# processor_config.json gets an `auto_map` too, with processing_sos.py copied next to it.
SoSRetrievalProcessor.register_for_auto_class("AutoProcessor")
Wav2CLIPBaselineConfig.register_for_auto_class()
Wav2CLIPBaselineModel.register_for_auto_class("AutoModel")

__all__ = [
    "MODEL_KINDS",
    "LoadedRetrievalModel",
    "ModelKind",
    "load_retrieval_model",
    "retrieval_model_kind",
    "ClapBaselineProcessor",
    "ClapRetrievalBaseline",
    "MSClapConfig",
    "MSClapModel",
    "MSClapProcessor",
    "SoSAudioFeatures",
    "SoSRetrievalConfig",
    "SoSRetrievalModel",
    "SoSRetrievalOutput",
    "SoSRetrievalProcessor",
    "SoSSimilarityOutput",
    "SoSTextFeatures",
    "SoSVideoFeatures",
    "Wav2CLIPBaselineConfig",
    "Wav2CLIPBaselineModel",
    "Wav2CLIPOriginalConfig",
    "Wav2CLIPOriginalModel",
    "Wav2CLIPOriginalProcessor",
    "WaveformWindowFeatureExtractor",
    "contrastive_loss",
    "masked_mean_pool",
    "multi_grained_similarity",
    "prepare_waveform",
    "sample_frame_indices",
    "select_audio_windows",
]
