"""SoundLibraryIndex: background sound for a scene from a large sound library, in two stages.

Stage 1 finds the ``rerank`` nearest clips by the global embeddings (video feature f_v or
sentence feature f_s against the audio feature f_a) in a FAISS index; stage 2 scores them with the
model's own similarity from the memory-mapped re-rank store: for SoS the full multi-grained
similarity (paper eqs. 1-11) over the stored audio tokens, for the Wav2CLIP and CLAP baselines,
which have one vector per clip, the cosine of the global embeddings (so stage 2 keeps stage 1's
order). With a flat index and ``rerank`` at least the library size the result is exactly the
model's ranking of the whole library.

Any retrieval model that `sound_of_story.modeling.load_retrieval_model` loads works: a query by
frames needs a model with video features (SoS, Wav2CLIP), a query by text one with text features
(SoS, Wav2CLIP, CLAP). The files of an index folder are `index_files`' business.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from sound_of_story.core.atomic_files import write_jsonl_atomic
from sound_of_story.core.hashing import model_fingerprint
from sound_of_story.evaluation.retrieval import AUDIO_INPUTS, TEXT_INPUTS, VIDEO_INPUTS
from sound_of_story.evaluation.table2 import model_directions
from sound_of_story.modeling import SoSAudioFeatures, SoSTextFeatures, SoSVideoFeatures, load_retrieval_model

from .coarse_index import CoarseIndex, CoarseIndexSettings, IndexType
from .index_files import (
    CONFIG_NAME,
    FAILURES_NAME,
    STORE_FOLDER,
    CoarseRecord,
    CorruptIndexError,
    EmbeddingSettings,
    FileRecord,
    IndexConfig,
    IndexFiles,
    ManifestRecord,
    ModelIdentity,
    load_index_files,
    save_index_files,
    write_config,
)
from .library import (
    DatasetConfig,
    LibraryClip,
    LibrarySource,
    check_clip_id,
    clip_path,
    decode_clip,
    hub_repo_id,
    iter_library,
    library_source,
)
from .rerank_store import RerankStore, StoreDtype, pool_tokens
from .results import Recommendation, SceneRecommendation
from .story import assign_scenes, scene_spans

DEFAULT_TOP_K = 10
DEFAULT_RERANK = 100
DEFAULT_BATCH_SIZE = 8
# The most clips one query may ask for or re-rank: stage 2 reads each candidate's row (at the SoS model's real size,
# 1,213 tokens x 512 dims, 2.5 MB as float32), in chunks of RERANK_CHUNK_ROWS rows (159 MB at that size), so a
# query's memory no longer grows with --top-k or --rerank and its time stays within about 10x the default's.
MAX_CANDIDATES = 1000
RERANK_CHUNK_ROWS = 64
# Story mode re-ranks max(rerank, scenes) candidates for each scene (enough for distinct clips): at most this many
# scenes keeps that linear in the scenes at the default rerank instead of growing with their square.
MAX_STORY_SCENES = DEFAULT_RERANK
# A model folder inside the Hub cache names its Hub id and commit (models--owner--name/snapshots/COMMIT).
HUB_CACHE_SNAPSHOT = re.compile(
    r"models--(?P<owner>[^/\\]+?)--(?P<name>[^/\\]+)[/\\]snapshots[/\\](?P<commit>[0-9a-f]{40})"
)

QueryKind = Literal["frames", "text"]
# The retrieval direction (evaluation's names) that answers each kind of query with audio.
QUERY_DIRECTIONS: dict[QueryKind, str] = {"frames": "V2A", "text": "T2A"}


@dataclasses.dataclass
class AddReport:
    """What an add did: clips encoded, unchanged (not re-encoded), dropped (gone or changed) and unreadable."""

    added: list[str]
    unchanged: int
    removed: list[str]
    failures: list[dict]


@dataclasses.dataclass
class LibraryScan:
    """A library compared with the manifest: clips to encode (with their content SHA-256), ids seen, unchanged
    clips and unreadable ones."""

    pending: list[tuple[LibraryClip, str]]
    seen: set[str]
    unchanged: int
    failures: list[dict]


def hub_revision(model_id: str, revision: str | None) -> str | None:
    """The commit a Hub model was loaded from (from the local cache), None for a local folder."""
    if Path(model_id).exists():
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model_id, "config.json", revision=revision)
    if isinstance(cached, str) and "/snapshots/" in cached:
        return cached.split("/snapshots/")[1].split("/")[0]
    return revision


def published_model_identity(identity: ModelIdentity) -> ModelIdentity:
    """The model as a published index names it: a Hub id stays; a folder in the Hub cache becomes its Hub id and
    commit; any other local folder only its name (no path of this machine)."""
    if not (Path(identity.id).is_absolute() or Path(identity.id).exists()):
        return identity
    match = HUB_CACHE_SNAPSHOT.search(identity.id)
    if match:
        return ModelIdentity(f"{match['owner']}/{match['name']}", match["commit"], identity.fingerprint)
    return ModelIdentity(Path(identity.id).name, None, identity.fingerprint)


def check_candidate_counts(top_k: int, rerank: int) -> None:
    """``top_k`` and ``rerank`` must be between 1 and `MAX_CANDIDATES` (ValueError naming both)."""
    for name, value in (("top_k", top_k), ("rerank", rerank)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 1 <= value <= MAX_CANDIDATES:
            raise ValueError(f"{name} must be between 1 and {MAX_CANDIDATES}, got {value!r}")


def query_kinds(model: Any, processor: Any) -> tuple[QueryKind, ...]:
    """The queries a retrieval model answers: ``frames`` needs video features and a processor that takes
    frames, ``text`` text features (the same rule as the directions Table 2 evaluates)."""
    directions = model_directions(model, processor)
    return tuple(kind for kind, direction in QUERY_DIRECTIONS.items() if direction in directions)


def _model_and_id(model: Any, processor: Any, revision: str | None) -> tuple[str, Any, Any]:
    """(id to record, model, processor) from a folder or Hub id, or from a loaded model with its processor."""
    if isinstance(model, (str, os.PathLike)):
        model_id = str(Path(model).resolve()) if Path(model).exists() else str(model)
        loaded = load_retrieval_model(model_id, revision=revision)
        return model_id, loaded.model, loaded.processor
    if processor is None:
        raise ValueError("pass the processor together with a loaded model")
    return str(model.name_or_path or "unnamed-model"), model, processor


def _inputs(batch: Any, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The processor outputs a feature function takes (each model kind names its audio inputs differently)."""
    return {name: batch[name] for name in names if name in batch}


