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
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
from tqdm.auto import tqdm

from .rerank_store import CorruptIndexError

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
        for name in ("nprobe", "hnsw_m", "ef_construction", "ef_search", "refine_factor", "nlist", "pq_m", "pq_nbits"):
            value = getattr(self, name)
            if value is None and name in ("nlist", "pq_m", "pq_nbits"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.pq_nbits is not None and self.pq_nbits > 16:
            raise ValueError(f"pq_nbits must be at most 16 (2**16 centroids per sub-quantizer), got {self.pq_nbits}")


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
    def load(
        cls, path: Path, settings: CoarseIndexSettings, kind: str, trained_on: int, *, dim: int, num_vectors: int
    ) -> CoarseIndex:
        """Read a saved index after `check_coarse_file` (the index config's kind, ``dim`` and ``num_vectors``
        against the file's headers and size). Raises `CorruptIndexError` for a file that fails the check or that
        faiss cannot read."""
        check_coarse_file(path, kind, dim=dim, num_vectors=num_vectors, settings=settings, trained_on=trained_on)
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as err:  # faiss raises its FaissException as RuntimeError
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CorruptIndexError(f"coarse index {path.name} cannot be read by faiss ({first_line})") from None
        if index.ntotal != num_vectors or index.d != dim:
            raise CorruptIndexError(f"coarse index {path.name} does not hold {num_vectors} vectors of {dim} dims")
        return cls(index, settings, kind, trained_on)


# ------------------------------------------------------------------ checking a saved file before faiss reads it
#
# faiss allocates what a file's length fields claim before reading the data behind them (up to 1 TiB per
# vector), so a small crafted file can make it allocate gigabytes. The three kinds this module writes are walked
# here field by field: every fourcc, dimension and count must be the one the index config implies, and every
# length must fit in the bytes left in the file; only then does faiss read it. Layouts follow faiss's
# impl/index_write.cpp (IndexFlatIP "IxFI", IndexHNSWFlat "IHNf", IndexIVFPQ "IwPQ" with "ilar" lists).

_METRIC_INNER_PRODUCT = 0
_FOURCC = {"flat": b"IxFI", "hnsw": b"IHNf", "ivfpq": b"IwPQ"}


class _FaissFileWalker:
    """Reads a faiss file's fields in order, refusing anything that does not fit in the file."""

    def __init__(self, path: Path, file):
        self.path, self.file, self.size = path, file, path.stat().st_size

    def fail(self, what: str) -> CorruptIndexError:
        return CorruptIndexError(f"coarse index {self.path.name} is corrupted or crafted: {what}")

    def remaining(self) -> int:
        return self.size - self.file.tell()

    def read(self, fmt: str) -> tuple:
        count = struct.calcsize("<" + fmt)
        data = self.file.read(count)
        if len(data) != count:
            raise self.fail("the file ends inside a header")
        return struct.unpack("<" + fmt, data)

    def expect_fourcc(self, fourcc: bytes, what: str) -> None:
        got = self.file.read(4)
        if got != fourcc:
            raise self.fail(f"{what} is {got!r}, expected {fourcc!r}")

    def expect(self, value: int, expected: int, what: str) -> None:
        if value != expected:
            raise self.fail(f"{what} is {value}, the index config implies {expected}")

    def vector(self, item_bytes: int, what: str, expected: int | None = None) -> int:
        """A length-prefixed vector (uint64 count, then the items): checks and skips it, returns its length."""
        (count,) = self.read("Q")
        if expected is not None:
            self.expect(count, expected, f"{what} length")
        if count * item_bytes > self.remaining():
            raise self.fail(f"{what} claims {count * item_bytes:,} bytes but only {self.remaining():,} follow")
        self.file.seek(count * item_bytes, 1)
        return count

    def index_header(self, dim: int, ntotal: int, what: str) -> None:
        d, total, _, _, is_trained, metric = self.read("iqqqBi")
        self.expect(d, dim, f"{what} dimension")
        self.expect(total, ntotal, f"{what} vector count")
        if is_trained > 1:
            raise self.fail(f"{what} has an invalid is_trained byte {is_trained}")
        self.expect(metric, _METRIC_INNER_PRODUCT, f"{what} metric")

    def flat(self, dim: int, ntotal: int, what: str) -> None:
        self.expect_fourcc(_FOURCC["flat"], what)
        self.index_header(dim, ntotal, what)
        # IndexFlat's codes are written as a count of floats, then the floats.
        self.vector(4, f"{what} vectors", expected=ntotal * dim)

    def hnsw(self, dim: int, ntotal: int) -> None:
        self.expect_fourcc(_FOURCC["hnsw"], "HNSW index")
        self.index_header(dim, ntotal, "HNSW index")
        levels = self.vector(8, "HNSW level probabilities")
        self.vector(4, "HNSW neighbours per level", expected=levels + 1)
        self.vector(4, "HNSW node levels", expected=ntotal)
        self.vector(8, "HNSW offsets", expected=ntotal + 1)
        self.vector(4, "HNSW neighbours")
        self.read("iiiii")  # entry point, max level, efConstruction, efSearch, a deprecated field
        self.flat(dim, ntotal, "HNSW storage")

    def ivfpq(self, dim: int, ntotal: int, nlist: int, pq_m: int, nbits: int) -> None:
        self.expect_fourcc(_FOURCC["ivfpq"], "IVF-PQ index")
        self.index_header(dim, ntotal, "IVF-PQ index")
        file_nlist, _ = self.read("QQ")
        self.expect(file_nlist, nlist, "IVF-PQ list count")
        self.flat(dim, nlist, "IVF-PQ quantizer")
        (direct_map,) = self.read("B")
        self.expect(direct_map, 0, "IVF-PQ direct map type")
        self.vector(8, "IVF-PQ direct map", expected=0)
        by_residual, code_size = self.read("BQ")
        if by_residual > 1:
            raise self.fail(f"IVF-PQ has an invalid by_residual byte {by_residual}")
        self.expect(code_size, (pq_m * nbits + 7) // 8, "IVF-PQ code size")
        pq_d, file_m, file_nbits = self.read("QQQ")
        self.expect(pq_d, dim, "PQ dimension")
        self.expect(file_m, pq_m, "PQ sub-quantizers")
        self.expect(file_nbits, nbits, "PQ bits")
        self.vector(4, "PQ centroids", expected=dim * (1 << nbits))
        self.expect_fourcc(b"ilar", "IVF-PQ inverted lists")
        lists_nlist, lists_code_size = self.read("QQ")
        self.expect(lists_nlist, nlist, "inverted list count")
        self.expect(lists_code_size, code_size, "inverted list code size")
        sizes = self._list_sizes(nlist)
        self.expect(sum(sizes), ntotal, "vectors in the inverted lists")
        self.vector_bytes(sum(sizes) * (code_size + 8), "inverted lists")

    def _list_sizes(self, nlist: int) -> list[int]:
        list_type = self.file.read(4)
        if list_type == b"full":
            count = self.vector(8, "inverted list sizes", expected=nlist)
            self.file.seek(-8 * count, 1)
            return list(struct.unpack(f"<{count}Q", self.file.read(8 * count)))
        if list_type == b"sprs":
            count = self.vector(8, "sparse inverted list sizes")
            if count % 2 or count > 2 * nlist:
                raise self.fail(f"sparse inverted list sizes have {count} entries for {nlist} lists")
            self.file.seek(-8 * count, 1)
            pairs = struct.unpack(f"<{count}Q", self.file.read(8 * count))
            sizes = [0] * nlist
            for list_number, size in zip(pairs[::2], pairs[1::2]):
                if list_number >= nlist:
                    raise self.fail(f"inverted list {list_number} of {nlist}")
                sizes[list_number] = size
            return sizes
        raise self.fail(f"inverted list type {list_type!r}")

    def vector_bytes(self, count: int, what: str) -> None:
        if count > self.remaining():
            raise self.fail(f"{what} claim {count:,} bytes but only {self.remaining():,} follow")
        self.file.seek(count, 1)

    def end(self) -> None:
        if self.remaining():
            raise self.fail(f"{self.remaining():,} unexpected bytes at the end")


def check_coarse_file(
    path: Path, kind: str, *, dim: int, num_vectors: int, settings: CoarseIndexSettings, trained_on: int
) -> None:
    """Check a saved coarse index against what the index config says it holds, before faiss reads it.

    The file must be of ``kind`` (flat, hnsw or ivfpq) over ``num_vectors`` vectors of ``dim`` dimensions with the
    inner-product metric; an IVF-PQ file must have the lists and codes `ivfpq_shape` gives for ``trained_on``
    vectors; every length must fit in the file, and nothing may follow. Raises `CorruptIndexError`.
    """
    if kind not in _FOURCC:
        raise CorruptIndexError(f"coarse index {path.name}: unknown kind {kind!r} in the index config")
    with open(path, "rb") as file:
        walker = _FaissFileWalker(Path(path), file)
        if kind == "flat":
            walker.flat(dim, num_vectors, "flat index")
        elif kind == "hnsw":
            walker.hnsw(dim, num_vectors)
        else:
            if trained_on < 1:
                raise walker.fail("an IVF-PQ index trained on no vectors")
            walker.ivfpq(dim, num_vectors, *ivfpq_shape(trained_on, dim, settings))
        walker.end()


__all__ = [
    "AUTO_FLAT_MAX",
    "INDEX_TYPES",
    "CoarseIndex",
    "CoarseIndexSettings",
    "IndexType",
    "check_coarse_file",
    "ivfpq_shape",
    "resolve_index_type",
]
