"""The re-rank store: what stage 2 needs of every clip, memory-mapped from disk.

Each ``add`` writes one shard of ``.npy`` files: the global audio embeddings f_a ``(n, dim)``, the
audio sequence features f_as ``(n, tokens, dim)`` (float16 by default) when the model has them (SoS;
the Wav2CLIP and CLAP baselines have one vector per clip, and their store has no token part), and a
CRC-32 per row over both. Old shards are never rewritten, so an incremental add costs only the new
clips. Every row read for re-ranking is checked against its CRC, so a corrupted store is reported,
never used; the index config holds each file's size and SHA-256 for a full check.
"""

from __future__ import annotations

import dataclasses
import math
import re
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from sound_of_story.core.atomic_files import atomic_path
from sound_of_story.core.hashing import file_sha256

StoreDtype = Literal["float16", "float32"]
STORE_DTYPES: tuple[StoreDtype, ...] = ("float16", "float32")
SHARD_PARTS = ("global", "tokens", "crc")
GLOBAL_ONLY_PARTS = ("global", "crc")


class CorruptIndexError(ValueError):
    """An index file is missing, truncated or does not match its checksum."""


def row_crc(global_row: np.ndarray, token_row: np.ndarray | None = None) -> int:
    crc = zlib.crc32(np.ascontiguousarray(global_row).data)
    return crc if token_row is None else zlib.crc32(np.ascontiguousarray(token_row).data, crc)


def pool_tokens(tokens: np.ndarray, groups: int | None) -> np.ndarray:
    """Average runs of consecutive tokens into ``groups`` tokens and L2-normalise them (None: unchanged).

    A smaller store for large libraries; the re-rank score then approximates the model's.
    """
    if groups is None or groups >= tokens.shape[1]:
        return tokens
    pooled = np.stack([part.mean(axis=1) for part in np.array_split(tokens, groups, axis=1)], axis=1)
    return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True).clip(min=1e-12)


