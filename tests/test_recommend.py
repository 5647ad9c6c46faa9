"""Recommendation from a sound library: exactness against brute force (SoS and both baselines), incremental
indexing, checksums, the index.json layout, model checks, story mode, the Hub round trip (mocked) and the command
line's exit codes."""

from __future__ import annotations

import io
import itertools
import json
import math
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from evaluation_fixtures import tiny_retrieval_models  # noqa: F401 (fixture)
from PIL import Image

from sound_of_story.app import recommend_command
from sound_of_story.app.cli import main
from sound_of_story.audio import read_audio_file
from sound_of_story.core.hashing import json_sha256
from sound_of_story.dataset_builder.key_frames import extract_key_frames
from sound_of_story.modeling import SoSAudioFeatures, SoSRetrievalModel, SoSVideoFeatures
from sound_of_story.modeling.tiny_random import tiny_retrieval_config, tiny_retrieval_processor
from sound_of_story.recommendation import (
    AUTO_FLAT_MAX,
    CoarseIndex,
    CoarseIndexSettings,
    CorruptIndexError,
    IndexConfig,
    SoundLibraryIndex,
    library_index,
    scene_spans,
)
from sound_of_story.recommendation.index_files import read_config, write_config


def _save_tiny_model(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    SoSRetrievalModel(tiny_retrieval_config()).save_pretrained(folder)
    tiny_retrieval_processor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return _save_tiny_model(tmp_path_factory.mktemp("tiny_sos"), seed=0)


@pytest.fixture(scope="module")
def library(tmp_path_factory, cmd_samples, lsmdc_samples) -> Path:
    """The background and speech stems of the sample clips: 14 WAV files in two sub-folders."""
    root = tmp_path_factory.mktemp("library")
    for name, (folder, _) in (("cmd", cmd_samples), ("lsmdc", lsmdc_samples)):
        (root / name).mkdir()
        for wav in sorted(folder.glob("*.wav")):
            shutil.copy(wav, root / name / wav.name)
    return root


@pytest.fixture(scope="module")
def story(cmd_samples) -> tuple[Path, list, list[float], float]:
    """The first CMD clip: its video, key frames (PIL), key-frame times and duration."""
    folder, records = cmd_samples
    video = next(folder.glob("*.mp4"))
    key_frames = extract_key_frames(video)
    return (
        video,
        [Image.open(io.BytesIO(k.jpeg)).convert("RGB") for k in key_frames],
        [k.time for k in key_frames],
        float(records[0]["duration"]),
    )


@pytest.fixture(scope="module")
def exact_index(tmp_path_factory, library, model_dir) -> SoundLibraryIndex:
    index, report = SoundLibraryIndex.build(
        library,
        model_dir,
        tmp_path_factory.mktemp("idx") / "exact",
        index_type="flat",
        store_dtype="float32",
        batch_size=4,
        progress=False,
    )
    assert not report.failures and len(report.added) == 14
    return index


# ------------------------------------------------------------------ how far float32 scores may be from their value
# The index scores in float32; the tests compute the same similarity in float64 from the same float32 features (held
# exactly in float64, and float64's own round-off, ~1e-14, is negligible here), so the difference is the float32
# evaluation's own error, whatever order the processor's kernels sum in. u = 2^-24 is float32's unit round-off.
U = 2.0**-24
AUDIO_INPUTS = ("input_values", "input_features", "is_longer")


def _dot_atol(dim: int) -> float:
    """A float32 dot product of two unit vectors in ``dim`` dimensions is within gamma_dim = dim u / (1 - dim u) of the
    exact one, in any summation order (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., eq. 3.5)."""
    return dim * U / (1 - dim * U)


def _similarity_atol(num_tokens: int, num_items: int, dim: int) -> float:
    """The multi-grained similarity in float32 against its value, for ``num_tokens`` audio tokens and a query of
    ``num_items`` frames or words in ``dim`` dimensions.

    Each logit is a dot product of unit vectors with the target divided by the temperature T first: within
    gamma_dim + u of its value, in cosine units. A softmax pooling p = sum_i w_i x_i over k entries carries its entries'
    largest error times at most 1 + 2 ln k, whatever T: dp/dx_i = w_i (1 + (x_i - p) / T), and with z = x / T,
    sum_i w_i |z_i - zbar| = 2 sum_i w_i (z_i - zbar)_+ <= 2 (max z - zbar) <= 2 H(w) <= 2 ln k, because
    log sum_i exp(z_i) = zbar + H(w) >= max z. S'_as,f pools twice, over the tokens and over the frames or words, and
    is the largest of the four terms whose mean is Sim. Twice that first-order bound also holds the poolings' own sums
    (ATen's cascade sums: a few log2 k u) and the second-order terms. For 513 tokens and 77 words: 2.6e-4.
    """
    gain = (1 + 2 * math.log(num_tokens)) * (1 + 2 * math.log(num_items))
    return 2 * (_dot_atol(dim) + U) * gain


def _query_atol(index: SoundLibraryIndex, query) -> float:
    """`_similarity_atol` for ``index``'s model and an encoded query (`_dot_atol` for a model without tokens)."""
    if not index.store.has_tokens:
        return _dot_atol(index.store.dim)
    items = query.frame_embeds if isinstance(query, SoSVideoFeatures) else query.word_embeds
    return _similarity_atol(index.store.num_tokens, items.shape[1], index.store.dim)


def _stored_features(index: SoundLibraryIndex, rows) -> SoSAudioFeatures:
    global_embeds, token_embeds = index.store.rows(np.asarray(rows, dtype=np.int64))
    tokens = None if token_embeds is None else torch.from_numpy(token_embeds)
    return SoSAudioFeatures(audio_embeds=torch.from_numpy(global_embeds), audio_token_embeds=tokens)


def _encoded_features(index: SoundLibraryIndex, paths: list, batch_size: int) -> SoSAudioFeatures:
    """The files' audio features encoded here with ``index``'s model, ``batch_size`` files at a time: in the index's
    batches this is the index's own computation, so the same float32 values (other batches sum in other orders)."""
    processor, model = index.processor, index.model
    parts = []
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            waves = [read_audio_file(path) for path in paths[start : start + batch_size]]
            inputs = processor(audio=[{"array": a, "sampling_rate": r} for a, r in waves])
            parts.append(model.get_audio_features(**{k: inputs[k] for k in AUDIO_INPUTS if k in inputs}))
    tokens = None if parts[0].audio_token_embeds is None else torch.cat([p.audio_token_embeds for p in parts])
    return SoSAudioFeatures(audio_embeds=torch.cat([p.audio_embeds for p in parts]), audio_token_embeds=tokens)


def _assert_same_features(actual: SoSAudioFeatures, expected: SoSAudioFeatures) -> None:
    for name in ("audio_embeds", "audio_token_embeds"):
        mine, theirs = getattr(actual, name), getattr(expected, name)
        assert (mine is None) == (theirs is None) and (mine is None or torch.equal(mine, theirs)), name


def _float64(features):
    return type(features)(**{k: v.double() if v.is_floating_point() else v for k, v in features.items()})


def _reference_scores(index: SoundLibraryIndex, audio: SoSAudioFeatures, query) -> np.ndarray:
    """The model's similarity of ``audio`` with every item of ``query`` computed in float64 from their float32 values,
    ``(clips, items)``."""
    with torch.inference_mode():
        return index.model.similarity(_float64(audio), _float64(query)).numpy()


def _assert_ranked_by(recommendations, reference: dict[str, float], atol: float) -> None:
    """``recommendations`` (best first) score each clip within ``atol`` of ``reference`` (by clip id), so no clip ranks
    below one that the reference puts more than 2 atol under it."""
    scores = np.array([r.score for r in recommendations])
    expected = np.array([reference[r.clip_id] for r in recommendations])
    assert np.all(np.diff(scores) <= 0)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=atol)
    assert all(expected[j] - expected[i] <= 2 * atol for i in range(len(scores)) for j in range(i + 1, len(scores)))


