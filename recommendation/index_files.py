"""The files of a sound library index folder: the typed config (``index.json``), checksums, load and save.

An index folder holds::

    index.json                 the config: model id, revision and weight fingerprint, embedding
                               settings, coarse-index settings, and the size and SHA-256 of every
                               file below (the config carries a checksum of itself too)
    manifest-GEN.jsonl         one row per store row: clip id, path, content SHA-256, active flag
    coarse-GEN.faiss           the FAISS index over the global embeddings
    store/NNNNNN-{global,tokens,crc}.npy   the re-rank store (see rerank_store.py; no tokens file
                               for a model with global embeddings only)
    failures.jsonl             clips of the last run that could not be read

Saving writes the new files first and ``index.json`` last (atomically), so a reader sees either
the old or the new index, never a mix; a partly written or corrupted index fails its checksums.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from sound_of_story.core.atomic_files import atomic_path, write_json_atomic, write_jsonl_atomic
from sound_of_story.core.hashing import file_sha256, json_sha256

from .coarse_index import CoarseIndex, CoarseIndexSettings
from .library import LibrarySource, check_clip_id, clip_path
from .rerank_store import STORE_DTYPES, CorruptIndexError, RerankStore, Shard, StoreDtype

FORMAT_VERSION = 1
CONFIG_NAME = "index.json"
FAILURES_NAME = "failures.jsonl"
STORE_FOLDER = "store"
# The only names index.json may give its files: plain names in the index folder, never a path elsewhere.
MANIFEST_FILE_NAME = re.compile(r"manifest-[0-9]{6,}\.jsonl")
COARSE_FILE_NAME = re.compile(r"coarse-[0-9]{6,}\.faiss")
COARSE_KINDS = ("flat", "ivfpq", "hnsw")


@dataclasses.dataclass
class EmbeddingSettings:
    """How the library audio was turned into features; an index only accepts clips and queries encoded the same way.

    The audio side follows the model's evaluation protocol: the processor's deterministic crop
    (``audio_crop="energetic"``, ``audio_crops`` windows). ``model_tokens`` is the number of audio token
    features the model gives per clip (0 for a model with one global embedding per clip); ``store_tokens``
    pools them to that many tokens (None: every token, exact re-ranking). ``num_frames`` is None for a
    processor that takes no frames, ``temperature`` None for a model without the multi-grained similarity.
    """

    dim: int
    model_tokens: int
    store_tokens: int | None
    store_dtype: StoreDtype
    audio_crop: str
    audio_crops: int
    sampling_rate: int
    audio_window_seconds: float
    num_frames: int | None
    max_text_length: int
    temperature: float | None

    @property
    def num_tokens(self) -> int:
        return self.model_tokens if self.store_tokens is None else min(self.store_tokens, self.model_tokens)


@dataclasses.dataclass
class ModelIdentity:
    """The model an index was built with: folder or Hub id, Hub commit (None for a folder), weights fingerprint."""

    id: str
    revision: str | None
    fingerprint: str


@dataclasses.dataclass
class FileRecord:
    """A file of the index folder as the config records it: name, size and SHA-256."""

    name: str
    bytes: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> FileRecord:
        return cls(path.name, path.stat().st_size, file_sha256(path))

    def check(self, folder: Path, what: str, name_pattern: re.Pattern) -> Path:
        """The file's path after checking its name is one the index writes (``name_pattern``: a plain name in
        ``folder``), that it exists and matches its size and checksum (else `CorruptIndexError`)."""
        if not isinstance(self.name, str) or not name_pattern.fullmatch(self.name):
            raise CorruptIndexError(f"index {folder}: the {what} file name {self.name!r} is not one an index writes")
        path = folder / self.name
        if not path.is_file():
            raise CorruptIndexError(f"index {folder}: {what} file {self.name} is missing (partly written index?)")
        if path.stat().st_size != self.bytes or file_sha256(path) != self.sha256:
            raise CorruptIndexError(
                f"index {folder}: {what} file {self.name} does not match its checksum (corrupted or partly written)"
            )
        return path


@dataclasses.dataclass
class ManifestRecord:
    """The manifest file, and how many of its rows there are and how many are active."""

    file: FileRecord
    num_rows: int
    num_active: int

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self.file), "num_rows": self.num_rows, "num_active": self.num_active}

    @classmethod
    def from_dict(cls, data: dict) -> ManifestRecord:
        return cls(FileRecord(data["name"], data["bytes"], data["sha256"]), data["num_rows"], data["num_active"])


@dataclasses.dataclass
class CoarseRecord:
    """The coarse index: its settings and, once saved, its kind, training size and file."""

    settings: CoarseIndexSettings
    kind: str | None = None
    trained_on: int = 0
    file: FileRecord | None = None

    def to_dict(self) -> dict:
        data = {"settings": dataclasses.asdict(self.settings)}
        if self.file is not None:
            data.update(kind=self.kind, trained_on=self.trained_on, **dataclasses.asdict(self.file))
        return data

    @classmethod
    def from_dict(cls, data: dict) -> CoarseRecord:
        settings = CoarseIndexSettings(**data["settings"])
        if "name" not in data:
            return cls(settings)
        file = FileRecord(data["name"], data["bytes"], data["sha256"])
        return cls(settings, data["kind"], data["trained_on"], file)


@dataclasses.dataclass
class StoreRecord:
    """The re-rank store's layout and shards."""

    dtype: StoreDtype
    num_tokens: int
    dim: int
    shards: list[Shard]

    def to_dict(self) -> dict:
        return {
            "dtype": self.dtype,
            "num_tokens": self.num_tokens,
            "dim": self.dim,
            "shards": [s.to_dict() for s in self.shards],
        }

    @classmethod
    def from_dict(cls, data: dict) -> StoreRecord:
        return cls(data["dtype"], data["num_tokens"], data["dim"], [Shard(**s) for s in data["shards"]])


