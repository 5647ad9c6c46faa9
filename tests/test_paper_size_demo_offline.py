"""`sound-of-story demo --pretrained` offline: refused only when the hub cache lacks the checkpoints.

With HF_HUB_OFFLINE=1 the demo used to refuse `--pretrained` before looking at the cache, so it could not run on the
stand-ins (`sound-of-story stand-ins --hub-cache DIR`, docs/paper-size.md). Now it checks the cache: the ids it names
are the ones missing, and a cache that holds them all is accepted.
"""

from __future__ import annotations

import json

import pytest

from sound_of_story.app import demo, stand_ins
from sound_of_story.core import model_ids


def _install_config_only_stand_in(folder, cache, hub_id: str, filename: str) -> None:
    """A stand-in holding just the file the check looks for, installed into `cache` as `hub_id`."""
    folder.mkdir(parents=True)
    (folder / filename).write_text("{}\n")
    manifest = {"stand_in_for": hub_id, "files": {filename: 3}}
    (folder / stand_ins.MANIFEST_NAME).write_text(json.dumps(manifest))
    stand_ins.install_into_hub_cache(folder, cache)


def test_offline_pretrained_demo_is_refused_only_for_checkpoints_missing_from_the_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE
    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    everything = [model_ids.CLIP, model_ids.AST, model_ids.RIFFUSION]
    assert demo.pretrained_checkpoints_missing_from_cache() == everything

    out = tmp_path / "run"
    with pytest.raises(ValueError) as refused:
        demo.run_demo(out, minutes=0.5, pretrained=True, progress=False)
    message = str(refused.value)
    assert all(hub_id in message for hub_id in everything) and str(cache) in message
    assert not out.exists()  # refused before any work

    _install_config_only_stand_in(tmp_path / "clip", cache, model_ids.CLIP, "config.json")
    assert demo.pretrained_checkpoints_missing_from_cache() == [model_ids.AST, model_ids.RIFFUSION]
    with pytest.raises(ValueError) as refused:
        demo.run_demo(out, minutes=0.5, pretrained=True, progress=False)
    assert model_ids.CLIP not in str(refused.value) and model_ids.RIFFUSION in str(refused.value)

    # Riffusion is a pipeline: its snapshot is recognised by model_index.json, not by a config.json.
    _install_config_only_stand_in(tmp_path / "riffusion-config", cache, model_ids.RIFFUSION, "config.json")
    assert demo.pretrained_checkpoints_missing_from_cache() == [model_ids.AST, model_ids.RIFFUSION]
    _install_config_only_stand_in(tmp_path / "riffusion", cache, model_ids.RIFFUSION, "model_index.json")
    _install_config_only_stand_in(tmp_path / "ast", cache, model_ids.AST, "config.json")
    assert demo.pretrained_checkpoints_missing_from_cache() == []