def embedding_settings(
    model: Any, processor: Any, store_dtype: StoreDtype, store_tokens: int | None, audio_crops: int
) -> EmbeddingSettings:
    """The settings a model and processor encode with; the dimension and number of audio tokens come from a silent probe."""
    if store_tokens is not None and store_tokens < 1:
        raise ValueError(f"store_tokens must be >= 1, got {store_tokens}")
    if store_dtype not in ("float16", "float32"):
        raise ValueError(f"store dtype must be float16 or float32, got {store_dtype!r}")
    sampling_rate = int(processor.feature_extractor.sampling_rate)
    window_seconds = float(processor.audio_window_seconds)
    probe = processor(
        audio=np.zeros(int(round(window_seconds * sampling_rate)), dtype=np.float32),
        sampling_rate=sampling_rate,
        audio_crops=audio_crops,
    )
    with torch.inference_mode():
        features = model.get_audio_features(**_inputs(probe, AUDIO_INPUTS))
    tokens = 0 if features.audio_token_embeds is None else int(features.audio_token_embeds.shape[1])
    if store_tokens is not None and tokens == 0:
        raise ValueError(
            f"store_tokens pools audio token features, but {type(model).__name__} has one global embedding per clip"
        )
    return EmbeddingSettings(
        dim=int(features.audio_embeds.shape[-1]), model_tokens=tokens, store_tokens=store_tokens,
        store_dtype=store_dtype, audio_crop="energetic", audio_crops=audio_crops, sampling_rate=sampling_rate,
        audio_window_seconds=window_seconds, num_frames=getattr(processor, "num_frames", None),
        max_text_length=processor.max_text_length, temperature=getattr(model.config, "temperature", None),
    )  # fmt: skip