@dataclasses.dataclass
class IndexConfig:
    """What ``index.json`` holds. ``manifest`` and ``store`` are None until the first save."""

    model: ModelIdentity
    embedding: EmbeddingSettings
    library: LibrarySource
    coarse: CoarseRecord
    generation: int = 0
    manifest: ManifestRecord | None = None
    store: StoreRecord | None = None
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        data = {
            "format_version": self.format_version,
            "generation": self.generation,
            "model": dataclasses.asdict(self.model),
            "embedding": dataclasses.asdict(self.embedding),
            "library": self.library.to_dict(),
            "coarse": self.coarse.to_dict(),
        }
        if self.manifest is not None:
            data["manifest"] = self.manifest.to_dict()
        if self.store is not None:
            data["store"] = self.store.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> IndexConfig:
        return cls(
            model=ModelIdentity(**data["model"]),
            embedding=EmbeddingSettings(**data["embedding"]),
            library=LibrarySource(**data["library"]),
            coarse=CoarseRecord.from_dict(data["coarse"]),
            generation=data["generation"],
            manifest=ManifestRecord.from_dict(data["manifest"]) if "manifest" in data else None,
            store=StoreRecord.from_dict(data["store"]) if "store" in data else None,
            format_version=data["format_version"],
        )


def read_config(folder: Path) -> IndexConfig:
    """``folder/index.json`` after checking its own checksum and format version.

    Raises:
        CorruptIndexError: no ``index.json`` (not an index, or a partly written one), or it fails its checksum.
        ValueError: a format version or layout this version does not read.
    """
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CorruptIndexError(
            f"{folder} is not a sound library index, or was not completely written: no {CONFIG_NAME}"
        )
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        body = stored["index"]
        intact = json_sha256(body, ensure_ascii=False) == stored["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        intact = False
    if not intact:
        raise CorruptIndexError(f"{path} is corrupted (does not match its checksum)")
    if body.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: index format {body.get('format_version')} is not supported (this version reads {FORMAT_VERSION})"
        )
    try:
        config = IndexConfig.from_dict(body)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CorruptIndexError(
            f"{path} does not have the layout of an index config ({type(err).__name__}: {err})"
        ) from None
    if config.library.kind not in ("folder", "dataset") or not isinstance(config.library.location, str):
        raise CorruptIndexError(f"{path}: the library {config.library!r} is neither a folder nor a dataset")
    return config


def write_config(folder: Path, config: IndexConfig) -> None:
    """Write ``folder/index.json`` atomically, with the checksum of its body."""
    body = config.to_dict()
    write_json_atomic(folder / CONFIG_NAME, {"index": body, "sha256": json_sha256(body, ensure_ascii=False)})


@dataclasses.dataclass
class IndexFiles:
    """An index folder's contents, opened: the config, the manifest rows, the coarse index and the re-rank store."""

    config: IndexConfig
    manifest: list[dict]
    coarse: CoarseIndex
    store: RerankStore


def load_index_files(folder: Path, *, verify: bool = False) -> IndexFiles:
    """Open an index folder after checking every file against the config.

    Checks the config's own checksum, the manifest and coarse index files, and the store's file sizes and CRC
    arrays (``verify=True`` hashes every store file too), and that all three hold the same number of clips.
    """
    config = read_config(folder)
    if config.manifest is None or config.store is None or config.coarse.file is None:
        raise CorruptIndexError(f"{folder / CONFIG_NAME} names no manifest, store or coarse index file")
    _check_store_layout(folder, config)
    manifest_path = config.manifest.file.check(folder, "manifest", MANIFEST_FILE_NAME)
    manifest = read_manifest(manifest_path, config.library)
    info = config.store
    store = RerankStore(folder / STORE_FOLDER, list(info.shards), info.dtype, info.num_tokens, info.dim)
    store.check_files(full=verify)
    if not (len(manifest) == store.num_rows == config.manifest.num_rows):
        raise CorruptIndexError(
            f"index {folder}: manifest ({len(manifest)}), store ({store.num_rows}) and index.json "
            f"({config.manifest.num_rows}) disagree on the number of clips"
        )
    coarse_path = config.coarse.file.check(folder, "coarse index", COARSE_FILE_NAME)
    coarse = CoarseIndex.load(
        coarse_path, config.coarse.settings, config.coarse.kind, config.coarse.trained_on,
        dim=config.embedding.dim, num_vectors=len(manifest),
    )  # fmt: skip
    return IndexFiles(config, manifest, coarse, store)


