"""Full-size stand-ins of the Hub checkpoints the package starts from, written offline.

A stand-in has the Hub checkpoint's exact configuration, file names and folder layout (configurations, processor,
feature-extractor, scheduler and tokenizer files) and random weights, saved as safetensors in float32 (as the Hub
repositories store them). It loads with the same ``from_pretrained`` call as the Hub id, so every path of the package
can run at full size (the real checkpoints' widths, 40 frames, 1,214 AST tokens, 77 text tokens, 15 s windows) on a machine
that cannot reach the Hub. Its outputs mean nothing: it is for memory, speed and shape checks, never for results.

Two ways to use them (``sound-of-story stand-ins``):

- ``--out DIR`` writes plain folders, ``DIR/<hub id>`` (``DIR/openai/clip-vit-base-patch32``, ...), which every
  command takes in place of the Hub id;
- ``--hub-cache DIR`` installs them into a Hugging Face hub cache (``models--org--name/{blobs,snapshots,refs,trees}``)
  under a commit hash of their own, so that with ``HF_HUB_CACHE=DIR HF_HUB_OFFLINE=1`` every
  ``from_pretrained("<hub id>")`` of transformers, diffusers and huggingface_hub, the package's default ids
  included, resolves to the stand-in without any change of code or command line.

Vocabularies: CLIP's (also Stable Diffusion's) is the real one when ``clip_bpe`` names the BPE file that OpenAI's CLIP,
open-clip-torch and laion-clap ship (``bpe_simple_vocab_16e6.txt.gz``; vocab.json and merges.txt are then byte for
byte the Hub's); RoBERTa's (CLAP, 50,265 tokens) and T5's (MusicGen, 32,100) cannot be had offline, and CLIP's without
that file neither: those are built in code with the ``tokenizers`` library, of the real size, with the real special
tokens at the real ids, over made-up subwords. Each stand-in's README.md says which it has.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import itertools
import json
import os
import shutil
import string
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sound_of_story.core import model_ids
from sound_of_story.core.atomic_files import move_file_atomic, write_text_atomic
from sound_of_story.core.hashing import file_sha256

from . import stand_in_files as hub

# An SD 1.5 ControlNet to stand in for. The package never loads one (it builds its ControlNet from the Riffusion
# UNet with controlnet_from_unet, which has this architecture plus a frame projection); the stand-in gives the size
# of a published SD 1.5 ControlNet checkpoint.
CONTROLNET_SD15 = model_ids.CONTROLNET_SD15

# The file that marks a folder (or a cache snapshot) as a complete stand-in: written last, it lists every file.
MANIFEST_NAME = "stand_in.json"

# Weight-like files are stored with Git LFS on the Hub: their cache blob is named by their SHA-256.
_LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".model")


@dataclass(frozen=True)
class WeightsComponent:
    """One model of a stand-in, saved as ``weights_name`` in ``subfolder`` ("" = the repository root)."""

    subfolder: str
    library: str  # "transformers" or "diffusers"
    class_name: str
    weights_name: str


@dataclass(frozen=True)
class StandIn:
    """A Hub checkpoint the package uses, and what its stand-in holds and leaves out."""

    name: str
    hub_id: str
    description: str
    components: tuple[WeightsComponent, ...]
    left_out: tuple[str, ...] = ()  # Hub files the stand-in does not write, each with the reason
    notes: tuple[str, ...] = field(default_factory=tuple)


def _transformers(class_name: str, weights_name: str = "model.safetensors", subfolder: str = "") -> WeightsComponent:
    return WeightsComponent(subfolder, "transformers", class_name, weights_name)


def _diffusers(class_name: str, subfolder: str = "") -> WeightsComponent:
    return WeightsComponent(subfolder, "diffusers", class_name, "diffusion_pytorch_model.safetensors")


STAND_INS: dict[str, StandIn] = {
    "clip": StandIn(
        "clip",
        model_ids.CLIP,
        "CLIP ViT-B/32: the retrieval model's frame and text encoders, the ControlNet's frame tokens",
        (_transformers("CLIPModel"),),
        left_out=("pytorch_model.bin, tf_model.h5, flax_model.msgpack (the same weights in other formats)",),
    ),
    "ast": StandIn(
        "ast",
        model_ids.AST,
        "AST fine-tuned on AudioSet: the retrieval model's audio encoder",
        (_transformers("ASTForAudioClassification"),),
        left_out=("pytorch_model.bin (the same weights in another format)",),
    ),
    "clap": StandIn(
        "clap",
        model_ids.CLAP,
        "LAION CLAP (HTSAT, unfused): the Table 2 baseline and the generation metrics' embedder",
        (_transformers("ClapModel"),),
        notes=(
            "The Hub repository has pytorch_model.bin only; the stand-in has model.safetensors, which transformers "
            "prefers and loads without unpickling.",
            "config.json is the installed transformers' full dump of the Hub configuration (the Hub file is a 4.27 "
            "dump of the same values).",
        ),
    ),
    "riffusion": StandIn(
        "riffusion",
        model_ids.RIFFUSION,
        "Riffusion v1 (Stable Diffusion 1.5 architecture): SoSgen's starting point",
        (
            _transformers("CLIPTextModel", subfolder="text_encoder"),
            _diffusers("UNet2DConditionModel", subfolder="unet"),
            _diffusers("AutoencoderKL", subfolder="vae"),
        ),
        left_out=(
            "safety_checker/ (1.2 GB; SoSgen pipelines do not load it; model_index.json still names it, as on the Hub)",
            "unet_traced/, seed_images/, riffusion-model-v1.ckpt (Riffusion's own app and the original checkpoint)",
        ),
        notes=(
            "The Hub repository's main branch has .bin weights only; the stand-in has the .safetensors names of "
            "Stable Diffusion 1.5's repository, which diffusers prefers.",
        ),
    ),
    "controlnet": StandIn(
        "controlnet",
        CONTROLNET_SD15,
        "an SD 1.5 ControlNet (the architecture SoSgen-ControlNet starts from the Riffusion UNet)",
        (_diffusers("ControlNetModel"),),
        left_out=("diffusion_pytorch_model.bin (the same weights in another format), images/",),
    ),
    "musicgen": StandIn(
        "musicgen",
        model_ids.MUSICGEN,
        "MusicGen small: the Table 3 baseline",
        (_transformers("MusicgenForConditionalGeneration"),),
        left_out=(
            "pytorch_model.bin (the same weights in another format); state_dict.bin and compression_state_dict.bin "
            "(audiocraft's originals); spiece.model (sentencepiece is not needed: tokenizer.json is there)",
        ),
        notes=(
            "config.json is the installed transformers' full dump of the values transformers' conversion script "
            "gives (text encoder t5-base, audio encoder encodec_32khz, decoder 24 x 1024); the Hub file is a 4.31 "
            "dump of them.",
            "The EnCodec codebooks, which the class initialises to zeros, are random, so that different codes decode "
            "to different sounds.",
        ),
    ),
}


def stand_in_names() -> tuple[str, ...]:
    return tuple(STAND_INS)


def parse_names(text: str | None) -> tuple[str, ...]:
    """``"clip,ast"`` -> ``("clip", "ast")`` in the order of :data:`STAND_INS`; ``None`` or "all" -> every one."""
    if text is None or text.strip() == "all":
        return stand_in_names()
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in STAND_INS]
    if unknown or not names:
        raise ValueError(f"--only: unknown stand-in(s) {unknown or text!r}; choose from {', '.join(STAND_INS)}")
    return tuple(name for name in STAND_INS if name in names)


# --------------------------------------------------------------------------- JSON as the Hub files write it


def hub_json(data: dict[str, Any], *, final_newline: bool = True, sort_keys: bool = False) -> str:
    """Two-space indented JSON, the form of the Hub's config files (``json.dumps(indent=2)`` plus a newline)."""
    return json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=False) + ("\n" if final_newline else "")


