"""Background-sound recommendation from a large sound library: a FAISS index over global audio embeddings, re-ranked by the retrieval model's multi-grained similarity."""

from .coarse_index import AUTO_FLAT_MAX, INDEX_TYPES, CoarseIndex, CoarseIndexSettings, IndexType
from .library_index import (
    AddReport,
    EmbeddingSettings,
    Recommendation,
    SoundLibraryIndex,
    load_model,
    model_fingerprint,
)
from .rerank_store import STORE_DTYPES, CorruptIndexError, RerankStore, StoreDtype
from .story import SceneRecommendation, SceneSpan, scene_spans

__all__ = [
    "AUTO_FLAT_MAX",
    "INDEX_TYPES",
    "STORE_DTYPES",
    "AddReport",
    "CoarseIndex",
    "CoarseIndexSettings",
    "CorruptIndexError",
    "EmbeddingSettings",
    "IndexType",
    "Recommendation",
    "RerankStore",
    "SceneRecommendation",
    "SceneSpan",
    "SoundLibraryIndex",
    "StoreDtype",
    "load_model",
    "model_fingerprint",
    "scene_spans",
]
