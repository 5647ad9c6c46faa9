"""SoundLibraryIndex: background sound for a scene from a large sound library, in two stages.

Stage 1 finds the ``rerank`` nearest clips by the global embeddings (video feature f_v or
sentence feature f_s against the audio feature f_a) in a FAISS index; stage 2 scores them with the
model's full multi-grained similarity (paper eqs. 1-11) from the memory-mapped re-rank store.
With a flat index and ``rerank`` at least the library size the result is exactly the model's
ranking of the whole library.

An index folder holds::

    index.json                 the config: model id, revision and weight fingerprint, embedding
                               settings, coarse-index settings, and the size and SHA-256 of every
                               file below (the config carries a checksum of itself too)
    manifest-GEN.jsonl         one row per store row: clip id, path, content SHA-256, active flag
    coarse-GEN.faiss           the FAISS index over the global embeddings
    store/NNNNNN-{global,tokens,crc}.npy   the re-rank store (see rerank_store.py)
    failures.jsonl             clips of the last run that could not be read

Saving writes the new files first and ``index.json`` last (atomically), so a reader sees either
the old or the new index, never a mix; a partly written or corrupted index fails its checksums.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sound_of_story.core.atomic_files import atomic_path, write_json_atomic, write_jsonl_atomic
from sound_of_story.core.hashing import bytes_sha256, file_sha256, json_sha256, model_fingerprint
from sound_of_story.modeling import SoSRetrievalModel, SoSRetrievalProcessor
from sound_of_story.modeling.modeling_sos import SoSAudioFeatures, SoSTextFeatures, SoSVideoFeatures

from .coarse_index import CoarseIndex, CoarseIndexSettings, IndexType
from .library import DatasetConfig, LibraryClip, LibrarySource, decode_clip, iter_library, library_source
from .rerank_store import CorruptIndexError, RerankStore, Shard, StoreDtype, pool_tokens
from .story import SceneRecommendation, assign_scenes, scene_spans

FORMAT_VERSION = 1
CONFIG_NAME = "index.json"
FAILURES_NAME = "failures.jsonl"
STORE_FOLDER = "store"
DEFAULT_TOP_K = 10
DEFAULT_RERANK = 100
DEFAULT_BATCH_SIZE = 8


@dataclasses.dataclass
class Recommendation:
    """One recommended clip: its rank (1 = best), id, path, the stage-2 multi-grained similarity
    (``score``) and the stage-1 global inner product S_a,v (``coarse_score``)."""

    rank: int
    clip_id: str
    path: str
    score: float
    coarse_score: float
    row: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class AddReport:
    """What an add did: clips encoded, unchanged (not re-encoded), dropped (gone or changed) and unreadable."""

    added: list[str]
    unchanged: int
    removed: list[str]
    failures: list[dict]


@dataclasses.dataclass
class EmbeddingSettings:
    """How the library audio was turned into features; an index only accepts clips and queries encoded the same way.

    The audio side follows the model's evaluation protocol: the processor's deterministic crop
    (``audio_crop="energetic"``, ``audio_crops`` windows). ``store_tokens`` pools f_as to that many tokens
    (None: every token, exact re-ranking).
    """

    dim: int
    model_tokens: int
    store_tokens: int | None
    store_dtype: StoreDtype
    audio_crop: str
    audio_crops: int
    sampling_rate: int
    audio_window_seconds: float
    num_frames: int
    max_text_length: int
    temperature: float

    @property
    def num_tokens(self) -> int:
        return self.model_tokens if self.store_tokens is None else min(self.store_tokens, self.model_tokens)


def hub_revision(model_id: str, revision: str | None) -> str | None:
    """The commit a Hub model was loaded from (from the local cache), None for a local folder."""
    if Path(model_id).exists():
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model_id, "config.json", revision=revision)
    if isinstance(cached, str) and "/snapshots/" in cached:
        return cached.split("/snapshots/")[1].split("/")[0]
    return revision


def load_model(model_id: str, revision: str | None = None) -> tuple[SoSRetrievalModel, SoSRetrievalProcessor]:
    """A SoS retrieval model and its processor from one folder or Hub repo."""
    try:
        model = SoSRetrievalModel.from_pretrained(model_id, revision=revision).eval()
        processor = SoSRetrievalProcessor.from_pretrained(model_id, revision=revision)
    except OSError as err:
        raise FileNotFoundError(f"cannot load a SoS retrieval model and processor from {model_id!r}: {err}") from None
    return model, processor


def _file_record(path: Path) -> dict:
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def _check_file(folder: Path, record: dict, what: str) -> Path:
    path = folder / record["name"]
    if not path.is_file():
        raise CorruptIndexError(f"index {folder}: {what} file {record['name']} is missing (partly written index?)")
    if path.stat().st_size != record["bytes"] or file_sha256(path) != record["sha256"]:
        raise CorruptIndexError(
            f"index {folder}: {what} file {record['name']} does not match its checksum (corrupted or partly written)"
        )
    return path


class SoundLibraryIndex:
    """A searchable sound library. Build with `build`, open with `load`, query with `recommend` / `recommend_story`.

    Example:

    ```python
    >>> index = SoundLibraryIndex.build("sounds/", model="path/to/sos-model", out="sounds.index")
    >>> index = SoundLibraryIndex.load("sounds.index")  # or a Hub dataset repo id
    >>> index.recommend(text="waves break on a quiet beach", top_k=5)
    >>> index.recommend(frames=[pil_image1, pil_image2])
    >>> index.recommend_story(frames, frame_times, duration=40.0)  # one sound per scene
    ```
    """

    def __init__(
        self,
        folder: Path,
        config: dict,
        manifest: list[dict],
        coarse: CoarseIndex,
        store: RerankStore,
        model=None,
        processor=None,
    ):
        self.folder, self.config, self.manifest, self.coarse, self.store = (
            Path(folder),
            config,
            manifest,
            coarse,
            store,
        )
        self.embedding = EmbeddingSettings(**config["embedding"])
        self._model, self._processor = model, processor

    # ------------------------------------------------------------------ properties

    @property
    def num_clips(self) -> int:
        """Clips that can be recommended (rows of files that are gone or changed are kept but inactive)."""
        return sum(1 for row in self.manifest if row["active"])

    @property
    def model(self) -> SoSRetrievalModel:
        if self._model is None:
            identity = self.config["model"]
            self._model, self._processor = load_model(identity["id"], identity["revision"])
            self._check_model(self._model, self._processor)
        return self._model

    @property
    def processor(self) -> SoSRetrievalProcessor:
        self.model  # noqa: B018 - loads both
        return self._processor

    def _check_model(self, model: SoSRetrievalModel, processor: SoSRetrievalProcessor) -> None:
        """The index only works with the model and settings it was built with."""
        built = self.config["model"]
        fingerprint = model_fingerprint(model)
        if fingerprint != built["fingerprint"]:
            raise ValueError(
                f"index {self.folder} was built with model {built['id']!r} (weights {built['fingerprint'][:12]}), but the model given "
                f"({getattr(model, 'name_or_path', '?')!r}, weights {fingerprint[:12]}) is a different one: rebuild the index with it"
            )
        expected = dataclasses.asdict(self.embedding)
        got = dataclasses.asdict(
            _embedding_settings(
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
        model: str | SoSRetrievalModel,
        out: str | os.PathLike,
        *,
        processor: SoSRetrievalProcessor | None = None,
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
        match). ``model`` is a folder or Hub id (its processor is loaded from the same place) or a loaded model
        with ``processor``. Returns the index and what was added; unreadable clips are skipped and listed in
        the report and in ``out/failures.jsonl``.
        """
        out = Path(out)
        if isinstance(model, (str, os.PathLike)):
            model_id = str(Path(model).resolve()) if Path(model).exists() else str(model)
            model, processor = load_model(model_id, revision)
        elif processor is None:
            raise ValueError("pass the processor together with a loaded model")
        else:
            model_id = str(model.name_or_path or "unnamed-model")
        source = library_source(library, dataset_config)
        if (out / CONFIG_NAME).exists():
            index = cls.load(out, model=model, processor=processor)
            if coarse_settings is not None or index_type != "auto":
                wanted = coarse_settings or CoarseIndexSettings(index_type=index_type)
                if dataclasses.asdict(wanted) != dataclasses.asdict(index.coarse.settings):
                    raise ValueError(
                        f"index {out} was built with coarse settings {dataclasses.asdict(index.coarse.settings)}; got {dataclasses.asdict(wanted)}"
                    )
            if (
                store_dtype != index.embedding.store_dtype
                or store_tokens != index.embedding.store_tokens
                or audio_crops != index.embedding.audio_crops
            ):
                raise ValueError(
                    f"index {out} was built with store_dtype={index.embedding.store_dtype}, store_tokens={index.embedding.store_tokens}, "
                    f"audio_crops={index.embedding.audio_crops}; got {store_dtype}, {store_tokens}, {audio_crops}"
                )
            return index, index.add(library, dataset_config=dataset_config, batch_size=batch_size, progress=progress)
        if out.exists() and any(out.iterdir()):
            raise ValueError(
                f"--out {out} exists and is not an index folder (no {CONFIG_NAME}); give a new or empty folder"
            )
        settings = _embedding_settings(model, processor, store_dtype, store_tokens, audio_crops)
        config = {
            "format_version": FORMAT_VERSION,
            "generation": 0,
            "model": {
                "id": model_id,
                "revision": hub_revision(model_id, revision),
                "fingerprint": model_fingerprint(model),
            },
            "embedding": dataclasses.asdict(settings),
            "library": source.to_dict(),
            "coarse": {"settings": dataclasses.asdict(coarse_settings or CoarseIndexSettings(index_type=index_type))},
        }
        (out / STORE_FOLDER).mkdir(parents=True, exist_ok=True)
        store = RerankStore(out / STORE_FOLDER, [], settings.store_dtype, settings.num_tokens, settings.dim)
        index = cls(out, config, [], None, store, model, processor)
        report = index.add(library, dataset_config=dataset_config, batch_size=batch_size, progress=progress)
        return index, report

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
        known = {row["clip_id"]: row for row in self.manifest if row["active"]}
        seen: set[str] = set()
        pending: list[tuple[LibraryClip, str]] = []
        unchanged, failures = 0, []
        for clip in tqdm(iter_library(source), desc="scanning library", unit="clip", disable=not progress):
            seen.add(clip.clip_id)
            row = known.get(clip.clip_id)
            if row is not None and clip.stat is not None and row.get("stat") == list(clip.stat):
                unchanged += 1  # same size and modification time: not re-hashed
                continue
            try:
                data = clip.read()
            except OSError as err:
                failures.append({"clip_id": clip.clip_id, "path": clip.path, "reason": f"cannot read: {err}"})
                continue
            digest = bytes_sha256(data)
            if row is not None and row["sha256"] == digest:
                row["stat"] = list(clip.stat) if clip.stat else None
                unchanged += 1
                continue
            pending.append((clip, digest))
        changed = {clip.clip_id for clip, _ in pending}
        removed = [clip_id for clip_id in known if clip_id not in seen or clip_id in changed]
        for row in self.manifest:
            if row["active"] and row["clip_id"] in removed:
                row["active"] = False
        added, new_rows, globals_, tokens = [], [], [], []
        bar = tqdm(total=len(pending), desc="encoding library audio", unit="clip", disable=not progress)
        for start in range(0, len(pending), batch_size):
            batch, waves = [], []
            for clip, digest in pending[start : start + batch_size]:
                try:
                    waves.append(decode_clip(clip, clip.read()))
                    batch.append((clip, digest))
                except (OSError, ValueError) as err:
                    failures.append({"clip_id": clip.clip_id, "path": clip.path, "reason": str(err)})
            if batch:
                g, t = self._encode_audio(waves)
                globals_.append(g)
                tokens.append(pool_tokens(t, self.embedding.store_tokens))
                for clip, digest in batch:
                    new_rows.append(
                        {
                            "clip_id": clip.clip_id,
                            "path": clip.path,
                            "sha256": digest,
                            "stat": list(clip.stat) if clip.stat else None,
                            "active": True,
                        }
                    )
                    added.append(clip.clip_id)
            bar.update(len(pending[start : start + batch_size]))
        bar.close()
        write_jsonl_atomic(self.folder / FAILURES_NAME, failures)
        if not added and not self.num_clips:
            what = (
                f"{len(failures)} unreadable clip(s), e.g. {failures[0]['path']}: {failures[0]['reason']}"
                if failures
                else "no audio clips"
            )
            raise ValueError(f"library {source.location!r} is empty: {what}")
        if added:
            name = f"{len(self.store.shards):06d}"
            self.store.write_shard(name, np.concatenate(globals_), np.concatenate(tokens))
            for offset, row in enumerate(new_rows):
                row["row"] = len(self.manifest) + offset
            self.manifest.extend(new_rows)
        if added or removed or self.coarse is None:
            self._update_coarse(len(added), progress)
        self.config["library"] = source.to_dict()
        self.save()
        return AddReport(added=added, unchanged=unchanged, removed=removed, failures=failures)

    def _update_coarse(self, num_added: int, progress: bool) -> None:
        """Add the new rows to the coarse index, or rebuild it from the store (no re-encoding) when the library
        outgrew its kind or its IVF training."""
        if self.coarse is None or self.coarse.needs_rebuild(self.store.num_rows):
            settings = CoarseIndexSettings(**self.config["coarse"]["settings"])
            self.coarse = CoarseIndex.build(self.store.global_view(), settings, progress=progress)
        elif num_added:
            self.coarse.add(
                self.store.global_rows(np.arange(self.coarse.ntotal, self.store.num_rows)), progress=progress
            )

    @torch.inference_mode()
    def _encode_audio(self, waves: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
        """f_a and f_as of decoded clips with the model's evaluation crop (the processor's deterministic window)."""
        inputs = self.processor(
            audio=[{"array": a, "sampling_rate": r} for a, r in waves],
            audio_crop="energetic",
            audio_crops=self.embedding.audio_crops,
        )
        features = self.model.get_audio_features(inputs["input_values"])
        return features.audio_embeds.float().numpy(), features.audio_token_embeds.float().numpy()

    # ------------------------------------------------------------------ save/load

    def save(self) -> None:
        """Write the manifest and coarse index as new files, then ``index.json`` (atomically), then drop the old files."""
        generation = self.config["generation"] + 1
        manifest_path = self.folder / f"manifest-{generation:06d}.jsonl"
        write_jsonl_atomic(manifest_path, self.manifest)
        coarse_path = self.folder / f"coarse-{generation:06d}.faiss"
        with atomic_path(coarse_path) as tmp:
            self.coarse.save(tmp)
        body = dict(self.config)
        body.update(
            generation=generation,
            manifest={**_file_record(manifest_path), "num_rows": len(self.manifest), "num_active": self.num_clips},
            store={
                "dtype": self.store.dtype,
                "num_tokens": self.store.num_tokens,
                "dim": self.store.dim,
                "shards": [s.to_dict() for s in self.store.shards],
            },
        )
        body["coarse"] = {
            "settings": dataclasses.asdict(self.coarse.settings),
            "kind": self.coarse.kind,
            "trained_on": self.coarse.trained_on,
            **_file_record(coarse_path),
        }
        write_json_atomic(self.folder / CONFIG_NAME, {"index": body, "sha256": json_sha256(body, ensure_ascii=False)})
        self.config = body
        keep = {CONFIG_NAME, FAILURES_NAME, STORE_FOLDER, manifest_path.name, coarse_path.name}
        for path in self.folder.iterdir():
            if path.name not in keep and path.suffix in (".jsonl", ".faiss"):
                path.unlink()

    @classmethod
    def load(
        cls,
        location: str | os.PathLike,
        *,
        model: SoSRetrievalModel | str | None = None,
        processor: SoSRetrievalProcessor | None = None,
        revision: str | None = None,
        verify: bool = False,
    ) -> SoundLibraryIndex:
        """Open an index folder, or download one from a Hub dataset repo (``revision`` picks its commit).

        Checks the config's own checksum, the manifest and coarse index files, and the store's file sizes and
        row checksums (``verify=True`` hashes every store file too). ``model`` (a loaded model with
        ``processor``, or a folder / Hub id) must be the one the index was built with; by default it is
        loaded from the id the index records, on first use.
        """
        folder = Path(location)
        if not folder.exists():
            if str(location).count("/") != 1 or str(location).startswith((".", "/")):
                raise FileNotFoundError(f"index {str(location)!r} does not exist")
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(str(location), repo_type="dataset", revision=revision))
        config_path = folder / CONFIG_NAME
        if not config_path.is_file():
            raise CorruptIndexError(
                f"{folder} is not a sound library index, or was not completely written: no {CONFIG_NAME}"
            )
        try:
            stored = json.loads(config_path.read_text(encoding="utf-8"))
            body = stored["index"]
            ok = json_sha256(body, ensure_ascii=False) == stored["sha256"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
            ok = False
        if not ok:
            raise CorruptIndexError(f"{config_path} is corrupted (does not match its checksum)")
        if body.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{config_path}: index format {body.get('format_version')} is not supported (this version reads {FORMAT_VERSION})"
            )
        manifest_path = _check_file(folder, body["manifest"], "manifest")
        manifest = [json.loads(line) for line in manifest_path.read_text(encoding="utf-8").splitlines() if line]
        coarse_path = _check_file(folder, body["coarse"], "coarse index")
        coarse = CoarseIndex.load(
            coarse_path,
            CoarseIndexSettings(**body["coarse"]["settings"]),
            body["coarse"]["kind"],
            body["coarse"]["trained_on"],
        )
        info = body["store"]
        store = RerankStore(
            folder / STORE_FOLDER, [Shard(**s) for s in info["shards"]], info["dtype"], info["num_tokens"], info["dim"]
        )
        store.check_files(full=verify)
        if not (len(manifest) == store.num_rows == coarse.ntotal == body["manifest"]["num_rows"]):
            raise CorruptIndexError(
                f"index {folder}: manifest ({len(manifest)}), store ({store.num_rows}) and coarse index ({coarse.ntotal}) disagree on the number of clips"
            )
        index = cls(folder, body, manifest, coarse, store)
        if isinstance(model, (str, os.PathLike)):
            model, processor = load_model(str(model), None)
        if model is not None:
            if processor is None:
                raise ValueError("pass the processor together with a loaded model")
            index._check_model(model, processor)
            index._model, index._processor = model, processor
        return index

    def push_to_hub(
        self, repo_id: str, *, private: bool = False, token: str | None = None, revision: str | None = None
    ) -> str:
        """Upload the index folder as a Hub dataset repo; `load(repo_id)` downloads it. Returns the commit URL."""
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(self.folder), repo_id=repo_id, repo_type="dataset", revision=revision,
            ignore_patterns=[".*", "**/.*", FAILURES_NAME], commit_message="Upload sound library index built with sound-of-story",
        )  # fmt: skip
        return str(getattr(commit, "commit_url", None) or f"https://huggingface.co/datasets/{repo_id}")

    # ------------------------------------------------------------------- queries

    @torch.inference_mode()
    def encode_query(
        self, *, frames: Sequence[Any] | None = None, text: str | None = None, batch: bool = False
    ) -> SoSVideoFeatures | SoSTextFeatures:
        """Video features of ``frames`` (one scene's images in time order; with ``batch``, a list of scenes), or text features."""
        if (frames is None) == (text is None):
            raise ValueError("give exactly one query: frames or text")
        if text is not None:
            if not isinstance(text, str) or not text.strip():
                raise ValueError("the text query is empty")
            inputs = self.processor(text=text)
            return self.model.get_text_features(inputs["input_ids"], inputs["attention_mask"])
        scenes = list(frames) if batch else [frames]
        if not scenes or any(len(scene) == 0 for scene in scenes):
            raise ValueError("the query has no frames")
        inputs = self.processor(frames=[list(scene) for scene in scenes])
        return self.model.get_video_features(inputs["pixel_values"], inputs["frame_mask"])

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
        """Stage 2: the model's multi-grained similarity of the stored clips ``rows`` with every item of ``query``, ``(rows, items)``."""
        global_embeds, token_embeds = self.store.rows(rows)
        audio = SoSAudioFeatures(
            audio_embeds=torch.from_numpy(global_embeds), audio_token_embeds=torch.from_numpy(token_embeds)
        )
        return self.model.similarity(audio, query).float().numpy()

    def _ranked(
        self, rows: np.ndarray, coarse_scores: np.ndarray, scores: np.ndarray, top_k: int
    ) -> list[Recommendation]:
        order = np.lexsort((rows, -scores))[:top_k]  # ties: the earlier indexed clip first
        return [
            Recommendation(
                rank + 1,
                self.manifest[rows[i]]["clip_id"],
                self.manifest[rows[i]]["path"],
                float(scores[i]),
                float(coarse_scores[i]),
                int(rows[i]),
            )
            for rank, i in enumerate(order)
        ]

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
        multi-grained similarity. With a flat index and ``rerank >= num_clips`` the ranking is exact.
        """
        if top_k < 1 or rerank < 1:
            raise ValueError(f"top_k and rerank must be >= 1, got {top_k} and {rerank}")
        query = self.encode_query(frames=frames, text=text)
        query_embeds = (
            (query.video_embeds if isinstance(query, SoSVideoFeatures) else query.text_embeds)[0].float().numpy()
        )
        rows, coarse_scores = self.candidates(query_embeds, max(rerank, top_k))
        return self._ranked(rows, coarse_scores, self.rerank_scores(rows, query)[:, 0], top_k)

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
        no clip is used twice, and the choice maximises the total multi-grained similarity over the story.
        """
        spans = scene_spans(frame_times, duration)
        if len(frames) != len(frame_times):
            raise ValueError(f"got {len(frames)} frames but {len(frame_times)} frame times")
        if not allow_repeats and len(spans) > self.num_clips:
            raise ValueError(
                f"the story has {len(spans)} scenes but the library only {self.num_clips} clips: allow repeats"
            )
        scenes = [[frames[i] for i in span.frame_indices] for span in spans]
        query = self.encode_query(frames=scenes, batch=True)
        # Enough candidates per scene that distinct clips can always be assigned.
        count = max(rerank, 1 if allow_repeats else len(spans))
        per_scene = []
        for s in range(len(spans)):
            rows, coarse_scores = self.candidates(query.video_embeds[s].float().numpy(), count)
            single = SoSVideoFeatures(
                video_embeds=query.video_embeds[s : s + 1],
                frame_embeds=query.frame_embeds[s : s + 1],
                frame_mask=query.frame_mask[s : s + 1],
            )
            per_scene.append(self._ranked(rows, coarse_scores, self.rerank_scores(rows, single)[:, 0], len(rows)))
        return assign_scenes(spans, per_scene, allow_repeats, frame_times)


