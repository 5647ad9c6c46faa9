"""Full-size stand-ins of the Hub checkpoints (app/stand_ins.py, ``sound-of-story stand-ins``).

The configurations are checked against what the real checkpoints publish (parameter counts, file sizes), so the
stand-ins cannot drift from the real models; one full-size stand-in pair (CLIP and AST) is written and loaded by its
Hub id through a hub cache, offline, as the package's defaults load it; the cache layout itself is checked with a
tiny pipeline in Riffusion's layout.
"""

from __future__ import annotations

import gzip
import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from sound_of_story.app import stand_in_files as hub
from sound_of_story.app import stand_ins
from sound_of_story.app.cli import main
from sound_of_story.app.stand_ins_command import NAMES
from sound_of_story.core import model_ids

# The published parameter count of each real checkpoint (component), and where it is published.
PUBLISHED = {
    # OpenAI's clip.load("ViT-B/32") model: 151,277,313 parameters (the count OpenAI's CLIP package gives, quoted
    # in many public repositories); the Hub's pytorch_model.bin is 605 MB = 4 bytes each.
    ("clip", "CLIPModel"): 151_277_313,
    # The Hub's model.safetensors metadata (346,404,948 bytes, float32): 86,594,063; the Hub's collection page: 86.6M.
    ("ast", "ASTForAudioClassification"): 86_594_063,
    # No model card count: pytorch_model.bin is 614,525,833 bytes = 4 x 153,492,890 + 50,309 int64 buffers
    # (position ids, HTSAT relative position indices) + pickle framing.
    ("clap", "ClapModel"): 153_492_890,
    # CompVis/stable-diffusion README: "860M UNet and 123M text encoder"; exactly, from the SD 1.5 Hub repository's
    # LFS sizes: unet/diffusion_pytorch_model.safetensors 3,438,167,540 B = 4 x 859,520,964 + an 83,684 B header,
    # text_encoder/model.safetensors 492,265,874 B, vae/diffusion_pytorch_model.safetensors 334,643,276 B
    # = 4 x 83,653,863 + 27,824.
    ("riffusion", "text_encoder"): 123_060_480,
    ("riffusion", "unet"): 859_520_964,
    ("riffusion", "vae"): 83_653_863,
    # lllyasviel/sd-controlnet-canny diffusion_pytorch_model.safetensors: 1.45 GB = 4 x 361,279,120 (fp16: 723 MB).
    ("controlnet", "ControlNetModel"): 361_279_120,
    # A printout of the real facebook/musicgen-small: "MusicgenForConditionalGeneration: 586,884,674 parameters /
    # T5EncoderModel 109,628,544"; model.safetensors 2.36 GB = 4 x (586,884,674 + 2,105,348 EnCodec codebook buffers).
    ("musicgen", "MusicgenForConditionalGeneration"): 586_884_674,
}

# The sizes the Hub lists for the small files (byte copies from public mirrors where noted in stand_in_files.py).
HUB_SIZES = {
    "clip": {"config.json": 4186, "preprocessor_config.json": 316, "tokenizer_config.json": 592,
             "special_tokens_map.json": 389},
    "ast": {"config.json": 26763, "preprocessor_config.json": 297},
    "clap": {"preprocessor_config.json": 541, "tokenizer_config.json": 384, "special_tokens_map.json": 280},
    "riffusion": {"model_index.json": 541, "unet/config.json": 743, "vae/config.json": 547,
                  "text_encoder/config.json": 617, "scheduler/scheduler_config.json": 308,
                  "feature_extractor/preprocessor_config.json": 342, "tokenizer/tokenizer_config.json": 806,
                  "tokenizer/special_tokens_map.json": 472},
    "controlnet": {"config.json": 920},
    "musicgen": {"preprocessor_config.json": 275, "generation_config.json": 224},
}  # fmt: skip


def _write_small_files(name: str, folder: Path, **kwargs) -> dict[str, str]:
    files, _ = stand_ins.hub_files(name, **kwargs)
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text, encoding="utf-8")
    return files


@pytest.mark.parametrize("name", stand_ins.stand_in_names())
def test_every_configuration_has_the_published_parameter_count(name, tmp_path):
    _write_small_files(name, tmp_path)
    for component in stand_ins.STAND_INS[name].components:
        model = stand_ins.build_model(component, tmp_path, device="meta")
        label = component.subfolder or component.class_name
        assert stand_ins.parameter_count(model) == PUBLISHED[name, label], (name, label)


