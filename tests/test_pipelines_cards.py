"""The SoSgen pipelines' model cards: written by save_pretrained and push_to_hub (Hub upload mocked) through
sound_of_story.cards, with what the pipeline is, how to load it, its parameters, and no local path."""

from __future__ import annotations

import shutil

import yaml

from sound_of_story.pipelines.tiny_random import tiny_sosgen, tiny_sosgen_controlnet


def card_parts(text: str) -> tuple[dict, str]:
    _, header, body = text.split("---\n", 2)
    return yaml.safe_load(header), body.lstrip("\n")


def test_push_to_hub_uploads_the_card_and_save_pretrained_writes_it(tmp_path, monkeypatch):
    import diffusers.utils.hub_utils as hub_utils

    uploads = {}

    def fake_create_repo(repo_id, **kwargs):
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def fake_upload_folder(repo_id, folder_path, **kwargs):
        uploads[repo_id] = tmp_path / "hub" / repo_id.replace("/", "--")
        shutil.copytree(folder_path, uploads[repo_id])

    monkeypatch.setattr(hub_utils, "create_repo", fake_create_repo)
    monkeypatch.setattr(hub_utils, "upload_folder", fake_upload_folder)
    pipe = tiny_sosgen()
    pipe.push_to_hub("someone/sosgen-tiny")
    metadata, body = card_parts((uploads["someone/sosgen-tiny"] / "README.md").read_text())
    assert metadata["library_name"] == "diffusers" and metadata["pipeline_tag"] == "text-to-audio"
    assert {"sound-of-story", "sosgen", "riffusion"} <= set(metadata["tags"]) and "controlnet" not in metadata["tags"]
    assert "base_model" not in metadata  # built in code: no Hub id to name
    assert body.startswith("# someone/sosgen-tiny\n") and "`SoSgenPipeline`" in body
    assert 'SoSgenPipeline.from_pretrained("someone/sosgen-tiny")' in body
    assert "8000 Hz mono, 32 mel bins (0-3000 Hz), 100 columns per second" in body and "(`refined` method)" in body
    assert (
        "longer than 128 columns is generated as windows overlapping by 32 columns" in body
        and "@inproceedings{bae2023soundofstory" in body
    )

    # save_pretrained of a pipeline loaded from a local folder: the card, with no local path in it.
    pipe.save_pretrained(tmp_path / "first")
    loaded = type(pipe).from_pretrained(tmp_path / "first")
    loaded.save_pretrained(tmp_path / "second")
    text = (tmp_path / "second" / "README.md").read_text()
    assert str(tmp_path) not in text and "base_model" not in card_parts(text)[0] and text.count("# second\n") == 1
    assert not list((tmp_path / "second").glob("*.partial"))

    # A pipeline loaded by Hub id names it as its base model; the ControlNet pipeline says what it is.
    controlnet = tiny_sosgen_controlnet()
    controlnet.register_to_config(_name_or_path="riffusion/riffusion-model-v1")
    controlnet.push_to_hub("someone/sosgen-frames")
    metadata, body = card_parts((uploads["someone/sosgen-frames"] / "README.md").read_text())
    assert metadata["base_model"] == ["riffusion/riffusion-model-v1"] and {"controlnet", "image-to-audio"} <= set(
        metadata["tags"]
    )
    assert 'SoSgenControlNetPipeline.from_pretrained("someone/sosgen-frames")' in body and "frames=" in body