def one_line_json(data: dict[str, Any]) -> str:
    """The one-line form of CLIP ViT-B/32's tokenizer_config.json and special_tokens_map.json (no final newline)."""
    return json.dumps(data)


def clip_config_text() -> str:
    # The Hub file has one stray space, in vision_config's projection_dim; keeping it keeps the file's exact bytes.
    text = hub_json(hub.CLIP_CONFIG)
    head, sep, tail = text.rpartition('"projection_dim": 512,')
    return head + '"projection_dim" : 512,' + tail if sep else text


def ast_config() -> dict[str, Any]:
    labels = hub.AUDIOSET_LABELS
    return {
        **hub.AST_CONFIG_FIELDS,
        "id2label": {str(i): label for i, label in enumerate(labels)},
        "label2id": {label: i for i, label in enumerate(labels)},
    }


def clap_config_text() -> str:
    from transformers import ClapConfig

    config = ClapConfig.from_dict(hub.CLAP_CONFIG_NON_DEFAULTS)
    config.architectures = ["ClapModel"]
    return config.to_json_string(use_diff=False)


def musicgen_config_text() -> str:
    """MusicGen small's configuration as transformers' convert_musicgen_transformers.py builds it: t5-base as text
    encoder, encodec_32khz as audio codec, a 24-layer 1024-wide decoder over 4 codebooks of 2048 codes."""
    from transformers import EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, T5Config

    text_encoder = T5Config(
        vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12,
        relative_attention_num_buckets=32, dropout_rate=0.1, layer_norm_epsilon=1e-6, feed_forward_proj="relu",
        n_positions=512, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip
    text_encoder._name_or_path = "t5-base"
    audio_encoder = EncodecConfig(
        sampling_rate=32000, upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[2.2], num_filters=64,
        codebook_size=2048, use_causal_conv=False, normalize=False, use_conv_shortcut=False,
    )  # fmt: skip
    audio_encoder._name_or_path = "facebook/encodec_32khz"
    decoder = MusicgenDecoderConfig(hidden_size=1024, ffn_dim=4096, num_hidden_layers=24, tie_word_embeddings=False)
    config = MusicgenConfig(
        text_encoder=text_encoder.to_dict(), audio_encoder=audio_encoder.to_dict(), decoder=decoder.to_dict()
    )
    config.architectures = ["MusicgenForConditionalGeneration"]
    return config.to_json_string(use_diff=False)


# --------------------------------------------------------------------------- vocabularies


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, in its order (the first 256 ids of CLIP's vocabulary)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars, strict=True)}


@dataclass(frozen=True)
class BpeVocabulary:
    vocab: dict[str, int]
    merges: list[tuple[str, str]]
    origin: str  # said in the README

    def merges_text(self) -> str:
        return "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in self.merges)


CLIP_VOCAB_SIZE = 49408
CLIP_SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def clip_vocabulary_from_bpe_file(path: str | os.PathLike) -> BpeVocabulary:
    """CLIP's vocabulary from OpenAI's ``bpe_simple_vocab_16e6.txt.gz``, built as OpenAI's SimpleTokenizer builds it:
    256 byte characters, the same with ``</w>``, the first 48,894 merges, then ``<|startoftext|>``, ``<|endoftext|>``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--clip-bpe: {path} does not exist")
    try:
        lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise ValueError(f"--clip-bpe: {path} is not a gzipped BPE merges file ({error})") from error
    count = CLIP_VOCAB_SIZE - 2 * 256 - len(CLIP_SPECIAL_TOKENS)
    merges = [tuple(line.split()) for line in lines[1 : 1 + count]]
    if len(merges) != count or any(len(m) != 2 for m in merges):
        raise ValueError(f"--clip-bpe: {path} does not hold CLIP's {count} merges after its header line")
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + list(CLIP_SPECIAL_TOKENS)
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise ValueError(f"--clip-bpe: {path} gives {len(vocab)} distinct tokens, not CLIP's {CLIP_VOCAB_SIZE}")
    return BpeVocabulary(vocab, merges, f"the real CLIP vocabulary, built from {path.name}")  # type: ignore[arg-type]


def _extension_merges(starts: Iterable[str], letters: str, count: int, word_end: str = "") -> list[tuple[str, str]]:
    """``count`` BPE merges that grow words letter by letter, breadth first: every start, then every two-letter
    piece, ... each extended by each letter (and, where the BPE marks the end of a word, by each word-final letter).
    The pieces are made up; what is real is their number, so the vocabulary has the real size."""
    merges: list[tuple[str, str]] = []
    frontier = list(starts)
    while True:
        grown = []
        for piece in frontier:
            for letter in letters:
                merges.append((piece, letter))
                grown.append(piece + letter)
                if word_end:
                    merges.append((piece, letter + word_end))
                if len(merges) >= count:
                    return merges[:count]
        frontier = grown


def synthetic_clip_vocabulary() -> BpeVocabulary:
    """A CLIP-style BPE vocabulary of CLIP's size with the special tokens at the real ids (49406, 49407)."""
    chars = list(bytes_to_unicode().values())
    count = CLIP_VOCAB_SIZE - 2 * 256 - len(CLIP_SPECIAL_TOKENS)
    merges = _extension_merges(string.ascii_lowercase, string.ascii_lowercase, count, word_end="</w>")
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + list(CLIP_SPECIAL_TOKENS)
    return BpeVocabulary(
        {token: i for i, token in enumerate(tokens)},
        merges,
        "a made-up BPE vocabulary of CLIP's size (49,408 tokens; <|startoftext|> 49406, <|endoftext|> 49407), "
        "built in code with the tokenizers library: the real one needs --clip-bpe",
    )


ROBERTA_VOCAB_SIZE = 50265


def synthetic_roberta_vocabulary() -> BpeVocabulary:
    """A byte-level BPE vocabulary of RoBERTa-base's size: <s> 0, <pad> 1, </s> 2, <unk> 3, <mask> 50264."""
    head = ["<s>", "<pad>", "</s>", "<unk>"]
    chars = list(bytes_to_unicode().values())
    count = ROBERTA_VOCAB_SIZE - len(head) - len(chars) - 1
    space = bytes_to_unicode()[ord(" ")]  # "Ġ": the byte-level form of the space that starts a word
    merges = _extension_merges([space, *string.ascii_lowercase], string.ascii_lowercase, count)
    tokens = head + chars + ["".join(m) for m in merges] + ["<mask>"]
    return BpeVocabulary(
        {token: i for i, token in enumerate(tokens)},
        merges,
        "a made-up byte-level BPE vocabulary of RoBERTa-base's size (50,265 tokens; <s> 0, <pad> 1, </s> 2, <unk> 3, "
        "<mask> 50264), built in code with the tokenizers library: RoBERTa's vocabulary is not available offline",
    )


T5_PIECES = 32000
T5_EXTRA_IDS = 100


def synthetic_t5_pieces() -> list[tuple[str, float]]:
    """A Unigram piece list of T5's size (32,000 pieces: <pad> 0, </s> 1, <unk> 2, then single characters and
    made-up word pieces); :class:`T5Tokenizer` adds the 100 ``<extra_id_N>`` tokens above them (32,100 in all)."""
    chars = string.ascii_letters + string.digits + string.punctuation
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    pieces += [(c, -3.0) for c in chars] + [("▁" + c, -3.0) for c in chars]
    # Longer made-up pieces score higher per piece, so a word splits into few of them (as a trained model's would).
    for length in itertools.count(2):
        for combo in itertools.product(string.ascii_lowercase, repeat=length):
            for piece in ("▁" + "".join(combo), "".join(combo)):
                pieces.append((piece, -2.0))
                if len(pieces) == T5_PIECES:
                    return pieces
    raise AssertionError("unreachable")


T5_ORIGIN = (
    "a made-up Unigram vocabulary of T5's size (32,000 pieces + 100 <extra_id_N> = 32,100 tokens; <pad> 0, </s> 1, "
    "<unk> 2, <extra_id_0> 32099), built in code with the tokenizers library: T5's sentencepiece model is not "
    "available offline"
)


# --------------------------------------------------------------------------- the small files of each stand-in


def _clip_tokenizer_files(vocabulary: BpeVocabulary, *, sd15: bool) -> dict[str, str]:
    from transformers import CLIPTokenizer

    if sd15:  # Stable Diffusion 1.5's tokenizer/ folder: pretty, key-sorted vocab.json and no tokenizer.json
        return {
            "vocab.json": json.dumps(vocabulary.vocab, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
            "merges.txt": vocabulary.merges_text(),
            "special_tokens_map.json": hub_json(hub.SD15_SPECIAL_TOKENS_MAP),
            "tokenizer_config.json": hub_json(hub.SD15_TOKENIZER_CONFIG),
        }
    tokenizer = CLIPTokenizer(vocab=vocabulary.vocab, merges=vocabulary.merges)
    return {
        "vocab.json": json.dumps(vocabulary.vocab, ensure_ascii=False, separators=(",", ":")),
        "merges.txt": vocabulary.merges_text(),
        "tokenizer.json": tokenizer.backend_tokenizer.to_str(),
        "special_tokens_map.json": one_line_json(hub.CLIP_SPECIAL_TOKENS_MAP),
        "tokenizer_config.json": one_line_json(hub.CLIP_TOKENIZER_CONFIG),
    }


def _roberta_tokenizer_files() -> tuple[dict[str, str], str]:
    from transformers import RobertaTokenizer

    vocabulary = synthetic_roberta_vocabulary()
    tokenizer = RobertaTokenizer(vocab=vocabulary.vocab, merges=vocabulary.merges)
    files = {
        "vocab.json": json.dumps(vocabulary.vocab, ensure_ascii=False),
        "merges.txt": vocabulary.merges_text(),
        "tokenizer.json": tokenizer.backend_tokenizer.to_str(),
        "special_tokens_map.json": hub_json(hub.CLAP_SPECIAL_TOKENS_MAP),
        "tokenizer_config.json": hub_json(hub.CLAP_TOKENIZER_CONFIG),
    }
    return files, vocabulary.origin


def _t5_tokenizer_files() -> tuple[dict[str, str], str]:
    from transformers import T5Tokenizer

    extra = [f"<extra_id_{i}>" for i in range(T5_EXTRA_IDS)]
    pieces = synthetic_t5_pieces() + [(token, 0.0) for token in reversed(extra)]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=T5_EXTRA_IDS)
    # transformers 4.31's T5 tokenizer files (the Hub repository's era): the 100 sentinel tokens as additional
    # special tokens, 512 positions (t5-base).
    special = {"additional_special_tokens": extra, "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    config = {
        **special,
        "clean_up_tokenization_spaces": True,
        "extra_ids": T5_EXTRA_IDS,
        "model_max_length": 512,
        "sp_model_kwargs": {},
        "tokenizer_class": "T5Tokenizer",
    }
    files = {
        "tokenizer.json": tokenizer.backend_tokenizer.to_str(),
        "special_tokens_map.json": hub_json(special, sort_keys=True),
        "tokenizer_config.json": hub_json(config, sort_keys=True),
    }
    return files, T5_ORIGIN


def hub_files(name: str, *, clip_bpe: str | os.PathLike | None = None) -> tuple[dict[str, str], str]:
    """The stand-in's small files (relative path -> text) and where its vocabulary comes from."""
    if name in ("clip", "riffusion"):
        vocabulary = clip_vocabulary_from_bpe_file(clip_bpe) if clip_bpe else synthetic_clip_vocabulary()
    if name == "clip":
        files = {
            "config.json": clip_config_text(),
            "preprocessor_config.json": hub_json(hub.CLIP_PREPROCESSOR_CONFIG),
            **_clip_tokenizer_files(vocabulary, sd15=False),
        }
        return files, vocabulary.origin
    if name == "ast":
        files = {
            "config.json": hub_json(ast_config(), sort_keys=True),
            "preprocessor_config.json": hub_json(hub.AST_PREPROCESSOR_CONFIG),
        }
        return files, "no tokenizer"
    if name == "clap":
        tokenizer_files, origin = _roberta_tokenizer_files()
        files = {
            "config.json": clap_config_text(),
            "preprocessor_config.json": hub_json(hub.CLAP_PREPROCESSOR_CONFIG),
            **tokenizer_files,
        }
        return files, origin
    if name == "riffusion":
        files = {
            "model_index.json": hub_json(hub.SD15_MODEL_INDEX),
            "scheduler/scheduler_config.json": hub_json(hub.SD15_SCHEDULER_CONFIG),
            "feature_extractor/preprocessor_config.json": hub_json(hub.SD15_FEATURE_EXTRACTOR_CONFIG),
            "text_encoder/config.json": hub_json(hub.SD15_TEXT_ENCODER_CONFIG),
            "unet/config.json": hub_json(hub.SD15_UNET_CONFIG),
            "vae/config.json": hub_json(hub.SD15_VAE_CONFIG),
            **{f"tokenizer/{k}": v for k, v in _clip_tokenizer_files(vocabulary, sd15=True).items()},
        }
        return files, vocabulary.origin
    if name == "controlnet":
        return {"config.json": hub_json(hub.CONTROLNET_CONFIG)}, "no tokenizer"
    if name == "musicgen":
        tokenizer_files, origin = _t5_tokenizer_files()
        files = {
            "config.json": musicgen_config_text(),
            "generation_config.json": hub_json(hub.MUSICGEN_GENERATION_CONFIG, final_newline=False),
            "preprocessor_config.json": hub_json(hub.MUSICGEN_PREPROCESSOR_CONFIG),
            **tokenizer_files,
        }
        return files, origin
    raise ValueError(f"unknown stand-in {name!r}; choose from {', '.join(STAND_INS)}")


# --------------------------------------------------------------------------- models


def build_model(component: WeightsComponent, config_folder: str | os.PathLike, device: str = "cpu") -> Any:
    """The component's model built from the configuration in ``config_folder/<subfolder>`` on ``device``
    ("meta": shapes only, no memory; "cpu": initialised as the class initialises a new model)."""
    import torch

    folder = Path(config_folder) / component.subfolder
    if component.library == "transformers":
        import transformers

        cls = getattr(transformers, component.class_name)
        config = cls.config_class.from_pretrained(folder)
        with torch.device(device):
            return cls(config)
    import diffusers

    cls = getattr(diffusers, component.class_name)
    with torch.device(device):
        return cls.from_config(cls.load_config(folder))


def parameter_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomise_codebooks(model: Any, generator: Any) -> None:
    """EnCodec's codebooks are buffers the class sets to zeros (a trained checkpoint fills them): draw them."""
    import torch

    for module in model.modules():
        if type(module).__name__ == "EncodecEuclideanCodebook":
            embed = torch.randn(module.embed.shape, generator=generator)
            module.embed.copy_(embed)
            module.embed_avg.copy_(embed)
            module.cluster_size.fill_(1.0)


def _component_seed(seed: int, name: str, component: WeightsComponent) -> int:
    # Each component's weights depend on the seed and on nothing else written in the same run (--only gives the same).
    return zlib.crc32(f"{seed}/{name}/{component.subfolder}".encode())


def write_weights(name: str, component: WeightsComponent, folder: Path, seed: int) -> int:
    """Initialise the component, save its weights as the Hub file name, free it; returns its parameter count."""
    import torch

    torch.manual_seed(_component_seed(seed, name, component))
    with torch.no_grad():
        model = build_model(component, folder)
        if component.class_name == "MusicgenForConditionalGeneration":
            generator = torch.Generator().manual_seed(_component_seed(seed, name, component) + 1)
            _randomise_codebooks(model, generator)
    count = parameter_count(model)
    staging = folder / component.subfolder / ".stand-in-staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        model.save_pretrained(staging, safe_serialization=True)
        del model
        gc.collect()
        written = staging / component.weights_name
        if not written.is_file():
            raise RuntimeError(f"{component.class_name}.save_pretrained wrote {sorted(os.listdir(staging))}")
        move_file_atomic(written, folder / component.subfolder / component.weights_name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return count


# --------------------------------------------------------------------------- plain folders


def stand_in_folder(out: str | os.PathLike, name: str) -> Path:
    """Where ``--out`` puts a stand-in: ``out/<hub id>`` (``out/openai/clip-vit-base-patch32``)."""
    return Path(out, *STAND_INS[name].hub_id.split("/"))


def read_manifest(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The stand-in manifest of a folder when it is complete (every file listed there, at its size), else None."""
    path = Path(folder) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        complete = all((Path(folder) / rel).is_file() and (Path(folder) / rel).stat().st_size == size
                       for rel, size in files.items())  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return manifest if complete else None


def _readme(spec: StandIn, vocabulary: str, counts: dict[str, int], files: Iterable[str], seed: int) -> str:
    lines = [
        "---",
        "tags:",
        "- sound-of-story-stand-in",
        "- random-weights",
        "---",
        "",
        f"# Stand-in for {spec.hub_id} (random weights)",
        "",
        f"Written offline by `sound-of-story stand-ins` (seed {seed}) for {spec.description}. It has the Hub "
        "checkpoint's configuration, file names and folder layout, and loads with the same `from_pretrained` call, "
        "but its weights are random: what it computes means nothing. It is for running the package at full size "
        "without the Hub (memory, speed, shapes), never for results.",
        "",
        "Parameters: " + ", ".join(f"{part} {count:,}" for part, count in counts.items()) + ".",
        "",
        f"Vocabulary: {vocabulary}.",
        "",
        "Files: " + ", ".join(f"`{f}`" for f in sorted(files)) + ".",
    ]
    if spec.left_out:
        lines += ["", "Left out (on the Hub, not here):", *[f"- {item}" for item in spec.left_out]]
    if spec.notes:
        lines += ["", "Differences from the Hub repository:", *[f"- {note}" for note in spec.notes]]
    return "\n".join(lines) + "\n"


def write_stand_in(
    name: str,
    folder: str | os.PathLike,
    *,
    clip_bpe: str | os.PathLike | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write the stand-in ``name`` into ``folder`` (emptied first, when it is a stand-in); returns its manifest,
    also written as ``stand_in.json``, last."""
    import diffusers
    import torch
    import transformers

    spec = STAND_INS[name]
    folder = Path(folder)
    if folder.exists():
        if any(folder.iterdir()) and not (folder / MANIFEST_NAME).is_file():
            raise ValueError(f"{folder} exists and is not a stand-in (no {MANIFEST_NAME}): it is left as it is")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    # Marks the folder as a stand-in while it is written (an interrupted run may replace it); complete once the
    # final manifest, listing the files, replaces this one.
    write_text_atomic(folder / MANIFEST_NAME, hub_json({"stand_in_for": spec.hub_id, "files": None}))
    files, vocabulary = hub_files(name, clip_bpe=clip_bpe)
    for rel, text in files.items():
        write_text_atomic(folder / rel, text)
    counts = {}
    for component in spec.components:
        label = component.subfolder or component.class_name
        if log:
            log(f"{name}: initialising and saving {component.class_name} ({label})")
        counts[label] = write_weights(name, component, folder, seed)
    written = sorted([*files, *(str(Path(c.subfolder, c.weights_name)) for c in spec.components)])
    write_text_atomic(folder / "README.md", _readme(spec, vocabulary, counts, [*written, "README.md"], seed))
    written.append("README.md")
    manifest = {
        "stand_in_for": spec.hub_id,
        "name": name,
        "random_weights": True,
        "seed": seed,
        "vocabulary": vocabulary,
        "parameters": counts,
        "left_out": list(spec.left_out),
        "written_with": {
            "transformers": transformers.__version__,
            "diffusers": diffusers.__version__,
            "torch": torch.__version__.split("+")[0],
        },
        "files": {rel: (folder / rel).stat().st_size for rel in written},
    }
    write_text_atomic(folder / MANIFEST_NAME, hub_json(manifest))
    return manifest


# --------------------------------------------------------------------------- a Hugging Face hub cache


def _git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tree_entry(path: Path, rel: str) -> dict[str, Any]:
    """The Hub's file metadata: git blob id; for LFS files also the SHA-256 (which names the cache blob)."""
    size = path.stat().st_size
    if rel.endswith(_LFS_SUFFIXES):
        sha256 = file_sha256(path)
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
        blob_id = hashlib.sha1(f"blob {len(pointer)}\0".encode() + pointer).hexdigest()
        return {"size": size, "blob_id": blob_id, "lfs_sha256": sha256, "lfs_size": size}
    return {"size": size, "blob_id": _git_blob_sha1(path)}


def repo_cache_folder(cache_dir: str | os.PathLike, hub_id: str) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return Path(cache_dir) / repo_folder_name(repo_id=hub_id, repo_type="model")


def installed_snapshot(cache_dir: str | os.PathLike, hub_id: str) -> Path | None:
    """The snapshot ``refs/main`` points to, if the cache has ``hub_id``."""
    ref = repo_cache_folder(cache_dir, hub_id) / "refs" / "main"
    if not ref.is_file():
        return None
    return repo_cache_folder(cache_dir, hub_id) / "snapshots" / ref.read_text().strip()


def _link_or_copy(source: Path, target: Path, *, move: bool) -> None:
    if move:
        move_file_atomic(source, target)
        return
    try:
        os.link(source, target)  # same file system: no second copy of the bytes
    except OSError:
        shutil.copyfile(source, target)


def install_into_hub_cache(folder: str | os.PathLike, cache_dir: str | os.PathLike, *, move: bool = False) -> Path:
    """Install the stand-in in ``folder`` into the hub cache ``cache_dir`` as huggingface_hub lays out a download:
    ``blobs/<etag>`` (files hard-linked, copied where links are impossible, or moved with ``move``),
    ``snapshots/<commit>/<path>`` symlinks to them, ``trees/<commit>.json`` (the file listing that offline loaders
    read) and ``refs/main``, written last. Returns the snapshot folder.

    The commit hash is the stand-in's own (a hash of its file listing), never the real checkpoint's, so going
    online later downloads the real files instead of trusting these. A cache holding a real download of the
    checkpoint (a snapshot without ``stand_in.json``) is refused; stand-ins installed earlier are replaced."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        raise ValueError(f"{folder} is not a complete stand-in (no {MANIFEST_NAME} listing its files)")
    hub_id = manifest["stand_in_for"]
    storage = repo_cache_folder(cache_dir, hub_id)
    snapshots = storage / "snapshots"
    real = (
        sorted(p.name for p in snapshots.iterdir() if not (p / MANIFEST_NAME).is_file()) if snapshots.is_dir() else []
    )
    if real:
        raise ValueError(
            f"{cache_dir} holds a download of {hub_id} ({real[0]}); install the stand-ins into a cache folder of "
            "their own (--hub-cache NEW_DIR), never over real checkpoints"
        )
    # The manifest first: every snapshot this writes is recognisable as a stand-in from its first file on.
    order = [MANIFEST_NAME, *sorted(manifest["files"])]
    entries = {rel: _tree_entry(folder / rel, rel) for rel in order}
    listing = "".join(f"{rel} {entries[rel]['blob_id']}\n" for rel in sorted(entries))
    commit = hashlib.sha1(f"sound-of-story stand-in of {hub_id}\n{listing}".encode()).hexdigest()
    snapshot = snapshots / commit
    shutil.rmtree(snapshot, ignore_errors=True)
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    for rel, entry in entries.items():
        blob = storage / "blobs" / _blob_name(entry)
        if not blob.is_file():
            _link_or_copy(folder / rel, blob, move=move)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            link.symlink_to(os.path.relpath(blob, link.parent))
        except OSError:  # no symlinks (Windows without developer mode): huggingface_hub copies, and so do we
            shutil.copyfile(blob, link)
    tree = {"format_version": 1, "files": {rel: entries[rel] for rel in sorted(entries)}}
    write_text_atomic(storage / "trees" / f"{commit}.json", json.dumps(tree, indent=1))
    write_text_atomic(storage / "refs" / "main", commit)  # huggingface_hub reads it without stripping
    # Only now the stand-ins installed before, and the blobs only they used, go.
    for old in snapshots.iterdir():
        if old.name != commit:
            shutil.rmtree(old)
            (storage / "trees" / f"{old.name}.json").unlink(missing_ok=True)
    keep = {_blob_name(entry) for entry in entries.values()}
    for blob in (storage / "blobs").iterdir():
        if blob.name not in keep:
            blob.unlink()
    return snapshot


def _blob_name(entry: dict[str, Any]) -> str:
    """The cache names a blob by its ETag: the SHA-256 for LFS files, the git blob id for the others."""
    return entry.get("lfs_sha256", entry["blob_id"])


# --------------------------------------------------------------------------- both


@dataclass
class StandInResult:
    name: str
    hub_id: str
    folder: Path | None  # the plain folder (with --out)
    snapshot: Path | None  # the cache snapshot (with --hub-cache)
    manifest: dict[str, Any]
    skipped: bool  # already complete, nothing written


def write_stand_ins(
    names: Iterable[str] | None = None,
    *,
    out: str | os.PathLike | None = None,
    hub_cache: str | os.PathLike | None = None,
    clip_bpe: str | os.PathLike | None = None,
    seed: int = 0,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[StandInResult]:
    """Write the stand-ins ``names`` (all by default) as plain folders under ``out``, into the hub cache
    ``hub_cache``, or both (the cache then links to the folders' files). A complete stand-in already there is kept
    unless ``force``. One model is in memory at a time."""
    if out is None and hub_cache is None:
        raise ValueError(
            "say where the stand-ins go: --out DIR (plain folders), --hub-cache DIR (a hub cache), or both"
        )
    if clip_bpe is not None:
        clip_vocabulary_from_bpe_file(clip_bpe)  # a bad file fails before hours of writing
    results = []
    for name in names or stand_in_names():
        spec = STAND_INS[name]
        if out is not None:
            folder = stand_in_folder(out, name)
            manifest = None if force else read_manifest(folder)
            skipped = manifest is not None and manifest["stand_in_for"] == spec.hub_id
            if not skipped:
                manifest = write_stand_in(name, folder, clip_bpe=clip_bpe, seed=seed, log=log)
            snapshot = None
            if hub_cache is not None:
                installed = installed_snapshot(hub_cache, spec.hub_id)
                if force or installed is None or read_manifest(installed) != manifest:
                    snapshot = install_into_hub_cache(folder, hub_cache)
                else:
                    snapshot = installed
            results.append(StandInResult(name, spec.hub_id, folder, snapshot, manifest, skipped))  # type: ignore[arg-type]
            continue
        installed = installed_snapshot(hub_cache, spec.hub_id)  # type: ignore[arg-type]
        manifest = None if force or installed is None else read_manifest(installed)
        if manifest is not None:
            results.append(StandInResult(name, spec.hub_id, None, installed, manifest, True))
            continue
        staging = Path(hub_cache) / ".stand-in-staging" / name  # type: ignore[arg-type]
        try:
            manifest = write_stand_in(name, staging, clip_bpe=clip_bpe, seed=seed, log=log)
            snapshot = install_into_hub_cache(staging, hub_cache, move=True)  # type: ignore[arg-type]
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if staging.parent.is_dir() and not any(staging.parent.iterdir()):
                staging.parent.rmdir()
        results.append(StandInResult(name, spec.hub_id, None, snapshot, manifest, False))
    return results


__all__ = [
    "CONTROLNET_SD15",
    "MANIFEST_NAME",
    "STAND_INS",
    "BpeVocabulary",
    "StandIn",
    "StandInResult",
    "WeightsComponent",
    "build_model",
    "clip_vocabulary_from_bpe_file",
    "hub_files",
    "install_into_hub_cache",
    "installed_snapshot",
    "parameter_count",
    "parse_names",
    "read_manifest",
    "stand_in_folder",
    "stand_in_names",
    "synthetic_clip_vocabulary",
    "synthetic_roberta_vocabulary",
    "synthetic_t5_pieces",
    "write_stand_in",
    "write_stand_ins",
]