def _separated_neighbours(scores, atol: float) -> int:
    """How many neighbours in the order of ``scores`` lie more than 2 atol apart: pairs whose order is tested."""
    return int((-np.diff(np.sort(np.asarray(scores))[::-1]) > 2 * atol).sum())


def test_flat_with_full_rerank_equals_brute_force_ranking(exact_index, story):
    _, frames, _, _ = story
    n = exact_index.num_clips
    ids = [row["clip_id"] for row in exact_index.manifest]
    # every library file encoded here, in the index's batches of 4: what the index stores, bit for bit
    audio = _encoded_features(exact_index, [row["path"] for row in exact_index.manifest], batch_size=4)
    _assert_same_features(_stored_features(exact_index, np.arange(n)), audio)
    for query in ({"frames": frames[:3]}, {"text": "rain drums on the roof of a quiet house at night"}):
        recommendations = exact_index.recommend(**query, top_k=n, rerank=n)
        features = exact_index.encode_query(**query)
        scores = _reference_scores(exact_index, audio, features)[:, 0]
        atol = _query_atol(exact_index, features)
        assert sorted(r.row for r in recommendations) == list(range(n))
        _assert_ranked_by(recommendations, dict(zip(ids, scores)), atol)
        assert _separated_neighbours(scores, atol) >= n - 3  # the order is a real test, but for near ties
        # stage 1's inner products, float32 dot products of unit vectors
        target = (features.video_embeds if "frames" in query else features.text_embeds)[0].double().numpy()
        coarse = audio.audio_embeds.double().numpy()[[r.row for r in recommendations]] @ target
        np.testing.assert_allclose(
            [r.coarse_score for r in recommendations], coarse, rtol=0, atol=_dot_atol(exact_index.store.dim)
        )


