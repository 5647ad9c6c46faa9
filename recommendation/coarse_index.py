"""Stage 1 of a recommendation: FAISS search over the library's global audio embeddings.

The embeddings are L2-normalised, so inner product is the model's S_a,v (eq. 1). ``flat`` is
exact; ``ivfpq`` (an inverted file over product-quantised codes) and ``hnsw`` (a graph) are
approximate, and their candidates are refined by exact inner products read from the re-rank
store (``refine_factor`` times more candidates than asked, as faiss's ``IndexRefine``), so the
returned order is exact among the candidates found.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
from tqdm.auto import tqdm

IndexType = Literal["auto", "flat", "ivfpq", "hnsw"]
INDEX_TYPES: tuple[IndexType, ...] = ("auto", "flat", "ivfpq", "hnsw")
# Up to this many clips `auto` keeps exact search: a flat scan of 100k x 512 floats takes ~10 ms on 2 cores.
AUTO_FLAT_MAX = 100_000
# Vectors added per faiss call: bounded memory when the embeddings are memory-mapped.
ADD_CHUNK = 65_536
# Training points per IVF list (faiss warns below 39) and the cap on the training sample.
TRAIN_POINTS_PER_LIST = 64
MAX_TRAIN_POINTS = 131_072
# An IVF-PQ index trained on fewer than this fraction of the library is retrained on the next add.
RETRAIN_BELOW = 0.5


@dataclasses.dataclass
class CoarseIndexSettings:
    """How the coarse index is built and searched (recorded in the index config).

    nlist / pq_m / pq_nbits: IVF-PQ lists, sub-quantisers and bits per code (None: chosen from the library size);
    nprobe: IVF lists visited per query; hnsw_m / ef_construction / ef_search: the HNSW graph;
    refine_factor: approximate candidates fetched per requested one and re-scored exactly.
    """

    index_type: IndexType = "auto"
    nlist: int | None = None
    pq_m: int | None = None
    pq_nbits: int | None = None
    nprobe: int = 64
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    refine_factor: int = 4

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise ValueError(f"index type must be one of {INDEX_TYPES}, got {self.index_type!r}")
        for name in ("nprobe", "hnsw_m", "ef_construction", "ef_search", "refine_factor"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def resolve_index_type(requested: IndexType, num_vectors: int) -> Literal["flat", "ivfpq", "hnsw"]:
    """``auto`` is exact search up to `AUTO_FLAT_MAX` clips and IVF-PQ above."""
    if requested != "auto":
        return requested
    return "flat" if num_vectors <= AUTO_FLAT_MAX else "ivfpq"


def ivfpq_shape(num_vectors: int, dim: int, settings: CoarseIndexSettings) -> tuple[int, int, int]:
    """(nlist, pq_m, pq_nbits): about sqrt(N) lists (a power of two), 8-byte-per-8-dims codes, 8 bits
    (fewer for tiny libraries, which could not train 256 centroids)."""
    nbits = settings.pq_nbits or max(1, min(8, int(math.log2(max(2, num_vectors)))))
    nlist = settings.nlist or 2 ** max(0, round(math.log2(math.sqrt(max(1, num_vectors)))))
    nlist = max(1, min(nlist, num_vectors // 39 or 1))
    pq_m = settings.pq_m or max(m for m in range(1, max(1, dim // 8) + 1) if dim % m == 0)
    if dim % pq_m:
        raise ValueError(f"pq_m={pq_m} must divide the embedding dimension {dim}")
    return nlist, pq_m, nbits


def _rows(vectors: np.ndarray, start: int, stop: int) -> np.ndarray:
    return np.ascontiguousarray(vectors[start:stop], dtype=np.float32)


class CoarseIndex:
    """A faiss index over rows 0..N-1 of the global embeddings (the row is the id)."""

    def __init__(self, index: faiss.Index, settings: CoarseIndexSettings, kind: str, trained_on: int):
        self.index, self.settings, self.kind, self.trained_on = index, settings, kind, trained_on
        self._apply_search_settings()

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(cls, vectors: np.ndarray, settings: CoarseIndexSettings, *, progress: bool = False) -> CoarseIndex:
        """An index over ``vectors`` (N x dim, any float dtype, memory-mapped is fine)."""
        num, dim = vectors.shape
        if num == 0:
            raise ValueError("cannot build an index over an empty library")
        kind = resolve_index_type(settings.index_type, num)
        trained_on = 0
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = settings.ef_construction
        else:
            nlist, pq_m, nbits = ivfpq_shape(num, dim, settings)
            index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, pq_m, nbits, faiss.METRIC_INNER_PRODUCT)
            count = min(num, max(TRAIN_POINTS_PER_LIST * nlist, 256 * 39), MAX_TRAIN_POINTS)
            sample = np.sort(np.random.default_rng(0).choice(num, size=count, replace=False))
            index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
            trained_on = num
        built = cls(index, settings, kind, trained_on)
        built.add(vectors, progress=progress)
        return built

    def add(self, vectors: np.ndarray, *, progress: bool = False) -> None:
        """Append rows (their ids continue from `ntotal`)."""
        with tqdm(total=len(vectors), desc=f"{self.kind} index", unit="clip", disable=not progress) as bar:
            for start in range(0, len(vectors), ADD_CHUNK):
                chunk = _rows(vectors, start, start + ADD_CHUNK)
                self.index.add(chunk)
                bar.update(len(chunk))

    def needs_rebuild(self, num_vectors: int) -> bool:
        """True when ``num_vectors`` clips call for another index kind, or IVF-PQ centroids trained on too few of them."""
        if resolve_index_type(self.settings.index_type, num_vectors) != self.kind:
            return True
        return self.kind == "ivfpq" and self.trained_on < RETRAIN_BELOW * num_vectors

    def _apply_search_settings(self) -> None:
        if self.kind == "ivfpq":
            faiss.extract_index_ivf(self.index).nprobe = self.settings.nprobe
        elif self.kind == "hnsw":
            self.index.hnsw.efSearch = self.settings.ef_search

    def set_search(
        self, *, nprobe: int | None = None, ef_search: int | None = None, refine_factor: int | None = None
    ) -> None:
        """Change the search-time settings (they are not part of what the index holds)."""
        changes = {
            k: v
            for k, v in {"nprobe": nprobe, "ef_search": ef_search, "refine_factor": refine_factor}.items()
            if v is not None
        }
        self.settings = dataclasses.replace(self.settings, **changes)
        self._apply_search_settings()

    def search(
        self, queries: np.ndarray, k: int, exact_rows: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows of largest inner product with each query: (scores, rows), both ``(num_queries, k)``,
        rows -1 where fewer exist. Approximate kinds fetch ``refine_factor * k`` and re-score them with
        ``exact_rows(rows) -> float32 vectors`` when given."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, self.ntotal)
        if self.kind == "flat" or exact_rows is None:
            scores, rows = self.index.search(queries, k)
            return scores, rows
        fetch = min(self.ntotal, k * self.settings.refine_factor)
        _, found = self.index.search(queries, fetch)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        for q, candidates in enumerate(found):
            candidates = candidates[candidates >= 0]
            exact = exact_rows(candidates) @ queries[q]
            order = np.lexsort((candidates, -exact))[:k]
            scores[q, : len(order)], rows[q, : len(order)] = exact[order], candidates[order]
        return scores, rows

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, settings: CoarseIndexSettings, kind: str, trained_on: int) -> CoarseIndex:
        return cls(faiss.read_index(str(path)), settings, kind, trained_on)


__all__ = [
    "AUTO_FLAT_MAX",
    "INDEX_TYPES",
    "CoarseIndex",
    "CoarseIndexSettings",
    "IndexType",
    "ivfpq_shape",
    "resolve_index_type",
]