def test_the_parts_have_their_published_counts_and_the_sos_controlnet_its_derived_one(tmp_path):
    """MusicGen's parts (the same printout), CLIP's vision tower with projection (OpenAI's ViT-B/32 visual:
    87,849,216), and SoSgen's ControlNet: the SD 1.5 ControlNet plus a 512 -> 768 frame projection."""
    from diffusers import ControlNetModel

    from sound_of_story.pipelines import controlnet_from_unet

    for name in ("musicgen", "clip", "riffusion"):
        _write_small_files(name, tmp_path / name)
    (musicgen,) = stand_ins.STAND_INS["musicgen"].components
    model = stand_ins.build_model(musicgen, tmp_path / "musicgen", device="meta")
    assert stand_ins.parameter_count(model.text_encoder) == 109_628_544
    # The decoder the paper calls "300M" (its self-attention and feed-forward layers: 24 x (4 + 8) x 1024^2 = 302M)
    # has cross-attention, 4 embeddings and 4 heads too.
    assert stand_ins.parameter_count(model.decoder) == 419_584_000
    assert stand_ins.parameter_count(model.audio_encoder) == 56_884_674
    assert model.config.audio_encoder.sampling_rate == 32000 and model.config.audio_encoder.frame_rate == 50
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.device("meta"):
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig.from_pretrained(tmp_path / "clip"))
    assert stand_ins.parameter_count(encoder) == 87_849_216
    unet_component = stand_ins.STAND_INS["riffusion"].components[1]
    unet = stand_ins.build_model(unet_component, tmp_path / "riffusion", device="meta")
    with torch.device("meta"):
        controlnet = controlnet_from_unet(unet, encoder)
    assert isinstance(controlnet, ControlNetModel)
    assert stand_ins.parameter_count(controlnet) == 361_279_120 + 512 * 768 + 768


@pytest.mark.parametrize("name", stand_ins.stand_in_names())
def test_small_files_have_the_hub_sizes(name, tmp_path):
    files = _write_small_files(name, tmp_path)
    for rel, size in HUB_SIZES[name].items():
        assert len(files[rel].encode()) == size, rel
    for rel, text in files.items():
        if rel.endswith(".json"):
            json.loads(text)


def test_the_configurations_are_the_checkpoints_not_the_class_defaults(tmp_path):
    """Where a class default differs from the checkpoint, the stand-in has the checkpoint's value."""
    from diffusers import UNet2DConditionModel
    from transformers import ClapFeatureExtractor, CLIPConfig, EncodecFeatureExtractor, MusicgenConfig

    for name in ("clip", "clap", "riffusion", "musicgen"):
        _write_small_files(name, tmp_path / name)
    clip = CLIPConfig.from_pretrained(tmp_path / "clip")
    # eos_token_id 2: CLIP pools the text at argmax(input_ids), which is <|endoftext|> only as the highest id.
    assert (clip.text_config.eos_token_id, clip.text_config.bos_token_id) == (2, 0)
    assert UNet2DConditionModel.load_config(tmp_path / "riffusion" / "unet")["cross_attention_dim"] == 768
    assert inspect.signature(UNet2DConditionModel.__init__).parameters["cross_attention_dim"].default == 1280
    clap = ClapFeatureExtractor.from_pretrained(tmp_path / "clap")
    assert (
        (clap.frequency_min, clap.truncation) == (50, "rand_trunc") != (ClapFeatureExtractor().frequency_min, "fusion")
    )
    musicgen = MusicgenConfig.from_pretrained(tmp_path / "musicgen")
    assert (musicgen.text_encoder.d_model, musicgen.text_encoder.num_layers) == (768, 12)  # t5-base, not t5-small
    assert EncodecFeatureExtractor.from_pretrained(tmp_path / "musicgen").sampling_rate == 32000
    assert hub.AUDIOSET_LABELS[0] == "Speech" and hub.AUDIOSET_LABELS[-1] == "Field recording"
    assert len(set(hub.AUDIOSET_LABELS)) == 527


def _check_bpe(vocabulary: stand_ins.BpeVocabulary) -> None:
    for left, right in vocabulary.merges:
        assert left in vocabulary.vocab and right in vocabulary.vocab and left + right in vocabulary.vocab