@dataclasses.dataclass
class Shard:
    """Rows [start, start + count) of the store; ``files`` maps part -> {name, bytes, sha256}."""

    start: int
    count: int
    files: dict[str, dict]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class RerankStore:
    """Shards of global and sequence features under ``folder``, opened as read-only memory maps.

    ``num_tokens`` 0: a store of global embeddings only (a model without token features).
    """

    def __init__(self, folder: Path, shards: list[Shard], dtype: StoreDtype, num_tokens: int, dim: int):
        self.folder, self.shards, self.dtype, self.num_tokens, self.dim = Path(folder), shards, dtype, num_tokens, dim
        self._maps: dict[tuple[int, str], np.ndarray] = {}

    @property
    def num_rows(self) -> int:
        return sum(shard.count for shard in self.shards)

    @property
    def has_tokens(self) -> bool:
        return self.num_tokens > 0

    @property
    def parts(self) -> tuple[str, ...]:
        return SHARD_PARTS if self.has_tokens else GLOBAL_ONLY_PARTS

    def write_shard(self, name: str, global_embeds: np.ndarray, token_embeds: np.ndarray | None = None) -> Shard:
        """Write rows as a new shard named ``name`` (each file atomically) and register it.

        ``token_embeds`` is ``(n, num_tokens, dim)``, and None for a store without tokens.
        """
        tokens_fit = (
            token_embeds is not None and token_embeds.shape[1:] == (self.num_tokens, self.dim)
            if self.has_tokens
            else token_embeds is None
        )
        if not tokens_fit or global_embeds.shape[1:] != (self.dim,):
            tokens_shape = None if token_embeds is None else token_embeds.shape
            raise ValueError(
                f"features of shape {global_embeds.shape}, {tokens_shape} do not fit a store of {self.num_tokens} x {self.dim}"
            )
        global_embeds = global_embeds.astype(self.dtype)
        if token_embeds is None:
            crc = np.array([row_crc(g) for g in global_embeds], dtype=np.uint32)
            arrays = (global_embeds, crc)
        else:
            token_embeds = token_embeds.astype(self.dtype)
            crc = np.array([row_crc(g, t) for g, t in zip(global_embeds, token_embeds)], dtype=np.uint32)
            arrays = (global_embeds, token_embeds, crc)
        files = {}
        for part, array in zip(self.parts, arrays):
            path = self.folder / f"{name}-{part}.npy"
            with atomic_path(path) as tmp:
                np.save(tmp, array)
            files[part] = {"name": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
        shard = Shard(self.num_rows, len(crc), files)
        self.shards.append(shard)
        return shard

    def file_names(self) -> list[str]:
        return [info["name"] for shard in self.shards for info in shard.files.values()]

    def check_files(self, full: bool = False) -> None:
        """Shard layout and file names, each ``.npy`` header against the store's shape and dtype, sizes of every
        file, SHA-256 of the CRC arrays (small), and of everything with ``full``."""
        self._check_layout()
        for shard in self.shards:
            for part, info in shard.files.items():
                path = self.folder / info["name"]
                if not path.is_file():
                    raise CorruptIndexError(f"index file {path} is missing")
                if path.stat().st_size != info["bytes"]:
                    raise CorruptIndexError(
                        f"index file {path} has {path.stat().st_size} bytes, the index config says {info['bytes']} (partly written?)"
                    )
                self._check_npy_header(path, part, shard.count)
                if (full or part == "crc") and file_sha256(path) != info["sha256"]:
                    raise CorruptIndexError(f"index file {path} does not match its SHA-256 checksum (corrupted)")

    def _check_layout(self) -> None:
        """Shards follow each other from row 0, each with exactly this store's parts, under names the store writes."""
        start = 0
        for number, shard in enumerate(self.shards):
            if not isinstance(shard.count, int) or shard.count < 0 or shard.start != start:
                raise CorruptIndexError(f"shard {number} of the re-rank store does not continue at row {start}")
            if not isinstance(shard.files, dict) or set(shard.files) != set(self.parts):
                raise CorruptIndexError(f"shard {number} of the re-rank store does not have the parts {self.parts}")
            for part, info in shard.files.items():
                name = info.get("name") if isinstance(info, dict) else None
                if not isinstance(name, str) or not re.fullmatch(rf"[0-9]{{6,}}-{part}\.npy", name):
                    raise CorruptIndexError(f"shard {number} of the re-rank store names a {part} file {name!r}")
                if not isinstance(info.get("bytes"), int):
                    raise CorruptIndexError(f"shard {number} of the re-rank store gives no size for {name}")
            start += shard.count

    def _check_npy_header(self, path: Path, part: str, count: int) -> None:
        """The ``.npy`` file's own header must give the shape and dtype this store reads, and its size must match."""
        expected_shape = {"global": (count, self.dim), "tokens": (count, self.num_tokens, self.dim), "crc": (count,)}[
            part
        ]
        expected_dtype = np.dtype(np.uint32 if part == "crc" else self.dtype)
        try:
            with open(path, "rb") as file:
                version = np.lib.format.read_magic(file)
                read_header = {
                    (1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0,
                }.get(version)
                if read_header is None:
                    raise ValueError(f"format version {version}")
                shape, fortran_order, dtype = read_header(file)
                header_bytes = file.tell()
        except (ValueError, OSError) as err:
            raise CorruptIndexError(f"index file {path} is not a .npy array ({err})") from None
        if shape != expected_shape or fortran_order or dtype != expected_dtype:
            raise CorruptIndexError(
                f"index file {path} holds {dtype} {shape}, the store expects {expected_dtype} {expected_shape}"
            )
        if path.stat().st_size != header_bytes + math.prod(shape) * dtype.itemsize:
            raise CorruptIndexError(f"index file {path} does not have the size its header gives (partly written?)")

    def _map(self, shard_index: int, part: str) -> np.ndarray:
        key = (shard_index, part)
        if key not in self._maps:
            self._maps[key] = np.load(
                self.folder / self.shards[shard_index].files[part]["name"], mmap_mode="r", allow_pickle=False
            )
        return self._maps[key]

    def _locate(self, rows: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(shard, positions in ``rows``, offsets inside the shard) for each shard touched."""
        starts = np.array([shard.start for shard in self.shards])
        which = np.searchsorted(starts, rows, side="right") - 1
        return [(s, np.flatnonzero(which == s), rows[which == s] - starts[s]) for s in np.unique(which)]

    def global_rows(self, rows: np.ndarray) -> np.ndarray:
        """f_a of ``rows`` as float32 (not CRC-checked: stage 1 only orders candidates with them)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        for shard, positions, offsets in self._locate(rows):
            out[positions] = self._map(shard, "global")[offsets]
        return out

    def global_view(self) -> GlobalEmbeddingsView:
        """Every row's f_a as an array-like (slices and index arrays), read shard by shard on demand."""
        return GlobalEmbeddingsView(self)

    def rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """f_a and f_as of ``rows`` as float32 (f_as None for a store without tokens), after checking each row's CRC."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.num_rows):
            raise IndexError(f"rows outside the store of {self.num_rows}")
        global_out = np.empty((len(rows), self.dim), dtype=np.float32)
        token_out = np.empty((len(rows), self.num_tokens, self.dim), dtype=np.float32) if self.has_tokens else None
        for shard, positions, offsets in self._locate(rows):
            order = np.argsort(offsets)  # ascending offsets read the memory map sequentially
            g = self._map(shard, "global")[offsets[order]]
            t = self._map(shard, "tokens")[offsets[order]] if self.has_tokens else None
            crc = self._map(shard, "crc")[offsets[order]]
            for i in range(len(order)):
                if row_crc(g[i], None if t is None else t[i]) != int(crc[i]):
                    name = self.shards[shard].files["tokens" if self.has_tokens else "global"]["name"]
                    raise CorruptIndexError(
                        f"row {int(rows[positions[order[i]]])} of the re-rank store ({name}) fails its CRC check (corrupted)"
                    )
            # torch converts float16 to float32 several times faster than numpy.
            global_out[positions[order]] = torch.from_numpy(np.ascontiguousarray(g)).float().numpy()
            if token_out is not None:
                token_out[positions[order]] = torch.from_numpy(np.ascontiguousarray(t)).float().numpy()
        return global_out, token_out


class GlobalEmbeddingsView:
    """``store.global_rows`` behind array indexing, so code written for an ``(N, dim)`` array reads the store lazily."""

    def __init__(self, store: RerankStore):
        self.store = store
        self.shape = (store.num_rows, store.dim)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        rows = np.arange(self.shape[0])[key] if isinstance(key, slice) else np.asarray(key)
        return self.store.global_rows(rows)


__all__ = [
    "STORE_DTYPES",
    "CorruptIndexError",
    "RerankStore",
    "Shard",
    "StoreDtype",
    "pool_tokens",
    "row_crc",
]
