"""The ground floor (core/): atomic writes, content hashes and model fingerprints."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch

from sound_of_story.core.atomic_files import PARTIAL_PREFIX, atomic_path, write_bytes_atomic, write_json_atomic
from sound_of_story.core.hashing import bytes_sha256, file_sha256, json_sha256, model_fingerprint

REPO = Path(__file__).resolve().parents[1]


def test_atomic_write_replaces_the_target_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "a" / "card.md"
    write_bytes_atomic(target, b"one")
    write_bytes_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["card.md"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    target = tmp_path / "x.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_temporary_names_are_unpredictable_and_keep_the_suffix(tmp_path):
    names = []
    for _ in range(3):
        with atomic_path(tmp_path / "clip.flac") as tmp:
            names.append(tmp.name)
            assert tmp.parent == tmp_path and tmp.suffix == ".flac" and tmp.name.startswith(PARTIAL_PREFIX)
            assert tmp.is_file() and not tmp.is_symlink()  # created by us, exclusively
            tmp.write_bytes(b"x")
    assert len(set(names)) == 3  # not derived from the name and the process id


def test_a_symlink_planted_at_the_target_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "out" / "README.md"
    target.parent.mkdir()
    target.symlink_to(victim)
    write_bytes_atomic(target, b"card")
    assert victim.read_text() == "precious"
    assert not target.is_symlink() and target.read_bytes() == b"card"


def test_symlinks_planted_at_every_old_temporary_name_are_not_followed(tmp_path):
    """The names the earlier conventions used (`.stem.partial-PID.suffix`, `name.tmp`, `name.partial`)."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "README.md"
    for name in (f".README.partial-{os.getpid()}.md", "README.md.tmp", "README.md.partial"):
        (tmp_path / name).symlink_to(victim)
    write_bytes_atomic(target, b"card")
    assert victim.read_text() == "precious" and target.read_bytes() == b"card"


def test_the_content_is_flushed_to_disk_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    write_bytes_atomic(tmp_path / "f.bin", b"data")
    assert events[:2] == ["fsync", "replace"]


def test_file_hashes_match_hashlib_for_multi_chunk_files(tmp_path):
    import hashlib

    data = os.urandom(3 * (1 << 20) + 17)
    (tmp_path / "big.bin").write_bytes(data)
    assert file_sha256(tmp_path / "big.bin") == hashlib.sha256(data).hexdigest() == bytes_sha256(data)


def test_json_hash_ignores_key_order_and_keeps_its_ascii_form():
    assert json_sha256({"a": 1, "b": [1, 2]}) == json_sha256({"b": [1, 2], "a": 1})
    assert json_sha256({"t": "é"}) != json_sha256({"t": "é"}, ensure_ascii=False)


def test_model_fingerprint_changes_with_any_weight_and_not_with_the_saving_library(tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8))
    before = model_fingerprint(model)
    model.save_pretrained(tmp_path)
    loaded = BertModel.from_pretrained(tmp_path)
    loaded.config.transformers_version = "0.0.1"
    assert model_fingerprint(loaded) == before
    with torch.no_grad():
        loaded.pooler.dense.bias[3] += 1e-7
    assert model_fingerprint(loaded) != before
    only_embeddings = model_fingerprint(loaded, include=lambda name: name.startswith("embeddings."))
    assert only_embeddings == model_fingerprint(model, include=lambda name: name.startswith("embeddings."))


def _renames_outside_core():
    """Calls of os.replace / os.rename / tempfile.mkstemp in package code outside core/ (file writes go through
    core's atomic_path; the story cache renames whole folders, and the build moves its staged Parquet files)."""
    allowed = {
        ("dataset_builder/story_cache.py", "rename"),
        ("dataset_builder/build.py", "replace"),
    }
    found = []
    parts = ["audio", "cards", "dataset_builder", "modeling", "pipelines", "metrics", "evaluation", "training",
             "recommendation", "app", "train"]  # fmt: skip
    for part in parts:
        for path in sorted((REPO / part).rglob("*.py")):
            rel = str(path.relative_to(REPO))
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr in ("replace", "rename", "mkstemp"):
                    if isinstance(node.value, ast.Name) and node.value.id in ("os", "tempfile"):
                        if (rel, node.attr) not in allowed:
                            found.append(f"{rel}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def test_only_core_writes_files_atomically():
    assert _renames_outside_core() == []


def test_the_modeling_defaults_are_the_package_checkpoint_ids():
    """modeling_sos.py is copied next to saved models as remote code, so it imports nothing of the package and
    spells the ids out: they must stay the ones core.model_ids names."""
    import inspect

    from sound_of_story.core import model_ids
    from sound_of_story.modeling import SoSRetrievalModel, SoSRetrievalProcessor, Wav2CLIPBaselineModel

    for method in (SoSRetrievalModel.from_encoders, SoSRetrievalProcessor.from_encoders):
        parameters = inspect.signature(method).parameters
        assert (parameters["clip"].default, parameters["audio"].default) == (model_ids.CLIP, model_ids.AST)
    assert inspect.signature(Wav2CLIPBaselineModel.from_encoders).parameters["clip"].default == model_ids.CLIP
    module = ast.parse((REPO / "modeling" / "modeling_sos.py").read_text())
    top_level = [node for node in module.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not [
        node.lineno
        for node in top_level
        if (getattr(node, "module", None) or "").startswith("sound_of_story")
        or any(alias.name.startswith("sound_of_story") for alias in node.names)
    ]
