"""Fréchet Audio Distance (FAD): VGGish in PyTorch, Fréchet distance, FAD-infinity, per-clip FAD.

The maths is importable from here; ``metrics/fad/fad.py`` next to this file is the thin
`evaluate` module (``evaluate.load(evaluate_module_path("fad"))``) and ``README.md`` its module card.

Typical use::

    from sound_of_story.metrics.fad import VGGishEmbedder, compute_fad

    embedder = VGGishEmbedder.from_checkpoint("vggish-10086976.pth")  # torchvggish release v0.1
    result = compute_fad("generated/", "reference/", embedder, cache="~/.cache/sos-fad", progress=True)
    print(result.fad)

Submodules: ``vggish`` (network, log-mel input pipeline, checkpoints), ``audio_input``
(finding files, cache keys; reading, downmix and resampling are ``sound_of_story.audio``'s), ``frechet`` (statistics, distance, FAD-infinity, per-clip),
``embedders`` (VGGish / CLAP behind one batched, cached interface), ``embedding_cache``,
``scoring`` (``compute_fad``).
"""

from .audio_input import audio_file_extensions, list_audio_files
from .embedders import (
    EMBEDDER_NAMES,
    RANDOM_WEIGHTS_WARNING,
    AudioEmbedder,
    ClapEmbedder,
    EmbedderName,
    VGGishEmbedder,
    make_embedder,
)
from .embedding_cache import EmbeddingCache
from .frechet import (
    FADInfinityResult,
    embedding_statistics,
    fad_from_embeddings,
    fad_infinity,
    frechet_distance,
    per_clip_fad,
    trace_sqrt_product,
)
from .scoring import FADResult, compute_fad
from .vggish import (
    CHECKPOINT_URL,
    PCA_PARAMS_URL,
    VGGish,
    VGGishPostprocessor,
    load_pca_params,
    load_vggish_state_dict,
    log_mel_spectrogram,
    random_vggish_state_dict,
    waveform_to_examples,
)

__all__ = [
    "CHECKPOINT_URL",
    "EMBEDDER_NAMES",
    "PCA_PARAMS_URL",
    "RANDOM_WEIGHTS_WARNING",
    "AudioEmbedder",
    "ClapEmbedder",
    "EmbedderName",
    "EmbeddingCache",
    "FADInfinityResult",
    "FADResult",
    "VGGish",
    "VGGishEmbedder",
    "VGGishPostprocessor",
    "audio_file_extensions",
    "compute_fad",
    "embedding_statistics",
    "fad_from_embeddings",
    "fad_infinity",
    "frechet_distance",
    "list_audio_files",
    "load_pca_params",
    "load_vggish_state_dict",
    "make_embedder",
    "log_mel_spectrogram",
    "per_clip_fad",
    "random_vggish_state_dict",
    "trace_sqrt_product",
    "waveform_to_examples",
]
