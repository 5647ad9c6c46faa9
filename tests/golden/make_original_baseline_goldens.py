"""Make tests/golden/wav2clip and tests/golden/msclap by running the ORIGINAL packages on random-weight checkpoints
in their own formats. Not a test: it needs `wav2clip` 0.1.0 and `msclap` 1.3.4, which this project does not install
(msclap pins numpy<2 and transformers<5). How it was run is in tests/golden/README.md:

    python -m venv /tmp/origvenv                               # throwaway, beside the project's venv
    echo "$PROJECT_VENV/lib/python3.11/site-packages" > /tmp/origvenv/lib/python3.11/site-packages/project.pth
    /tmp/origvenv/bin/pip install --no-deps wav2clip==0.1.0 msclap==1.3.4 torchlibrosa==0.1.0 librosa==0.11.0 \
        audioread decorator pooch soxr lazy_loader joblib cloudpickle scikit-learn threadpoolctl
    /tmp/origvenv/bin/python tests/golden/make_original_baseline_goldens.py

The only patches are the originals' downloads: `torch.hub.load_state_dict_from_url` (wav2clip.get_model) returns
the random checkpoint; msclap's `AutoModel` / `AutoTokenizer` return a one-layer BERT and a small vocabulary
built in code (msclap would download bert-base-uncased), and `encode_plus`, which transformers 5 removed, is
the tokenizer's `__call__` with the same arguments (equal for one text).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
from golden_making import GOLDEN, environment, import_checkout, relative_error, write_fingerprint

# The package by a link to this checkout, for the small BERT vocabulary and config.
import_checkout()

from original_baselines import (  # noqa: E402
    MSCLAP_RATE,
    MSCLAP_SEED,
    MSCLAP_TEXTS,
    WAV2CLIP_SEED,
    msclap_inputs,
    random_original_state_dict,
    state_dict_spec,
    wav2clip_inputs,
)

from sound_of_story.modeling.tiny_random import tiny_bert_config_dict, tiny_bert_tokenizer  # noqa: E402

torch.set_num_threads(2)


NAMES = ("torch", "torchaudio", "numpy", "transformers", "librosa", "torchlibrosa", "wav2clip", "msclap", "scipy")


def write(folder: Path, checkpoint: dict, arrays: dict, meta: dict) -> None:
    write_fingerprint(folder, checkpoint)
    np.savez_compressed(folder / "case.npz", **arrays)
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def make_wav2clip(work: Path) -> None:
    import wav2clip
    from wav2clip.model.encoder import MLPLayers
    from wav2clip.model.resnet import BasicBlock, ResNet

    # The layout ResNetExtractor loads: ResNet-18 under audio_encoder.*, the MLP under audio_transform.*.
    encoder, transform = (
        ResNet(BasicBlock, [2, 2, 2, 2], pool="avgpool"),
        MLPLayers(units=[512, 512, 512], dropout=0.1),
    )
    layout = {f"audio_encoder.{k}": v for k, v in encoder.state_dict().items()}
    layout.update({f"audio_transform.{k}": v for k, v in transform.state_dict().items()})
    window = "audio_encoder.spectrogram.window"
    checkpoint = random_original_state_dict(state_dict_spec(layout), WAV2CLIP_SEED, fixed={window: layout[window]})
    path = work / "Wav2CLIP_random.pt"
    torch.save(checkpoint, path)

    def local_checkpoint(url, map_location=None, progress=True, **kwargs):  # the one patch: no download
        return torch.load(path, map_location=map_location)

    torch.hub.load_state_dict_from_url = local_checkpoint
    model = wav2clip.get_model(device="cpu")
    clips = wav2clip_inputs()
    start = time.perf_counter()
    batch = wav2clip.embed_audio(clips, model)
    seconds = time.perf_counter() - start
    single = np.concatenate([wav2clip.embed_audio(clip, model) for clip in clips])
    model.double()
    batch64 = wav2clip.embed_audio(clips.astype(np.float64), model)
    single64 = np.concatenate([wav2clip.embed_audio(clip.astype(np.float64), model) for clip in clips])
    arrays = {
        "audio": clips,
        "embeddings_batch": batch,
        "embeddings_single": single,
        "embeddings_batch_float64": batch64,
        "embeddings_single_float64": single64,
    }
    meta = {
        "made_by": "tests/golden/make_original_baseline_goldens.py",
        "environment": environment(*NAMES),
        "seed": WAV2CLIP_SEED,
        "checkpoint_keys": len(checkpoint),
        "checkpoint_parameters": int(sum(v.numel() for v in checkpoint.values())),
        "calls": {
            "model": "wav2clip.get_model(device='cpu') with torch.hub.load_state_dict_from_url returning the file",
            "embeddings_batch": "wav2clip.embed_audio(audio, model): one batch of three (batch-wide standardisation)",
            "embeddings_single": "wav2clip.embed_audio(audio[i], model) for each clip alone",
            "*_float64": "the same after model.double(), on float64 audio",
        },
        "float32_vs_float64_relative_error": {
            "batch": relative_error(batch, batch64),
            "single": relative_error(single, single64),
        },
        "batch_vs_single_relative_difference": relative_error(batch, single.astype(np.float64)),
        "seconds_embed_batch": round(seconds, 3),
    }
    write(GOLDEN / "wav2clip", checkpoint, arrays, meta)
    print(
        "wav2clip", json.dumps(meta["float32_vs_float64_relative_error"]), meta["batch_vs_single_relative_difference"]
    )


def make_msclap(work: Path) -> None:
    import msclap
    import msclap.CLAPWrapper as wrapper_module
    import msclap.models.clap as clap_module
    from transformers import BertConfig, BertModel

    tokenizer = tiny_bert_tokenizer()
    text_config = {k: v for k, v in tiny_bert_config_dict(tokenizer, hidden_size=768).items() if k != "model_type"}

    class TinyTextModel:  # msclap's `AutoModel.from_pretrained(text_model)`: bert-base-uncased's class, one layer
        @staticmethod
        def from_pretrained(name, *args, **kwargs):
            assert name == "bert-base-uncased", name
            return BertModel(BertConfig(**text_config))

    class TinyTokenizer:
        @staticmethod
        def from_pretrained(name, *args, **kwargs):
            assert name == "bert-base-uncased", name
            return tokenizer

    clap_module.AutoModel = TinyTextModel
    wrapper_module.AutoTokenizer = TinyTokenizer
    type(tokenizer).encode_plus = lambda self, text, **kwargs: self(text, **kwargs)

    # The layout: msclap's CLAP built from config_2022.yml, as CLAPWrapper.load_clap builds it.
    config_text = (Path(wrapper_module.__file__).parent / "configs" / "config_2022.yml").read_text()
    args = wrapper_module.CLAPWrapper.read_config_as_args(None, config_text, is_config_str=True)
    layout = clap_module.CLAP(
        audioenc_name=args.audioenc_name, sample_rate=args.sampling_rate, window_size=args.window_size,
        hop_size=args.hop_size, mel_bins=args.mel_bins, fmin=args.fmin, fmax=args.fmax, classes_num=args.num_classes,
        out_emb=args.out_emb, text_model=args.text_model, transformer_embed_dim=args.transformer_embed_dim,
        d_proj=args.d_proj,
    ).state_dict()  # fmt: skip
    front_end = [k for k in layout if "spectrogram_extractor" in k or "logmel_extractor" in k]
    checkpoint = random_original_state_dict(
        state_dict_spec(layout), MSCLAP_SEED, fixed={k: layout[k] for k in front_end}
    )
    path = work / "CLAP_weights_2022_random.pth"
    torch.save({"model": checkpoint}, path)
    del layout

    wrapper = msclap.CLAP(model_fp=str(path), version="2022", use_cuda=False)
    wrapper.clap.load_state_dict(checkpoint, strict=True)  # the file holds every key of the model, no other
    clips, short_clip = msclap_inputs()
    wav = work / "short.wav"
    soundfile.write(wav, short_clip, MSCLAP_RATE, subtype="FLOAT")
    start = time.perf_counter()
    audio = wrapper._get_audio_embeddings(torch.from_numpy(clips)[:, None, :]).numpy()
    seconds = time.perf_counter() - start
    short = wrapper.get_audio_embeddings([str(wav)], resample=True).numpy()
    tokens = wrapper.preprocess_text(MSCLAP_TEXTS)
    text = wrapper.get_text_embeddings(MSCLAP_TEXTS).numpy()
    similarity = wrapper.compute_similarity(torch.from_numpy(audio), torch.from_numpy(text)).detach().numpy()
    wrapper.clap.double()
    with torch.no_grad():
        audio64 = wrapper._get_audio_embeddings(torch.from_numpy(clips).double()[:, None, :]).numpy()
        short64 = wrapper.clap.audio_encoder(
            torch.from_numpy(np.tile(short_clip, 3)[: 5 * MSCLAP_RATE]).double()[None]
        )[0].numpy()
        text64 = wrapper._get_text_embeddings(tokens).numpy()
    arrays = {
        "audio": clips,
        "short_clip": short_clip,
        "audio_embeddings": audio,
        "short_clip_embedding": short,
        "input_ids": tokens["input_ids"].numpy(),
        "attention_mask": tokens["attention_mask"].numpy(),
        "token_type_ids": tokens["token_type_ids"].numpy(),
        "text_embeddings": text,
        "similarity": similarity,
        "logit_scale": checkpoint["logit_scale"].numpy(),
        "audio_embeddings_float64": audio64,
        "short_clip_embedding_float64": short64,
        "text_embeddings_float64": text64,
    }
    meta = {
        "made_by": "tests/golden/make_original_baseline_goldens.py",
        "environment": environment(*NAMES),
        "seed": MSCLAP_SEED,
        "texts": MSCLAP_TEXTS,
        "text_config": text_config,
        "front_end_keys_from_torchlibrosa": front_end,
        "checkpoint_keys": len(checkpoint),
        "checkpoint_parameters": int(sum(v.numel() for v in checkpoint.values())),
        "calls": {
            "model": "msclap.CLAP(model_fp=file, version='2022', use_cuda=False)",
            "audio_embeddings": "wrapper._get_audio_embeddings(audio[:, None, :]) (1 s clips, no cropping)",
            "short_clip_embedding": "wrapper.get_audio_embeddings([short.wav], resample=True): 2 s at 44.1 kHz, "
            "repeated to 5 s by load_audio_into_tensor",
            "input_ids, attention_mask, token_type_ids": "wrapper.preprocess_text(texts)",
            "text_embeddings": "wrapper.get_text_embeddings(texts)",
            "similarity": "wrapper.compute_similarity(audio_embeddings, text_embeddings)",
            "*_float64": "wrapper.clap.double(), then the same inputs in float64",
        },
        "float32_vs_float64_relative_error": {
            "audio": relative_error(audio, audio64),
            "short_clip": relative_error(short, short64[None]),
            "text": relative_error(text, text64),
        },
        "seconds_audio_embeddings": round(seconds, 3),
    }
    write(GOLDEN / "msclap", checkpoint, arrays, meta)
    print("msclap", json.dumps(meta["float32_vs_float64_relative_error"]))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        make_wav2clip(Path(folder))
        make_msclap(Path(folder))