def _embedding_settings(
    model: SoSRetrievalModel,
    processor: SoSRetrievalProcessor,
    store_dtype: StoreDtype,
    store_tokens: int | None,
    audio_crops: int,
) -> EmbeddingSettings:
    """The settings a model and processor encode with; the number of audio tokens comes from a silent probe."""
    if store_tokens is not None and store_tokens < 1:
        raise ValueError(f"store_tokens must be >= 1, got {store_tokens}")
    if store_dtype not in ("float16", "float32"):
        raise ValueError(f"store dtype must be float16 or float32, got {store_dtype!r}")
    probe = processor(
        audio=np.zeros(processor.window_samples, dtype=np.float32),
        sampling_rate=processor.sampling_rate,
        audio_crops=audio_crops,
    )
    with torch.inference_mode():
        tokens = model.get_audio_features(probe["input_values"]).audio_token_embeds.shape[1]
    return EmbeddingSettings(
        dim=model.config.projection_dim, model_tokens=int(tokens), store_tokens=store_tokens, store_dtype=store_dtype,
        audio_crop="energetic", audio_crops=audio_crops, sampling_rate=processor.sampling_rate,
        audio_window_seconds=processor.audio_window_seconds, num_frames=processor.num_frames,
        max_text_length=processor.max_text_length, temperature=model.config.temperature,
    )  # fmt: skip


__all__ = [
    "AddReport",
    "CorruptIndexError",
    "EmbeddingSettings",
    "LibrarySource",
    "Recommendation",
    "SoundLibraryIndex",
    "load_model",
    "model_fingerprint",
]