def test_default_float16_store_and_approximate_indexes(tmp_path, library, model_dir, exact_index, story):
    """float16 store: the float32 features rounded to float16, scored by the model's similarity of those; IVF-PQ and
    HNSW with a full re-rank find the same clips."""
    _, frames, _, _ = story
    n = exact_index.num_clips
    exact_rows = {row["clip_id"]: row["row"] for row in exact_index.manifest}
    for index_type, folder in (("auto", library), ("ivfpq", library / "cmd"), ("hnsw", library / "cmd")):
        index, _ = SoundLibraryIndex.build(
            folder,
            exact_index.model,
            tmp_path / index_type,
            processor=exact_index.processor,
            index_type=index_type,
            batch_size=4,  # the exact index's batches (the cmd folder is its first): the same float32 features
            progress=False,
        )
        assert index.coarse.kind == ("flat" if index_type == "auto" else index_type)
        assert index.embedding.store_dtype == "float16"
        prefix = "" if folder == library else "cmd/"
        ids = [row["clip_id"] for row in index.manifest]
        stored = _stored_features(index, np.arange(len(ids)))
        exact = _stored_features(exact_index, [exact_rows[prefix + clip_id] for clip_id in ids])
        _assert_same_features(stored, SoSAudioFeatures(**{k: v.half().float() for k, v in exact.items()}))
        got = index.recommend(frames=frames[:3], top_k=n, rerank=n)
        assert len(got) == index.num_clips == len(list(folder.rglob("*.wav")))
        query = index.encode_query(frames=frames[:3])
        scores = _reference_scores(index, stored, query)[:, 0]
        _assert_ranked_by(got, dict(zip(ids, scores)), _query_atol(index, query))