def test_the_clip_vocabulary_has_the_real_size_and_special_ids(tmp_path):
    from transformers import CLIPTokenizer

    vocabulary = stand_ins.synthetic_clip_vocabulary()
    assert len(vocabulary.vocab) == 49408 and len(vocabulary.merges) == 48894
    assert vocabulary.vocab["<|startoftext|>"] == 49406 and vocabulary.vocab["<|endoftext|>"] == 49407
    _check_bpe(vocabulary)
    _write_small_files("clip", tmp_path)
    tokenizer = CLIPTokenizer.from_pretrained(tmp_path)
    ids = tokenizer("The rain drums on a tin roof", padding="max_length", max_length=77)["input_ids"]
    assert len(tokenizer) == 49408 and tokenizer.model_max_length == 77
    assert ids[0] == 49406 and max(ids) == 49407 and ids.index(49407) < 20  # the end token is the argmax
    assert 49407 not in ids[1 : ids.index(49407)] and len(ids) == 77
    # Every file set the Hub has gives the same ids (tokenizer.json alone; vocab.json + merges.txt alone).
    for keep in (("tokenizer.json",), ("vocab.json", "merges.txt")):
        only = tmp_path / ("only-" + "-".join(keep))
        only.mkdir()
        for rel in (*keep, "tokenizer_config.json", "special_tokens_map.json"):
            (only / rel).write_bytes((tmp_path / rel).read_bytes())
        assert (
            CLIPTokenizer.from_pretrained(only)("The rain drums on a tin roof")["input_ids"]
            == ids[: ids.index(49407) + 1]
        )


def test_a_bpe_file_in_openai_format_gives_its_vocabulary(tmp_path):
    """OpenAI's file is a header line and the merges; CLIP's vocabulary is built from it as OpenAI builds it (with the
    real file, vocab.json and merges.txt equal the Hub's byte for byte: docs/paper-size.md)."""
    made_up = stand_ins.synthetic_clip_vocabulary()
    lines = ['"bpe_simple_vocab_16e6.txt#version: 0.2', *(f"{a} {b}" for a, b in made_up.merges), "x y", ""]
    path = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    vocabulary = stand_ins.clip_vocabulary_from_bpe_file(path)
    assert vocabulary.vocab == made_up.vocab and vocabulary.merges == made_up.merges
    assert "bpe_simple_vocab_16e6.txt.gz" in vocabulary.origin
    short = tmp_path / "short.txt.gz"
    short.write_bytes(gzip.compress("\n".join(lines[:1000]).encode()))
    with pytest.raises(ValueError, match="short.txt.gz"):
        stand_ins.clip_vocabulary_from_bpe_file(short)
    plain = tmp_path / "plain.txt"
    plain.write_text("not gzip")
    with pytest.raises(ValueError, match="plain.txt"):
        stand_ins.clip_vocabulary_from_bpe_file(plain)
    with pytest.raises(FileNotFoundError, match="missing.gz"):
        stand_ins.clip_vocabulary_from_bpe_file(tmp_path / "missing.gz")


def test_the_roberta_and_t5_vocabularies_have_the_real_sizes_and_special_ids(tmp_path):
    from transformers import AutoTokenizer, ClapProcessor, MusicgenProcessor

    roberta = stand_ins.synthetic_roberta_vocabulary()
    assert len(roberta.vocab) == 50265
    assert [roberta.vocab[t] for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")] == [0, 1, 2, 3, 50264]
    _check_bpe(roberta)
    _write_small_files("clap", tmp_path / "clap")
    processor = ClapProcessor.from_pretrained(tmp_path / "clap")
    ids = processor.tokenizer("rain on a tin roof")["input_ids"]
    assert len(processor.tokenizer) == 50265 and ids[0] == 0 and ids[-1] == 2 and 3 not in ids
    assert type(AutoTokenizer.from_pretrained(tmp_path / "clap")).__name__ == "RobertaTokenizer"

    _write_small_files("musicgen", tmp_path / "musicgen")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "musicgen")
    assert type(tokenizer).__name__ == "T5Tokenizer" and len(tokenizer) == 32100
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert tokenizer.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_99>"]) == [32099, 32000]
    ids = tokenizer("A calm Piano melody, 90 bpm!")["input_ids"]
    assert ids[-1] == 1 and 2 not in ids and len(ids) < 20  # every character known; words in few pieces
    assert type(MusicgenProcessor.from_pretrained(tmp_path / "musicgen").tokenizer).__name__ == "T5Tokenizer"