class SoundLibraryIndex:
    """A searchable sound library. Build with `build`, open with `load`, query with `recommend` / `recommend_story`.

    Example:

    ```python
    >>> index = SoundLibraryIndex.build("sounds/", model="path/to/retrieval-model", out="sounds.index")
    >>> index = SoundLibraryIndex.load("sounds.index")  # or a Hub dataset repo id
    >>> index.recommend(text="waves break on a quiet beach", top_k=5)
    >>> index.recommend(frames=[pil_image1, pil_image2])
    >>> index.recommend_story(frames, frame_times, duration=40.0)  # one sound per scene
    ```
    """

    def __init__(
        self,
        folder: Path,
        config: IndexConfig,
        manifest: list[dict],
        coarse: CoarseIndex | None,
        store: RerankStore,
        model: Any = None,
        processor: Any = None,
        clip_source: LibrarySource | None = None,
    ):
        self.folder, self.config, self.manifest, self.coarse, self.store = (
            Path(folder),
            config,
            manifest,
            coarse,
            store,
        )
        self._model, self._processor = model, processor
        # Where the clips are read from on this machine; None for an index from the Hub without a library given.
        self.clip_source = clip_source

    # ---------------------------------------------------- properties and model identity

    @property
    def embedding(self) -> EmbeddingSettings:
        return self.config.embedding

    @property
    def num_clips(self) -> int:
        """Clips that can be recommended (rows of files that are gone or changed are kept but inactive)."""
        return sum(1 for row in self.manifest if row["active"])

    def clip_location(self, row: dict) -> str:
        """Where the clip of manifest ``row`` is: its file, or ``dataset::config/split/id``, in the library the
        clips are read from (`clip_source`); the path the index records (relative for a published index) when
        there is none. Manifest rows are checked on load, so this is always inside the library."""
        if self.clip_source is None:
            return row["path"]
        return clip_path(self.clip_source, row["clip_id"])

    @property
    def model(self) -> Any:
        """The retrieval model the index was built with (SoS, Wav2CLIP or CLAP), loaded on first use."""
        if self._model is None:
            identity = self.config.model
            model, processor, _ = load_retrieval_model(identity.id, revision=identity.revision)
            self._check_model(model, processor)
            self._model, self._processor = model, processor
        return self._model

    @property
    def processor(self) -> Any:
        self.model  # noqa: B018 - loads both
        return self._processor

    @property
    def query_kinds(self) -> tuple[QueryKind, ...]:
        """The queries the index's model answers: ``frames``, ``text`` or both."""
        return query_kinds(self.model, self.processor)

    def require_query(self, kind: QueryKind) -> None:
        """Raise ValueError when the index's model cannot answer a query by ``kind`` (``frames`` or ``text``)."""
        if kind not in self.query_kinds:
            answers = " and ".join(self.query_kinds) or "no"
            raise ValueError(
                f"index {self.folder} was built with {type(self.model).__name__} ({self.config.model.id!r}), "
                f"which cannot take a query by {kind}: it answers {answers} queries"
            )

    def _check_model(self, model: Any, processor: Any) -> None:
        """The index only works with the model and settings it was built with."""
        built = self.config.model
        fingerprint = model_fingerprint(model)
        if fingerprint != built.fingerprint:
            raise ValueError(
                f"index {self.folder} was built with model {built.id!r} (weights {built.fingerprint[:12]}), but the model given "
                f"({getattr(model, 'name_or_path', '?')!r}, weights {fingerprint[:12]}) is a different one: rebuild the index with it"
            )
        expected = dataclasses.asdict(self.embedding)
        got = dataclasses.asdict(
            embedding_settings(
                model, processor, self.embedding.store_dtype, self.embedding.store_tokens, self.embedding.audio_crops
            )
        )
        differ = {k: (expected[k], got[k]) for k in expected if expected[k] != got[k]}
        if differ:
            raise ValueError(
                f"index {self.folder} was built with other embedding settings: "
                + ", ".join(f"{k}: index {a!r}, now {b!r}" for k, (a, b) in differ.items())
            )

    # ------------------------------------------------------------------- building

    @classmethod
    def build(
        cls,
        library: str | os.PathLike,
        model: Any,
        out: str | os.PathLike,
        *,
        processor: Any = None,
        revision: str | None = None,
        dataset_config: DatasetConfig = "stories",
        index_type: IndexType = "auto",
        coarse_settings: CoarseIndexSettings | None = None,
        store_dtype: StoreDtype = "float16",
        store_tokens: int | None = None,
        audio_crops: int = 1,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool = True,
    ) -> tuple[SoundLibraryIndex, AddReport]:
        """Index every clip of ``library`` (an audio folder, a built SoS folder or a Hub dataset id) into ``out``.

        When ``out`` already holds an index this is an incremental `add` (which checks the model and settings
        match). ``model`` is a folder or Hub id of a retrieval model (its processor is loaded from the same
        place) or a loaded model with ``processor``. Returns the index and what was added; unreadable clips are
        skipped and listed in the report and in ``out/failures.jsonl``.
        """
        out = Path(out)
        model_id, model, processor = _model_and_id(model, processor, revision)
        source = library_source(library, dataset_config)
        coarse_settings = coarse_settings or (
            CoarseIndexSettings(index_type=index_type) if index_type != "auto" else None
        )
        if (out / CONFIG_NAME).exists():
            index = cls.load(out, model=model, processor=processor)
            index._check_build_settings(coarse_settings, store_dtype, store_tokens, audio_crops)
        else:
            settings = embedding_settings(model, processor, store_dtype, store_tokens, audio_crops)
            identity = ModelIdentity(model_id, hub_revision(model_id, revision), model_fingerprint(model))
            config = IndexConfig(identity, settings, source, CoarseRecord(coarse_settings or CoarseIndexSettings()))
            index = cls._create(out, config, model, processor)
        return index, index.add(library, dataset_config=dataset_config, batch_size=batch_size, progress=progress)

    @classmethod
    def _create(cls, out: Path, config: IndexConfig, model: Any, processor: Any) -> SoundLibraryIndex:
        """A new, empty index in ``out`` (nothing is written but the store folder until the first `add` saves)."""
        if out.exists() and any(out.iterdir()):
            raise ValueError(
                f"--out {out} exists and is not an index folder (no {CONFIG_NAME}); give a new or empty folder"
            )
        (out / STORE_FOLDER).mkdir(parents=True, exist_ok=True)
        settings = config.embedding
        store = RerankStore(out / STORE_FOLDER, [], settings.store_dtype, settings.num_tokens, settings.dim)
        return cls(out, config, [], None, store, model, processor, clip_source=config.library)

    def _check_build_settings(
        self,
        coarse_settings: CoarseIndexSettings | None,
        store_dtype: StoreDtype,
        store_tokens: int | None,
        audio_crops: int,
    ) -> None:
        """A build into an existing index must ask for the settings it was built with (None: any coarse settings)."""
        built = self.config.coarse.settings
        if coarse_settings is not None and dataclasses.asdict(coarse_settings) != dataclasses.asdict(built):
            raise ValueError(
                f"index {self.folder} was built with coarse settings {dataclasses.asdict(built)}; got {dataclasses.asdict(coarse_settings)}"
            )
        embedding = self.embedding
        if (store_dtype, store_tokens, audio_crops) != (
            embedding.store_dtype,
            embedding.store_tokens,
            embedding.audio_crops,
        ):
            raise ValueError(
                f"index {self.folder} was built with store_dtype={embedding.store_dtype}, store_tokens={embedding.store_tokens}, "
                f"audio_crops={embedding.audio_crops}; got {store_dtype}, {store_tokens}, {audio_crops}"
            )

    def add(
        self,
        library: str | os.PathLike,
        *,
        dataset_config: DatasetConfig = "stories",
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool = True,
    ) -> AddReport:
        """Bring the index up to date with ``library``: encode only clips that are new or whose content
        changed, deactivate clips that are gone, then `save`. Raises ValueError when the library (after
        skipping unreadable clips) has no clip at all."""
        source = library_source(library, dataset_config)
        scan = self._scan_library(source, progress)
        removed = self._deactivate_gone_or_changed(scan)
        added = self._encode_and_store(scan.pending, scan.failures, batch_size, progress)
        write_jsonl_atomic(self.folder / FAILURES_NAME, scan.failures)
        if not self.num_clips:
            failures = scan.failures
            what = (
                f"{len(failures)} unreadable clip(s), e.g. {failures[0]['path']}: {failures[0]['reason']}"
                if failures
                else "no audio clips"
            )
            raise ValueError(f"library {source.location!r} is empty: {what}")
        if added or removed or self.coarse is None:
            self._update_coarse(len(added), progress)
        self.config = dataclasses.replace(self.config, library=source)
        self.clip_source = source
        self.save()
        return AddReport(added=added, unchanged=scan.unchanged, removed=removed, failures=scan.failures)

    def _scan_library(self, source: LibrarySource, progress: bool) -> LibraryScan:
        """Which clips of ``source`` are new or changed; a file of the same size and modification time is not re-hashed."""
        known = {row["clip_id"]: row for row in self.manifest if row["active"]}
        scan = LibraryScan(pending=[], seen=set(), unchanged=0, failures=[])
        for clip in tqdm(iter_library(source), desc="scanning library", unit="clip", disable=not progress):
            try:
                check_clip_id(clip.clip_id, source)
            except ValueError as err:  # a name the manifest could not hold (a backslash, say): never indexed
                scan.failures.append({"clip_id": clip.clip_id, "path": clip.path, "reason": str(err)})
                continue
            scan.seen.add(clip.clip_id)
            row = known.get(clip.clip_id)
            if row is not None and clip.stat is not None and row.get("stat") == list(clip.stat):
                scan.unchanged += 1
                continue
            try:
                digest = clip.sha256()
            except OSError as err:
                scan.failures.append({"clip_id": clip.clip_id, "path": clip.path, "reason": f"cannot read: {err}"})
                continue
            if row is not None and row["sha256"] == digest:
                row["stat"] = list(clip.stat) if clip.stat else None
                scan.unchanged += 1
                continue
            scan.pending.append((clip, digest))
        return scan

    def _deactivate_gone_or_changed(self, scan: LibraryScan) -> list[str]:
        """Deactivate the rows of clips that are gone or changed (a changed clip gets a new row); returns their ids."""
        changed = {clip.clip_id for clip, _ in scan.pending}
        active = [row["clip_id"] for row in self.manifest if row["active"]]
        removed = [clip_id for clip_id in active if clip_id not in scan.seen or clip_id in changed]
        gone = set(removed)
        for row in self.manifest:
            if row["active"] and row["clip_id"] in gone:
                row["active"] = False
        return removed

    def _encode_and_store(
        self, pending: list[tuple[LibraryClip, str]], failures: list[dict], batch_size: int, progress: bool
    ) -> list[str]:
        """Encode ``pending`` clips in batches into one new store shard and manifest rows; clips that cannot be
        decoded go to ``failures``. Returns the ids added."""
        new_rows, globals_, tokens = [], [], []
        bar = tqdm(total=len(pending), desc="encoding library audio", unit="clip", disable=not progress)
        for start in range(0, len(pending), batch_size):
            batch, waves = [], []
            for clip, digest in pending[start : start + batch_size]:
                try:
                    waves.append(decode_clip(clip))
                    batch.append((clip, digest))
                except (OSError, ValueError) as err:
                    failures.append({"clip_id": clip.clip_id, "path": clip.path, "reason": str(err)})
            if batch:
                g, t = self._encode_audio(waves)
                globals_.append(g)
                if self.store.has_tokens:
                    tokens.append(pool_tokens(t, self.embedding.store_tokens))
                for clip, digest in batch:
                    new_rows.append(
                        {
                            "clip_id": clip.clip_id,
                            "path": clip.path,
                            "sha256": digest,
                            "stat": list(clip.stat) if clip.stat else None,
                            "active": True,
                            "row": len(self.manifest) + len(new_rows),
                        }
                    )
            bar.update(len(pending[start : start + batch_size]))
        bar.close()
        if new_rows:
            name = f"{len(self.store.shards):06d}"
            self.store.write_shard(name, np.concatenate(globals_), np.concatenate(tokens) if tokens else None)
            self.manifest.extend(new_rows)
        return [row["clip_id"] for row in new_rows]

    def _update_coarse(self, num_added: int, progress: bool) -> None:
        """Add the new rows to the coarse index, or rebuild it from the store (no re-encoding) when the library
        outgrew its kind or its IVF training."""
        if self.coarse is None or self.coarse.needs_rebuild(self.store.num_rows):
            self.coarse = CoarseIndex.build(self.store.global_view(), self.config.coarse.settings, progress=progress)
        elif num_added:
            self.coarse.add(
                self.store.global_rows(np.arange(self.coarse.ntotal, self.store.num_rows)), progress=progress
            )

    @torch.inference_mode()
    def _encode_audio(self, waves: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray | None]:
        """f_a and f_as (None for a model without token features) of decoded clips with the model's evaluation
        crop (the processor's deterministic window)."""
        inputs = self.processor(
            audio=[{"array": a, "sampling_rate": r} for a, r in waves],
            audio_crop="energetic",
            audio_crops=self.embedding.audio_crops,
        )
        features = self.model.get_audio_features(**_inputs(inputs, AUDIO_INPUTS))
        tokens = features.audio_token_embeds
        return features.audio_embeds.float().numpy(), None if tokens is None else tokens.float().numpy()

    # ------------------------------------------------------------------ save/load and the Hub

    def save(self) -> None:
        """Write the manifest, coarse index and ``index.json`` (see `index_files.save_index_files`)."""
        self.config = save_index_files(self.folder, IndexFiles(self.config, self.manifest, self.coarse, self.store))

    @classmethod
    def load(
        cls,
        location: str | os.PathLike,
        *,
        model: Any = None,
        processor: Any = None,
        revision: str | None = None,
        verify: bool = False,
        library: str | os.PathLike | None = None,
    ) -> SoundLibraryIndex:
        """Open an index folder, or download one from a Hub dataset repo named ``hf://owner/name`` (``revision``
        picks its commit). A path that does not exist is not found: it is never taken for a Hub repo id.

        Checks the config's own checksum, the names of the files it lists, every manifest row (clip ids and
        paths inside the library), the store's ``.npy`` headers, sizes and row checksums (``verify=True`` hashes
        every store file too) and the coarse index's headers before faiss reads it; anything else is a
        `CorruptIndexError`. ``model`` (a loaded model with ``processor``, or a folder / Hub id) must be the one
        the index was built with; by default it is loaded from the id the index records, on first use.
        ``library`` is where the indexed library is on this machine (a folder, built SoS folder or
        ``hf://owner/name`` dataset of the kind the index records): clips are read from there. By default they
        are read from the location a local index records; an index from the Hub has none until one is given.
        """
        repo_id = hub_repo_id(location)
        if repo_id is not None:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision))
        else:
            folder = Path(location)
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"index {str(location)!r} does not exist (an index on the Hub is written hf://owner/name)"
                )
        files = load_index_files(folder, verify=verify)
        clip_source = None if repo_id is not None else files.config.library
        if library is not None:
            recorded = files.config.library
            clip_source = library_source(library, recorded.config or "stories")
            if (clip_source.kind, clip_source.config) != (recorded.kind, recorded.config):
                raise ValueError(
                    f"library {str(library)!r} is a {clip_source.kind}, but index {location} was built from a "
                    f"{recorded.kind}" + (f" ({recorded.config} config)" if recorded.config else "")
                )
        index = cls(folder, files.config, files.manifest, files.coarse, files.store, clip_source=clip_source)
        if isinstance(model, (str, os.PathLike)):
            model, processor, _ = load_retrieval_model(str(model))
        if model is not None:
            if processor is None:
                raise ValueError("pass the processor together with a loaded model")
            index._check_model(model, processor)
            index._model, index._processor = model, processor
        return index

    def published_config_and_manifest(self) -> tuple[IndexConfig, list[dict]]:
        """What `push_to_hub` publishes instead of ``index.json`` and the manifest: nothing about this machine.

        The model is named by its Hub id and commit when it has one (a Hub id, or a folder in the Hub cache),
        else by its folder's name (a reader passes the model with ``--model``; the fingerprint checks it); a
        local library by its folder's name, and each clip's path relative to it; no file sizes or modification
        times. Clip ids, content hashes and everything a query needs are kept.
        """
        config = self.config
        library = config.library
        if Path(library.location).is_absolute():
            library = dataclasses.replace(library, location=Path(library.location).name)
        manifest = [
            {
                "clip_id": row["clip_id"],
                "path": clip_path(library, row["clip_id"]),
                "sha256": row["sha256"],
                "active": row["active"],
                "row": row["row"],
            }
            for row in self.manifest
        ]
        return dataclasses.replace(config, model=published_model_identity(config.model), library=library), manifest

    def push_to_hub(
        self, repo_id: str, *, private: bool = False, token: str | None = None, revision: str | None = None
    ) -> str:
        """Upload the index as a Hub dataset repo; `load("hf://" + repo_id)` downloads it. Returns the commit URL.

        The store and coarse index files go up as they are; ``index.json`` and the manifest as
        `published_config_and_manifest` gives them (no local paths or file times); ``failures.jsonl`` stays here.
        """
        from huggingface_hub import CommitOperationAdd, HfApi

        config, manifest = self.published_config_and_manifest()
        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="sos-index-push-") as staging:
            staging = Path(staging)
            manifest_name = self.config.manifest.file.name
            write_jsonl_atomic(staging / manifest_name, manifest)
            record = ManifestRecord(FileRecord.of(staging / manifest_name), len(manifest), self.num_clips)
            write_config(staging, dataclasses.replace(config, manifest=record))
            local_files = [(self.folder / self.config.coarse.file.name, self.config.coarse.file.name)] + [
                (self.folder / STORE_FOLDER / name, f"{STORE_FOLDER}/{name}") for name in self.store.file_names()
            ]
            operations = [
                CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(staging / name))
                for name in (CONFIG_NAME, manifest_name)
            ] + [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for path, name in local_files]
            commit = api.create_commit(
                repo_id, operations, repo_type="dataset", revision=revision,
                commit_message="Upload sound library index built with sound-of-story",
            )  # fmt: skip
        return str(getattr(commit, "commit_url", None) or f"https://huggingface.co/datasets/{repo_id}")

    # ------------------------------------------------------------------- queries

    @torch.inference_mode()
    def encode_query(
        self, *, frames: Sequence[Any] | None = None, text: str | None = None, batch: bool = False
    ) -> SoSVideoFeatures | SoSTextFeatures:
        """Video features of ``frames`` (one scene's images in time order; with ``batch``, a list of scenes), or text features.

        Raises ValueError for an empty query and for a query the model cannot take (`require_query`).
        """
        if (frames is None) == (text is None):
            raise ValueError("give exactly one query: frames or text")
        if text is not None:
            if not isinstance(text, str) or not text.strip():
                raise ValueError("the text query is empty")
            self.require_query("text")
            inputs = self.processor(text=text)
            return self.model.get_text_features(**_inputs(inputs, TEXT_INPUTS))
        scenes = list(frames) if batch else [frames]
        if not scenes or any(len(scene) == 0 for scene in scenes):
            raise ValueError("the query has no frames")
        self.require_query("frames")
        inputs = self.processor(frames=[list(scene) for scene in scenes])
        return self.model.get_video_features(**_inputs(inputs, VIDEO_INPUTS))

    def candidates(self, query_embeds: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Stage 1: the ``count`` active rows with the largest global inner product, best first (rows, scores)."""
        inactive = len(self.manifest) - self.num_clips
        scores, rows = self.coarse.search(
            query_embeds[None], min(count + inactive, len(self.manifest)), exact_rows=self.store.global_rows
        )
        keep = [(r, s) for r, s in zip(rows[0], scores[0]) if r >= 0 and self.manifest[r]["active"]][:count]
        return np.array([r for r, _ in keep], dtype=np.int64), np.array([s for _, s in keep], dtype=np.float32)

    @torch.inference_mode()
    def rerank_scores(self, rows: np.ndarray, query: SoSVideoFeatures | SoSTextFeatures) -> np.ndarray:
        """Stage 2: the model's similarity of the stored clips ``rows`` with every item of ``query``, ``(rows, items)``
        (multi-grained for SoS from the stored tokens; the global cosine for a model without tokens).

        Rows are read `RERANK_CHUNK_ROWS` at a time, so memory does not grow with the number of candidates."""
        rows = np.asarray(rows, dtype=np.int64)
        scores = []
        for start in range(0, max(len(rows), 1), RERANK_CHUNK_ROWS):  # one empty chunk for no rows
            global_embeds, token_embeds = self.store.rows(rows[start : start + RERANK_CHUNK_ROWS])
            audio = SoSAudioFeatures(
                audio_embeds=torch.from_numpy(global_embeds),
                audio_token_embeds=None if token_embeds is None else torch.from_numpy(token_embeds),
            )
            scores.append(self.model.similarity(audio, query).float().numpy())
        return np.concatenate(scores)

    def _ranked(
        self, rows: np.ndarray, coarse_scores: np.ndarray, scores: np.ndarray, top_k: int
    ) -> list[Recommendation]:
        order = np.lexsort((rows, -scores))[:top_k]  # ties: the earlier indexed clip first
        return [
            Recommendation(
                rank + 1,
                self.manifest[rows[i]]["clip_id"],
                self.clip_location(self.manifest[rows[i]]),
                float(scores[i]),
                float(coarse_scores[i]),
                int(rows[i]),
            )
            for rank, i in enumerate(order)
        ]

    def _recommend_for(
        self, query: SoSVideoFeatures | SoSTextFeatures, item: int, count: int, top_k: int
    ) -> list[Recommendation]:
        """Both stages for item ``item`` of an encoded query: ``count`` candidates, the ``top_k`` best of them."""
        single = type(query)(**{name: value[item : item + 1] for name, value in query.items()})
        global_embeds = single.video_embeds if isinstance(single, SoSVideoFeatures) else single.text_embeds
        rows, coarse_scores = self.candidates(global_embeds[0].float().numpy(), count)
        return self._ranked(rows, coarse_scores, self.rerank_scores(rows, single)[:, 0], top_k)

    def recommend(
        self,
        *,
        frames: Sequence[Any] | None = None,
        text: str | None = None,
        top_k: int = DEFAULT_TOP_K,
        rerank: int = DEFAULT_RERANK,
    ) -> list[Recommendation]:
        """The ``top_k`` best clips for a scene's frames (PIL images or arrays, in time order) or a text.

        Stage 1 takes the ``rerank`` nearest by the global embedding; stage 2 orders them by the model's
        similarity. With a flat index and ``rerank >= num_clips`` the ranking is exact. Both counts are at most
        `MAX_CANDIDATES`.
        """
        check_candidate_counts(top_k, rerank)
        query = self.encode_query(frames=frames, text=text)
        return self._recommend_for(query, 0, max(rerank, top_k), top_k)

    def recommend_story(
        self,
        frames: Sequence[Any],
        frame_times: Sequence[float],
        *,
        duration: float | None = None,
        rerank: int = DEFAULT_RERANK,
        allow_repeats: bool = False,
    ) -> list[SceneRecommendation]:
        """One clip per scene of a story whose key frames (one per shot, as the key-frame step gives) are
        ``frames`` at ``frame_times`` seconds: each key frame opens a scene that lasts until the next one
        (the last until ``duration``), so the sound switches only at scene cuts. Without ``allow_repeats``
        no clip is used twice, and the choice maximises the total stage-2 similarity over the story. A story
        has at most `MAX_STORY_SCENES` scenes.
        """
        check_candidate_counts(1, rerank)
        spans = scene_spans(frame_times, duration)
        if len(frames) != len(frame_times):
            raise ValueError(f"got {len(frames)} frames but {len(frame_times)} frame times")
        if len(spans) > MAX_STORY_SCENES:
            raise ValueError(
                f"the story has {len(spans)} scenes, more than the {MAX_STORY_SCENES} story mode takes: "
                "recommend for its parts one by one"
            )
        if not allow_repeats and len(spans) > self.num_clips:
            raise ValueError(
                f"the story has {len(spans)} scenes but the library only {self.num_clips} clips: allow repeats"
            )
        scenes = [[frames[i] for i in span.frame_indices] for span in spans]
        query = self.encode_query(frames=scenes, batch=True)
        # Enough candidates per scene that distinct clips can always be assigned.
        count = max(rerank, 1 if allow_repeats else len(spans))
        per_scene = [self._recommend_for(query, s, count, count) for s in range(len(spans))]
        return assign_scenes(spans, per_scene, allow_repeats, frame_times)


__all__ = [
    "MAX_CANDIDATES",
    "MAX_STORY_SCENES",
    "QUERY_DIRECTIONS",
    "RERANK_CHUNK_ROWS",
    "AddReport",
    "CorruptIndexError",
    "EmbeddingSettings",
    "LibrarySource",
    "QueryKind",
    "Recommendation",
    "SoundLibraryIndex",
    "embedding_settings",
    "check_candidate_counts",
    "hub_revision",
    "published_model_identity",
    "query_kinds",
]
