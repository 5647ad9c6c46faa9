"""The SoSgen pipelines' model cards: written by save_pretrained and push_to_hub (Hub upload mocked) through
sound_of_story.cards, with what the pipeline is, how to load it, its parameters, and no local path."""

from __future__ import annotations

import shutil

import yaml

from sound_of_story.audio.spectrogram import SpectrogramParams
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
    assert "8000 Hz mono, 32 mel bins (0-3000 Hz), 100 columns per second" in body
    assert (
        "audio from Griffin-Lim, `refined` method: 10 iterations on the 400-point FFT grid of the window's length, "
        "then 2 on the full 800-point grid (12 in all for the 8 configured" in " ".join(body.split())
    )
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
    # diffusers copies the source folder into the configurations as _name_or_path: none names the local folder
    configs = {
        p.relative_to(tmp_path / "second").as_posix(): p.read_text() for p in (tmp_path / "second").rglob("*.json")
    }
    assert "model_index.json" in configs and "unet/config.json" in configs
    assert not [name for name, text in configs.items() if str(tmp_path) in text]
    assert type(pipe).from_pretrained(tmp_path / "second").unet.config.sample_size == pipe.unet.config.sample_size

    # A pipeline loaded by Hub id names it as its base model; the ControlNet pipeline says what it is.
    controlnet = tiny_sosgen_controlnet()
    controlnet.register_to_config(_name_or_path="riffusion/riffusion-model-v1")
    controlnet.push_to_hub("someone/sosgen-frames")
    metadata, body = card_parts((uploads["someone/sosgen-frames"] / "README.md").read_text())
    assert metadata["base_model"] == ["riffusion/riffusion-model-v1"] and {"controlnet", "image-to-audio"} <= set(
        metadata["tags"]
    )
    assert 'SoSgenControlNetPipeline.from_pretrained("someone/sosgen-frames")' in body and "frames=" in body


def test_the_card_states_the_griffin_lim_iterations_that_run():
    """For Riffusion's spectrogram parameters: refined is 40 iterations on the 4410-point grid and 8 on the full
    17640-point one (the converter's schedule, checked here against the iterations it runs), exact is 32."""
    from sound_of_story.audio.spectrogram import get_converter

    riffusion = SpectrogramParams()
    texts = {
        method: " ".join(
            tiny_sosgen(spectrogram_params=riffusion, griffin_lim_method=method).model_card("m").text.split()
        )
        for method in ("refined", "exact", "fast")
    }
    assert (
        "audio from Griffin-Lim, `refined` method: 40 iterations on the 4410-point FFT grid of the window's length, "
        "then 8 on the full 17640-point grid (48 in all for the 32 configured; the `exact` method, Riffusion's own "
        "inverse, runs 32 on the full grid)" in texts["refined"]
    )
    assert (
        "audio from Griffin-Lim, `exact` method (Riffusion's own inverse, torchaudio's fast Griffin-Lim): 32 "
        "iterations on the 17640-point FFT grid, momentum 0.99" in texts["exact"]
    )
    assert "`fast` method: 46 iterations on the 4410-point FFT grid of the window's length, then 2 on" in texts["fast"]
    converter = get_converter(riffusion)
    assert converter.num_griffin_lim_steps(32, "refined") == 48 and converter.num_griffin_lim_steps(32, "exact") == 32
    assert converter.num_griffin_lim_steps(32, "fast") == 48 and riffusion.n_fft // converter.coarse_stride == 4410