def _check_store_layout(folder: Path, config: IndexConfig) -> None:
    """The store and coarse index as index.json describes them must fit its embedding settings."""
    store, embedding, coarse = config.store, config.embedding, config.coarse
    if store.dtype not in STORE_DTYPES or store.dtype != embedding.store_dtype:
        raise CorruptIndexError(f"index {folder}: store dtype {store.dtype!r} is not the embedding's")
    if (store.dim, store.num_tokens) != (embedding.dim, embedding.num_tokens) or embedding.dim < 1:
        raise CorruptIndexError(
            f"index {folder}: the store's {store.num_tokens} x {store.dim} features are not the embedding's "
            f"{embedding.num_tokens} x {embedding.dim}"
        )
    if coarse.kind not in COARSE_KINDS or not isinstance(coarse.trained_on, int):
        raise CorruptIndexError(f"index {folder}: unknown coarse index kind {coarse.kind!r}")


def read_manifest(path: Path, library: LibrarySource) -> list[dict]:
    """The manifest's rows after checking each: its position, an active flag, a content SHA-256, a clip id inside
    the library (`library.check_clip_id`) and the path that id gives (`library.clip_path`).

    Every path an index names is its library's location joined with a checked clip id, so no row can point
    outside the library (a crafted ``../`` or absolute path is a `CorruptIndexError`).
    """
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptIndexError(f"manifest {path.name} is not JSON lines ({err})") from None
    for number, row in enumerate(rows):
        where = f"manifest {path.name}, row {number}"
        if not isinstance(row, dict):
            raise CorruptIndexError(f"{where} is not an object")
        if row.get("row") != number or not isinstance(row.get("active"), bool):
            raise CorruptIndexError(f"{where}: its row number or active flag is wrong")
        if not isinstance(row.get("sha256"), str) or not re.fullmatch(r"[0-9a-f]{64}", row["sha256"]):
            raise CorruptIndexError(f"{where}: no content SHA-256")
        try:
            clip_id = check_clip_id(row.get("clip_id"), library)
        except ValueError as err:
            raise CorruptIndexError(f"{where}: {err}") from None
        recorded = row.get("path")
        expected = clip_path(library, clip_id)
        same = recorded == expected or (
            library.kind == "folder" and isinstance(recorded, str) and Path(recorded) == Path(expected)
        )
        if not same:
            raise CorruptIndexError(
                f"{where}: path {recorded!r} is not clip {clip_id!r} of the library {library.location!r}"
            )
    return rows


def save_index_files(folder: Path, files: IndexFiles) -> IndexConfig:
    """Write the manifest and coarse index as new files, then ``index.json`` (atomically), then drop the old files.

    The store's shards are already on disk (each add writes its own). Returns the config as written.
    """
    generation = files.config.generation + 1
    manifest_path = folder / f"manifest-{generation:06d}.jsonl"
    write_jsonl_atomic(manifest_path, files.manifest)
    coarse_path = folder / f"coarse-{generation:06d}.faiss"
    with atomic_path(coarse_path) as tmp:
        files.coarse.save(tmp)
    store = files.store
    config = dataclasses.replace(
        files.config,
        generation=generation,
        manifest=ManifestRecord(
            FileRecord.of(manifest_path), len(files.manifest), sum(1 for row in files.manifest if row["active"])
        ),
        store=StoreRecord(store.dtype, store.num_tokens, store.dim, list(store.shards)),
        coarse=CoarseRecord(
            files.coarse.settings, files.coarse.kind, files.coarse.trained_on, FileRecord.of(coarse_path)
        ),
    )
    write_config(folder, config)
    keep = {CONFIG_NAME, FAILURES_NAME, STORE_FOLDER, manifest_path.name, coarse_path.name}
    for path in folder.iterdir():
        if path.name not in keep and path.suffix in (".jsonl", ".faiss"):
            path.unlink()
    return config


__all__ = [
    "CONFIG_NAME",
    "FAILURES_NAME",
    "FORMAT_VERSION",
    "STORE_FOLDER",
    "CoarseRecord",
    "CorruptIndexError",
    "EmbeddingSettings",
    "FileRecord",
    "IndexConfig",
    "IndexFiles",
    "ManifestRecord",
    "ModelIdentity",
    "StoreRecord",
    "load_index_files",
    "read_config",
    "read_manifest",
    "save_index_files",
    "write_config",
]