def test_coarse_index_recall_on_planted_neighbours():
    """Approximate stage 1 at its default settings finds the exact top 10 of planted neighbours."""
    rng = np.random.default_rng(0)
    dim, num, queries = 32, 3000, 20
    library = rng.standard_normal((num, dim)).astype(np.float32)
    library /= np.linalg.norm(library, axis=1, keepdims=True)
    q = rng.standard_normal((queries, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    planted = rng.choice(num, size=(queries, 10), replace=False)
    for i in range(queries):
        near = q[i] + 0.4 * rng.standard_normal((10, dim)).astype(np.float32) / np.sqrt(dim)
        library[planted[i]] = near / np.linalg.norm(near, axis=1, keepdims=True)
    exact = np.argsort(-(q @ library.T), axis=1)[:, :10]
    assert all(set(e) == set(p) for e, p in zip(exact, planted))
    for kind in ("ivfpq", "hnsw"):
        index = CoarseIndex.build(library, CoarseIndexSettings(index_type=kind))
        _, rows = index.search(q, 10, exact_rows=lambda r: library[r])
        recall = np.mean([len(set(r) & set(e)) / 10 for r, e in zip(rows, exact)])
        assert recall >= 0.95, (kind, recall)
    assert CoarseIndex.build(library, CoarseIndexSettings()).kind == "flat" and AUTO_FLAT_MAX >= num


def test_incremental_add_encodes_only_new_or_changed_files(tmp_path, library, model_dir, exact_index, story):
    _, frames, _, _ = story
    lib = tmp_path / "lib"
    shutil.copytree(library / "cmd", lib / "cmd")
    # Every build here encodes one file at a time, so that a clip's features do not depend on the files beside it in a
    # batch (float32 sums go in other orders for other batch shapes).
    settings = dict(store_dtype="float32", batch_size=1, progress=False)
    first, report = SoundLibraryIndex.build(lib, model_dir, tmp_path / "idx", **settings)
    assert len(report.added) == 4
    (lib / "lsmdc").mkdir()
    for wav in sorted((library / "lsmdc").glob("*.wav"))[:2]:
        shutil.copy(wav, lib / "lsmdc" / wav.name)
    changed, gone = sorted((lib / "cmd").glob("*.wav"))[:2]
    shutil.copy(sorted((library / "lsmdc").glob("*.wav"))[-1], changed)  # new content under an old name
    gone.unlink()
    encoded = []
    original = SoundLibraryIndex._encode_audio

    def counting(self, waves):
        encoded.append(len(waves))
        return original(self, waves)

    with mock.patch.object(SoundLibraryIndex, "_encode_audio", counting):
        index, report = SoundLibraryIndex.build(lib, model_dir, tmp_path / "idx", **settings)
    assert sum(encoded) == 3 and len(report.added) == 3 and report.unchanged == 2
    assert sorted(report.removed) == sorted(p.relative_to(lib).as_posix() for p in (changed, gone))
    assert index.num_clips == 5 and len(index.manifest) == 7 and len(index.store.shards) == 2
    # The updated index holds exactly what a fresh one over the same files holds, and ranks as the fresh one does.
    fresh, _ = SoundLibraryIndex.build(lib, model_dir, tmp_path / "fresh", **settings)
    reloaded = SoundLibraryIndex.load(tmp_path / "idx")
    ids = [row["clip_id"] for row in fresh.manifest]
    active = {row["clip_id"]: row["row"] for row in reloaded.manifest if row["active"]}
    assert sorted(active) == sorted(ids)
    audio = _stored_features(fresh, np.arange(len(ids)))
    _assert_same_features(_stored_features(reloaded, [active[clip_id] for clip_id in ids]), audio)
    query = fresh.encode_query(frames=frames[:2])
    scores = dict(zip(ids, _reference_scores(fresh, audio, query)[:, 0]))
    for ranked in (reloaded, fresh):
        got = ranked.recommend(frames=frames[:2], top_k=5, rerank=5)
        assert len(got) == 5
        _assert_ranked_by(got, scores, _query_atol(fresh, query))
    # Nothing changed: nothing encoded, no new files.
    _, report = SoundLibraryIndex.build(lib, model_dir, tmp_path / "idx", store_dtype="float32", progress=False)
    assert report.added == [] and report.removed == [] and report.unchanged == 5


def test_corrupted_or_partly_written_index_is_detected(tmp_path, exact_index, model_dir):
    copy = tmp_path / "copy"
    shutil.copytree(exact_index.folder, copy)
    tokens = copy / "store" / exact_index.store.shards[0].files["tokens"]["name"]
    data = bytearray(tokens.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the last clip's sequence features
    tokens.write_bytes(bytes(data))
    index = SoundLibraryIndex.load(copy, model=exact_index.model, processor=exact_index.processor)
    with pytest.raises(CorruptIndexError, match="CRC"):
        index.recommend(text="a storm at sea", top_k=3, rerank=exact_index.num_clips)
    with pytest.raises(CorruptIndexError, match="checksum"):
        SoundLibraryIndex.load(copy, verify=True)
    with pytest.raises(SystemExit) as exit_info:
        main(["recommend", "--index", str(copy), "--text", "a storm at sea", "--rerank", "100"])
    assert exit_info.value.code == 2

    cases = {
        "truncated store": lambda f: (f / "store" / exact_index.store.shards[0].files["global"]["name"]).write_bytes(
            b"\x93NUMPY"
        ),
        "edited config": lambda f: (f / "index.json").write_text(
            (f / "index.json").read_text().replace('"num_active": 14', '"num_active": 15')
        ),
        "no config (partly written)": lambda f: (f / "index.json").unlink(),
        "corrupted coarse index": lambda f: next(f.glob("coarse-*.faiss")).write_bytes(b"junk"),
    }
    for name, damage in cases.items():
        folder = tmp_path / name.replace(" ", "_")
        shutil.copytree(exact_index.folder, folder)
        damage(folder)
        with pytest.raises(CorruptIndexError):
            SoundLibraryIndex.load(folder)
        with pytest.raises(SystemExit) as exit_info:
            main(["recommend", "--index", str(folder), "--text", "rain"])
        assert exit_info.value.code == 2, name


def test_index_built_with_another_model_or_settings_is_refused(tmp_path, exact_index, library):
    other = _save_tiny_model(tmp_path / "other", seed=1)
    with pytest.raises(ValueError, match="different one"):
        SoundLibraryIndex.load(exact_index.folder, model=str(other))
    copy = tmp_path / "copy"
    shutil.copytree(exact_index.folder, copy)
    for argv in (
        ["index", "--library", str(library), "--model", str(other), "--out", str(copy), "--quiet"],
        [
            "index",
            "--library",
            str(library),
            "--model",
            exact_index.config.model.id,
            "--out",
            str(copy),
            "--store-dtype",
            "float16",
            "--quiet",
        ],
        ["recommend", "--index", str(copy), "--model", str(other), "--text", "wind"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2, argv
    processor = tiny_retrieval_processor(num_frames=8)
    with pytest.raises(ValueError, match="num_frames"):
        SoundLibraryIndex.load(exact_index.folder, model=exact_index.model, processor=processor)


def test_bad_library_and_queries_exit_2(tmp_path, library, model_dir, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "noise.wav").write_bytes(b"RIFF....not a wav")
    for folder in (empty, broken):
        with pytest.raises(SystemExit) as exit_info:
            main(
                [
                    "index",
                    "--library",
                    str(folder),
                    "--model",
                    str(model_dir),
                    "--out",
                    str(tmp_path / f"idx-{folder.name}"),
                    "--quiet",
                ]
            )
        assert exit_info.value.code == 2
        assert "is empty" in capsys.readouterr().err
    mixed = tmp_path / "mixed"
    shutil.copytree(library / "cmd", mixed)
    (mixed / "broken.flac").write_bytes(b"fLaC but not really")
    out = tmp_path / "idx-mixed"
    assert main(["index", "--library", str(mixed), "--model", str(model_dir), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "broken.flac" in err and "the rest is indexed" in err
    assert SoundLibraryIndex.load(out).num_clips == 4
    assert [json.loads(line)["clip_id"] for line in (out / "failures.jsonl").read_text().splitlines()] == [
        "broken.flac"
    ]

    no_frames = tmp_path / "no_frames"
    no_frames.mkdir()
    for argv, message in (
        (["--text", "   "], "text query is empty"),
        (["--frames", str(no_frames)], "no frames"),
        (["--video", str(tmp_path / "missing.mp4")], "does not exist"),
        (["--text", "rain", "--top-k", "0"], "--top-k"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["recommend", "--index", str(out), *argv])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err, argv


def test_story_mode_one_distinct_sound_per_scene(exact_index, story):
    _, frames, times, duration = story
    assert len(frames) >= 4
    # The first three scenes, so that every assignment of distinct clips can be tried below.
    frames, times, duration = frames[:3], times[:3], times[3]
    scenes = exact_index.recommend_story(frames, times, duration=duration)
    spans = scene_spans(times, duration)
    assert [(s.start, s.end) for s in scenes] == [(sp.start, sp.end) for sp in spans]
    assert (
        scenes[0].start == 0.0
        and scenes[-1].end == duration
        and all(a.end == b.start for a, b in zip(scenes, scenes[1:]))
    )
    assert [s.start for s in scenes[1:]] == sorted(set(times))[1:]  # switches only at key frames (scene cuts)
    chosen = [s.recommendation.row for s in scenes]
    assert len(set(chosen)) == len(chosen)
    # The assignment maximises the story's total similarity over every choice of distinct clips. The index chooses by
    # its float32 scores, each within atol of the float64 ones here: its choice is the best to within 2 atol a scene.
    query = exact_index.encode_query(frames=[[frames[i] for i in sp.frame_indices] for sp in spans], batch=True)
    audio = _stored_features(exact_index, np.arange(exact_index.num_clips))
    scores = _reference_scores(exact_index, audio, query).T  # scenes x clips
    atol = _query_atol(exact_index, query)
    best = max(
        sum(scores[s, c] for s, c in enumerate(choice))
        for choice in itertools.permutations(range(scores.shape[1]), len(spans))
    )
    assert sum(scores[s, c] for s, c in enumerate(chosen)) >= best - 2 * atol * len(spans)
    repeated = exact_index.recommend_story(frames, times, duration=duration, allow_repeats=True)
    assert all(scores[s, r.recommendation.row] >= scores[s].max() - 2 * atol for s, r in enumerate(repeated))
    # ...and a real choice: in each scene the best clip leads the next by more than 2 atol
    assert all(np.diff(np.sort(row))[-1] > 2 * atol for row in scores)
    with pytest.raises(ValueError, match="no frames"):
        scene_spans([], 3.0)


def test_recommend_cli_video_story_mode_writes_json(tmp_path, exact_index, story):
    video, _, times, _ = story
    out = tmp_path / "rec.json"
    assert (
        main(
            [
                "recommend",
                "--index",
                str(exact_index.folder),
                "--video",
                str(video),
                "--top-k",
                "3",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    payload = json.loads(out.read_text())
    assert len(payload["recommendations"]) == 3 and payload["recommendations"][0]["rank"] == 1
    assert {"clip_id", "path", "score", "coarse_score"} <= set(payload["recommendations"][0])
    assert [s["start"] for s in payload["story"]][1:] == pytest.approx(sorted(set(times))[1:])
    assert len({s["clip_id"] for s in payload["story"]}) == len(payload["story"])
    assert payload["model"]["fingerprint"] == exact_index.config.model.fingerprint


def _push_to_a_folder(index: SoundLibraryIndex, folder: Path) -> mock.Mock:
    """Push ``index`` with the Hub calls replaced by copying each uploaded file into ``folder`` (no hub here)."""
    from huggingface_hub import HfApi

    def commit(repo_id, operations, **kwargs):
        for operation in operations:
            target = folder / operation.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(operation.path_or_fileobj, target)
        return mock.Mock(commit_url="https://hf.co/c/1")

    with (
        mock.patch.object(HfApi, "create_repo") as create,
        mock.patch.object(HfApi, "create_commit", side_effect=commit) as upload,
    ):
        assert index.push_to_hub("me/sounds") == "https://hf.co/c/1"
    assert create.call_args.kwargs["repo_type"] == "dataset" and upload.call_args.kwargs["repo_type"] == "dataset"
    return upload


def test_push_to_hub_and_load_from_hub(tmp_path, exact_index, library, model_dir):
    """The pushed index names no local path or file time; `hf://owner/name` loads it (the download mocked), and
    its clips are read from the library given to `load`, or shown by their paths relative to the library."""
    published = tmp_path / "snapshot"
    _push_to_a_folder(exact_index, published)
    assert sorted(p.relative_to(published).as_posix() for p in published.rglob("*") if p.is_file()) == sorted(
        ["index.json", exact_index.config.manifest.file.name, exact_index.config.coarse.file.name]
        + [f"store/{name}" for name in exact_index.store.file_names()]
    )
    texts = [(published / "index.json").read_text(), (published / exact_index.config.manifest.file.name).read_text()]
    for local in (str(library), str(model_dir), str(exact_index.folder), str(tmp_path.parent)):
        assert all(local not in text for text in texts), local
    body = json.loads(texts[0])["index"]
    assert body["model"] == {
        "id": model_dir.name,
        "revision": None,
        "fingerprint": exact_index.config.model.fingerprint,
    }
    assert body["library"] == {"kind": "folder", "location": library.name, "config": None}
    rows = [json.loads(line) for line in texts[1].splitlines()]
    assert [set(row) for row in rows] == [{"clip_id", "path", "sha256", "active", "row"}] * 14  # no file times
    assert [row["path"] for row in rows] == [f"{library.name}/{row['clip_id']}" for row in exact_index.manifest]
    query = {"text": "birds in a forest", "top_k": 5}
    expected = exact_index.recommend(**query)
    with mock.patch("huggingface_hub.snapshot_download", return_value=str(published)) as download:
        hub = SoundLibraryIndex.load("hf://me/sounds", model=exact_index.model, processor=exact_index.processor)
        given = SoundLibraryIndex.load(
            "hf://me/sounds", model=exact_index.model, processor=exact_index.processor, library=library
        )
    assert download.call_args.args == ("me/sounds",) and download.call_args.kwargs["repo_type"] == "dataset"
    assert hub.clip_source is None and [(r.clip_id, r.path) for r in hub.recommend(**query)] == [
        (r.clip_id, f"{library.name}/{r.clip_id}") for r in expected
    ]
    assert [(r.clip_id, r.path, r.score) for r in given.recommend(**query)] == [
        (r.clip_id, r.path, r.score) for r in expected
    ]
    with pytest.raises(ValueError, match="built from a folder"):
        with mock.patch("huggingface_hub.snapshot_download", return_value=str(published)):
            SoundLibraryIndex.load("hf://me/sounds", library="hf://someone/dataset")


def test_cli_defaults_match_the_library():
    assert (recommend_command.DEFAULT_TOP_K, recommend_command.DEFAULT_RERANK, recommend_command.DEFAULT_BATCH_SIZE) == (
        library_index.DEFAULT_TOP_K, library_index.DEFAULT_RERANK, library_index.DEFAULT_BATCH_SIZE,
    )  # fmt: skip
    assert recommend_command.AUTO_FLAT_MAX == AUTO_FLAT_MAX
    assert recommend_command.MAX_CANDIDATES == library_index.MAX_CANDIDATES
    from sound_of_story.recommendation import INDEX_TYPES

    assert recommend_command.INDEX_TYPES == INDEX_TYPES


def test_library_from_a_built_sos_dataset(tmp_path, library, exact_index):
    """A built SoS folder (card with configs + Parquet shards) is indexed row by row, ids from config/split/id."""
    from datasets import Audio, Dataset, Features, Value

    wavs = sorted((library / "cmd").glob("*.wav"))[:2]
    rows = {"id": [w.stem for w in wavs], "audio": [{"bytes": w.read_bytes(), "path": w.name} for w in wavs]}
    folder = tmp_path / "sos"
    (folder / "stories").mkdir(parents=True)
    Dataset.from_dict(rows, features=Features({"id": Value("string"), "audio": Audio()})).to_parquet(
        str(folder / "stories" / "test-00000-of-00001.parquet")
    )
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: stories\n  data_files:\n  - split: test\n    path: stories/test-*.parquet\n---\n"
    )
    index, report = SoundLibraryIndex.build(
        folder,
        exact_index.model,
        tmp_path / "idx",
        processor=exact_index.processor,
        store_dtype="float32",
        batch_size=2,
        progress=False,
    )
    assert report.added == [f"stories/test/{w.stem}" for w in wavs] and index.config.library.kind == "dataset"
    # Same audio, same features: the dataset rows hold what the folder's files give in the same batch, and score so.
    audio = _encoded_features(index, wavs, batch_size=2)
    _assert_same_features(_stored_features(index, np.arange(2)), audio)
    query = index.encode_query(text="a car passes")
    scores = dict(zip(report.added, _reference_scores(index, audio, query)[:, 0]))
    got = index.recommend(text="a car passes", top_k=2)
    assert sorted(r.clip_id for r in got) == report.added
    _assert_ranked_by(got, scores, _query_atol(index, query))


# An index.json body as the index wrote it before its files had their own module (a SoS model, one shard).
OLD_LAYOUT_BODY = {
    "coarse": {
        "bytes": 301, "kind": "flat", "name": "coarse-000001.faiss",
        "settings": {"ef_construction": 80, "ef_search": 128, "hnsw_m": 32, "index_type": "auto", "nlist": None,
                     "nprobe": 64, "pq_m": None, "pq_nbits": None, "refine_factor": 4},
        "sha256": "7172fc67534518e486dd97245e216da1de94e0c824aa5afb2d71a76cadb69a53", "trained_on": 0,
    },
    "embedding": {"audio_crop": "energetic", "audio_crops": 1, "audio_window_seconds": 10.24, "dim": 16,
                  "max_text_length": 77, "model_tokens": 513, "num_frames": 40, "sampling_rate": 16000,
                  "store_dtype": "float16", "store_tokens": None, "temperature": 0.01},
    "format_version": 1,
    "generation": 1,
    "library": {"config": None, "kind": "folder", "location": "/tmp/lib"},
    "manifest": {"bytes": 832, "name": "manifest-000001.jsonl", "num_active": 4, "num_rows": 4,
                 "sha256": "f12cafab900aadb17dfb26ebfbb388fa4d116868cd0cbd4721c941da668ed1a8"},
    "model": {"fingerprint": "8077f174f127df4bd8af401153d4145855991459ac99a906c192461106b1adef",
              "id": "/tmp/model", "revision": None},
    "store": {"dim": 16, "dtype": "float16", "num_tokens": 513, "shards": [{"count": 4, "start": 0, "files": {
        "crc": {"bytes": 144, "name": "000000-crc.npy", "sha256": "e6" * 32},
        "global": {"bytes": 256, "name": "000000-global.npy", "sha256": "72" * 32},
        "tokens": {"bytes": 65792, "name": "000000-tokens.npy", "sha256": "73" * 32},
    }}]},
}  # fmt: skip


def _keys(value, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        return {prefix + k for k in value} | {p for k, v in value.items() for p in _keys(v, f"{prefix}{k}.")}
    if isinstance(value, list):
        return {p for item in value for p in _keys(item, prefix + "[].")}
    return set()


def test_index_json_keeps_its_layout(tmp_path, exact_index):
    """An index.json of the earlier layout reads into the typed config and writes back unchanged, checksum
    included; a fresh index writes the same keys (its store has tokens, as the SoS model has)."""
    (tmp_path / "index.json").write_text(
        json.dumps({"index": OLD_LAYOUT_BODY, "sha256": json_sha256(OLD_LAYOUT_BODY, ensure_ascii=False)})
    )
    config = read_config(tmp_path)
    assert isinstance(config, IndexConfig) and config.model.id == "/tmp/model" and config.embedding.temperature == 0.01
    assert config.store.shards[0].files["tokens"]["bytes"] == 65792 and config.coarse.settings.nprobe == 64
    assert config.to_dict() == OLD_LAYOUT_BODY
    stored = json.loads((tmp_path / "index.json").read_text())
    write_config(tmp_path, config)
    assert json.loads((tmp_path / "index.json").read_text()) == stored
    written = json.loads((exact_index.folder / "index.json").read_text())["index"]
    assert _keys(written) == _keys(OLD_LAYOUT_BODY)


@pytest.mark.parametrize("kind", ["wav2clip", "clap"])
def test_baseline_index_ranks_as_the_model(kind, tmp_path, library, story, tiny_retrieval_models):
    """The Wav2CLIP (audio-video) and CLAP (audio-text) baselines index and rank the library as their own cosine
    does; their store has no token part; a query the model cannot take is refused."""
    _, frames, times, duration = story
    index, report = SoundLibraryIndex.build(
        library, tiny_retrieval_models[kind], tmp_path / "idx", index_type="flat", store_dtype="float32",
        batch_size=1, progress=False,
    )  # fmt: skip
    assert not report.failures and index.num_clips == 14
    assert index.embedding.model_tokens == 0 and index.embedding.temperature is None
    assert index.store.num_tokens == 0 and not list((tmp_path / "idx" / "store").glob("*-tokens.npy"))
    queries = {"text": "rain drums on the roof of a quiet house at night"}
    if kind == "wav2clip":
        queries["frames"] = frames[:3]
    assert index.query_kinds == (("frames", "text") if kind == "wav2clip" else ("text",))
    reloaded = SoundLibraryIndex.load(tmp_path / "idx")  # the model comes back through the one loader, by its id
    # every file encoded here one at a time, as the index did: the same embeddings, whose cosine is their dot product
    ids = [row["clip_id"] for row in index.manifest]
    audio = _encoded_features(index, [row["path"] for row in index.manifest], batch_size=1)
    _assert_same_features(_stored_features(reloaded, np.arange(len(ids))), audio)
    atol = _dot_atol(index.store.dim)  # the scores and stage 1's inner products are float32 dot products
    for name, value in queries.items():
        features = index.encode_query(**{name: value})
        scores = _reference_scores(index, audio, features)[:, 0]
        assert _separated_neighbours(scores, atol) == 13  # no near ties: the order is a real test
        got = reloaded.recommend(**{name: value}, top_k=14, rerank=14)
        _assert_ranked_by(got, dict(zip(ids, scores)), atol)
        np.testing.assert_allclose([r.coarse_score for r in got], scores[[r.row for r in got]], rtol=0, atol=atol)
    if kind == "wav2clip":
        scenes = reloaded.recommend_story(frames[:3], times[:3], duration=times[3], allow_repeats=True)
        spans = scene_spans(times[:3], times[3])
        query = index.encode_query(frames=[[frames[i] for i in sp.frame_indices] for sp in spans], batch=True)
        scores = _reference_scores(index, audio, query).T  # scenes x clips
        assert all(np.diff(np.sort(row))[-1] > 2 * atol for row in scores)  # one best clip a scene
        assert [s.recommendation.row for s in scenes] == [int(np.argmax(row)) for row in scores]
    else:
        with pytest.raises(ValueError, match="cannot take a query by frames"):
            reloaded.recommend(frames=frames[:3])
        with pytest.raises(ValueError, match="cannot take a query by frames"):
            reloaded.recommend_story(frames[:3], times[:3], duration=duration)
        frames_dir = tmp_path / "frames"
        frames_dir.mkdir()
        frames[0].save(frames_dir / "0.png")
        with pytest.raises(SystemExit) as exit_info:
            main(["recommend", "--index", str(tmp_path / "idx"), "--frames", str(frames_dir)])
        assert exit_info.value.code == 2
    with pytest.raises(ValueError, match="one global embedding per clip"):
        SoundLibraryIndex.build(
            library / "cmd", tiny_retrieval_models[kind], tmp_path / "pooled", store_tokens=4, progress=False
        )