def test_the_command_names_the_stand_ins_and_refuses_bad_arguments(tmp_path, capsys):
    assert NAMES == {name: spec.hub_id for name, spec in stand_ins.STAND_INS.items()}
    assert {model_ids.CLIP, model_ids.AST, model_ids.CLAP, model_ids.RIFFUSION, model_ids.MUSICGEN} <= set(
        NAMES.values()
    )
    assert stand_ins.parse_names("musicgen, clip") == ("clip", "musicgen")
    for argv, message in [
        (["stand-ins"], "--out DIR"),
        (["stand-ins", "--out", str(tmp_path), "--only", "clip,gpt2"], "gpt2"),
        (["stand-ins", "--out", str(tmp_path), "--clip-bpe", str(tmp_path / "nope.gz")], "nope.gz"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the hub cache


def _tiny_riffusion_stand_in(folder: Path) -> dict:
    """A tiny pipeline in Riffusion's layout (the Hub's model_index.json: a StableDiffusionPipeline whose safety
    checker folder is absent, as in the stand-in), marked as a stand-in."""
    from sound_of_story.pipelines.tiny_random import tiny_components, tiny_sosgen

    tiny_sosgen(tiny_components("pndm")).save_pretrained(folder)
    (folder / "model_index.json").write_text(stand_ins.hub_json(hub.SD15_MODEL_INDEX))
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    manifest = {"stand_in_for": model_ids.RIFFUSION, "files": files}
    (folder / stand_ins.MANIFEST_NAME).write_text(json.dumps(manifest))
    return manifest


def test_a_stand_in_in_the_hub_cache_loads_by_hub_id_offline(tmp_path):
    """diffusers' whole-pipeline lookup (model_index.json, the cached file listing, every component folder) and
    huggingface_hub's cache tools read the layout; the weights are the stand-in's."""
    from huggingface_hub import constants as hub_constants
    from huggingface_hub import get_cached_repo_tree, scan_cache_dir
    from safetensors.torch import load_file

    from sound_of_story.pipelines import SoSgenPipeline

    assert hub_constants.HF_HUB_OFFLINE
    manifest = _tiny_riffusion_stand_in(tmp_path / "folder")
    cache = tmp_path / "cache"
    snapshot = stand_ins.install_into_hub_cache(tmp_path / "folder", cache)
    assert stand_ins.installed_snapshot(cache, model_ids.RIFFUSION) == snapshot
    assert (snapshot / "unet" / "config.json").is_symlink()
    blob = (snapshot / "unet" / "diffusion_pytorch_model.safetensors").resolve()
    assert blob.parent.name == "blobs" and blob.stat().st_nlink == 2  # a hard link to the folder's file, no copy
    listed = {f.path for f in get_cached_repo_tree(model_ids.RIFFUSION, cache_dir=cache)}
    assert listed == {*manifest["files"], stand_ins.MANIFEST_NAME}
    (repo,) = scan_cache_dir(cache).repos
    assert repo.repo_id == model_ids.RIFFUSION and repo.nb_files == len(listed)

    pipe = SoSgenPipeline.from_pretrained(model_ids.RIFFUSION, cache_dir=cache)
    written = load_file(tmp_path / "folder" / "unet" / "diffusion_pytorch_model.safetensors")
    loaded = pipe.unet.state_dict()
    assert written.keys() == loaded.keys() and all(torch.equal(written[k], loaded[k]) for k in written)

    # Installing again (a new stand-in) replaces the old snapshot and the blobs only it used.
    first_blobs = set(os.listdir(snapshot.parents[1] / "blobs"))
    (tmp_path / "folder" / "notes.txt").write_text("another stand-in\n")
    manifest["files"]["notes.txt"] = (tmp_path / "folder" / "notes.txt").stat().st_size
    (tmp_path / "folder" / stand_ins.MANIFEST_NAME).write_text(json.dumps(manifest))
    second = stand_ins.install_into_hub_cache(tmp_path / "folder", cache)
    assert second != snapshot and not snapshot.exists() and os.listdir(second.parent) == [second.name]
    blobs = set(os.listdir(second.parents[1] / "blobs"))
    assert blobs == {Path(os.path.realpath(p)).name for p in second.rglob("*") if p.is_file()}
    assert len(blobs - first_blobs) == 2 and len(first_blobs - blobs) == 1  # notes.txt and the manifest changed


def test_the_cache_of_real_downloads_and_other_folders_are_never_overwritten(tmp_path):
    _tiny_riffusion_stand_in(tmp_path / "folder")
    cache = tmp_path / "cache"
    real = cache / "models--riffusion--riffusion-model-v1"
    (real / "snapshots" / "4a629d2f" / "unet").mkdir(parents=True)
    (real / "snapshots" / "4a629d2f" / "model_index.json").write_text("{}")
    (real / "refs").mkdir()
    (real / "refs" / "main").write_text("4a629d2f")
    with pytest.raises(ValueError, match="holds a download of riffusion/riffusion-model-v1"):
        stand_ins.install_into_hub_cache(tmp_path / "folder", cache)
    assert (real / "refs" / "main").read_text() == "4a629d2f" and not (real / "blobs").exists()

    someone_elses = stand_ins.stand_in_folder(tmp_path / "models", "controlnet")
    someone_elses.mkdir(parents=True)
    (someone_elses / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="is not a stand-in"):
        stand_ins.write_stand_ins(["controlnet"], out=tmp_path / "models")
    assert (someone_elses / "config.json").read_text() == "{}"


# --------------------------------------------------------------------------- full size, for real

FULL_SIZE_CHECK = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from safetensors import safe_open
    from sound_of_story.core import model_ids
    from sound_of_story.modeling import SoSRetrievalModel, SoSRetrievalProcessor

    snapshot = sys.argv[1]
    model = SoSRetrievalModel.from_encoders().eval()  # the package's default ids, unchanged
    processor = SoSRetrievalProcessor.from_encoders()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(40)]
    audio = rng.standard_normal(16000 * 12).astype(np.float32)
    inputs = processor(text="A storm rolls over the harbour.", frames=frames, audio=audio, sampling_rate=16000)
    with safe_open(snapshot + "/model.safetensors", "pt") as f:
        patch = f.get_tensor("vision_model.embeddings.patch_embedding.weight")
    with torch.inference_mode():
        vision_tokens = model.clip.vision_model.embeddings(inputs["pixel_values"][0])
        audio_tokens = model.audio_model.embeddings(inputs["input_values"])
        text = model.clip.text_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    end = int(inputs["input_ids"][0].argmax())
    print(json.dumps({
        "shapes": {k: list(v.shape) for k, v in inputs.items()},
        "vision_tokens": list(vision_tokens.shape), "audio_tokens": list(audio_tokens.shape),
        "end_token": int(inputs["input_ids"][0, end]),
        "pooled_at_end": torch.equal(text.pooler_output[0], text.last_hidden_state[0, end]),
        "weights_from_stand_in": torch.equal(model.clip.vision_model.embeddings.patch_embedding.weight, patch),
        "parameters": sum(p.numel() for p in model.clip.parameters()),
        "audio_parameters": sum(p.numel() for p in model.audio_model.parameters()),
    }))
    """
)


def test_full_size_clip_and_ast_load_by_hub_id_through_the_cache(tmp_path):
    """CLIP ViT-B/32 and AST at full size (237M parameters, 0.95 GB), written once into plain folders and a hub
    cache, then loaded offline by the package's default Hub ids: 40 frames of 50 tokens, 1,214 AST tokens, 77 text
    tokens."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    results = stand_ins.write_stand_ins(["clip", "ast"], out=out, hub_cache=cache)
    clip, ast = results
    assert clip.folder == out / "openai" / "clip-vit-base-patch32" and not clip.skipped
    assert sorted(clip.manifest["files"]) == sorted([
        "README.md", "config.json", "merges.txt", "model.safetensors", "preprocessor_config.json",
        "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.json",
    ])  # fmt: skip
    assert sorted(ast.manifest["files"]) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    assert clip.manifest["parameters"] == {"CLIPModel": PUBLISHED["clip", "CLIPModel"]}
    # float32, as the Hub stores it: the weights file is 4 bytes a parameter plus its header.
    assert 0 < clip.manifest["files"]["model.safetensors"] - 4 * 151_277_313 < 100_000
    assert "made-up" in (clip.folder / "README.md").read_text()

    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "home")}
    run = subprocess.run(
        [sys.executable, "-c", FULL_SIZE_CHECK, str(clip.snapshot)], env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["shapes"]["pixel_values"] == [1, 40, 3, 224, 224] and report["vision_tokens"] == [40, 50, 768]
    assert report["shapes"]["input_values"] == [1, 1024, 128] and report["audio_tokens"] == [1, 1214, 768]
    assert report["shapes"]["input_ids"] == [1, 77] and report["end_token"] == 49407 and report["pooled_at_end"]
    assert report["weights_from_stand_in"]
    assert report["parameters"] == 151_277_313 and report["audio_parameters"] == 86_187_264  # ASTModel: no classifier

    # A second run keeps what is complete.
    mtime = (clip.folder / "model.safetensors").stat().st_mtime_ns
    again = stand_ins.write_stand_ins(["clip"], out=out, hub_cache=cache)
    assert again[0].skipped and again[0].snapshot == clip.snapshot
    assert (clip.folder / "model.safetensors").stat().st_mtime_ns == mtime
