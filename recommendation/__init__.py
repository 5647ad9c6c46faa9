"""Background-sound recommendation from a large sound library: a FAISS index over global audio embeddings,
re-ranked by the retrieval model's own similarity (multi-grained for SoS; the Wav2CLIP and CLAP baselines too).

- :mod:`.library_index`: `SoundLibraryIndex` (library sync, model identity, queries, the Hub);
- :mod:`.index_files`: the index folder's files (typed ``index.json``, checksums, load and save);
- :mod:`.coarse_index` (stage 1), :mod:`.rerank_store` (stage 2's features), :mod:`.story` (one sound per scene).
"""

from .coarse_index import AUTO_FLAT_MAX, INDEX_TYPES, CoarseIndex, CoarseIndexSettings, IndexType
from .index_files import EmbeddingSettings, IndexConfig, ModelIdentity
from .library import HUB_PREFIX, hub_repo_id
from .library_index import (
    MAX_CANDIDATES,
    MAX_STORY_SCENES,
    RERANK_CHUNK_ROWS,
    AddReport,
    QueryKind,
    SoundLibraryIndex,
    query_kinds,
)
from .rerank_store import STORE_DTYPES, CorruptIndexError, RerankStore, StoreDtype
from .results import Recommendation, SceneRecommendation, printable
from .story import SceneSpan, scene_spans

__all__ = [
    "AUTO_FLAT_MAX",
    "HUB_PREFIX",
    "INDEX_TYPES",
    "MAX_CANDIDATES",
    "MAX_STORY_SCENES",
    "RERANK_CHUNK_ROWS",
    "STORE_DTYPES",
    "AddReport",
    "CoarseIndex",
    "CoarseIndexSettings",
    "CorruptIndexError",
    "EmbeddingSettings",
    "IndexConfig",
    "IndexType",
    "ModelIdentity",
    "QueryKind",
    "Recommendation",
    "RerankStore",
    "SceneRecommendation",
    "SceneSpan",
    "SoundLibraryIndex",
    "StoreDtype",
    "hub_repo_id",
    "printable",
    "query_kinds",
    "scene_spans",
]
