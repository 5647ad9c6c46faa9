"""Tiny random-initialised retrieval models and processors, built in code with no download.

For the offline demo and the tests: every code path of the real models runs, on shapes a 2-core
CPU handles in milliseconds. The processor is the real one (40 frames, 77 tokens, AST's full
1024 x 128 fbank); only the tokenizer's vocabulary (bytes, no merges) and the image size (32 px)
are small, and the models' widths are 16.
"""

from typing import Any

import torch
from tokenizers.pre_tokenizers import ByteLevel
from transformers import ASTFeatureExtractor, ClapConfig, CLIPImageProcessor, CLIPTokenizer

from .configuration_sos import SoSRetrievalConfig
from .configuration_wav2clip_baseline import Wav2CLIPBaselineConfig
from .processing_sos import SoSRetrievalProcessor

TINY_IMAGE_SIZE = 32
TINY_WIDTH = 16


def tiny_clip_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary is the 256 byte symbols (with and without the end-of-word
    mark) and the two special tokens: every text tokenizes, one token per character."""
    alphabet = sorted(ByteLevel.alphabet())
    symbols = ["<|startoftext|>", "<|endoftext|>"] + alphabet + [symbol + "</w>" for symbol in alphabet]
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    return CLIPTokenizer(vocab=vocab, merges=[])


def tiny_clip_config_dict(tokenizer: CLIPTokenizer | None = None) -> dict[str, Any]:
    """A 16-wide CLIP (2 text layers, 1 vision layer on 32 px images) matching `tiny_clip_tokenizer`."""
    tokenizer = tokenizer or tiny_clip_tokenizer()
    return {
        "projection_dim": TINY_WIDTH,
        "text_config": {
            "vocab_size": len(tokenizer),
            "hidden_size": TINY_WIDTH,
            "intermediate_size": 2 * TINY_WIDTH,
            "num_attention_heads": 2,
            "num_hidden_layers": 2,
            "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        "vision_config": {
            "hidden_size": TINY_WIDTH,
            "intermediate_size": 2 * TINY_WIDTH,
            "num_attention_heads": 2,
            "num_hidden_layers": 1,
            "image_size": TINY_IMAGE_SIZE,
            "patch_size": 16,
        },
    }


def tiny_ast_config_dict() -> dict[str, Any]:
    """A one-layer, 16-wide AST on the real 1024 x 128 fbank, with non-overlapping 16 x 16 patches (8 x 64 tokens)."""
    return {
        "hidden_size": TINY_WIDTH,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 2 * TINY_WIDTH,
        "patch_size": 16,
        "frequency_stride": 16,
        "time_stride": 16,
        "max_length": 1024,
        "num_mel_bins": 128,
    }


def tiny_retrieval_config(**overrides: Any) -> SoSRetrievalConfig:
    """A `SoSRetrievalConfig` of tiny random encoders (2 temporal layers, 40 frame positions)."""
    settings = {
        "clip_config": tiny_clip_config_dict(),
        "audio_config": tiny_ast_config_dict(),
        "temporal_num_layers": 2,
        "max_frames": 40,
    }
    settings.update(overrides)
    return SoSRetrievalConfig(**settings)


def tiny_wav2clip_config(**overrides: Any) -> Wav2CLIPBaselineConfig:
    """A `Wav2CLIPBaselineConfig` with the tiny CLIP and a two-stage, 4/8-channel ResNet.

    The frozen CLIP is the target space, so its vision tower is initialised 5x wider than CLIP's
    default: at the default, random frames all map to nearly one direction (cosine 0.99) and there
    would be nothing to learn."""
    clip = tiny_clip_config_dict()
    clip["vision_config"].update(initializer_factor=5.0, initializer_range=0.1)
    settings = {"clip_config": clip, "audio_channels": [4, 8], "audio_blocks": [1, 1]}
    settings.update(overrides)
    return Wav2CLIPBaselineConfig(**settings)


def tiny_clap_config() -> ClapConfig:
    """A tiny random ``ClapConfig`` (the CLAP baseline's model) whose text side takes the tiny CLIP tokenizer."""
    tokenizer = tiny_clip_tokenizer()
    return ClapConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
                     "projection_dim": 16, "max_position_embeddings": 80, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 1},
        audio_config={"hidden_size": 16, "patch_embeds_hidden_size": 8, "depths": [1, 1], "num_attention_heads": [2, 2], "projection_dim": 16,
                      "num_hidden_layers": 2, "window_size": 8, "spec_size": 256},
        projection_dim=16,
    )  # fmt: skip


def tiny_retrieval_processor(**kwargs: Any) -> SoSRetrievalProcessor:
    """The real processor with the tiny tokenizer and 32 px frames; `kwargs` go to `SoSRetrievalProcessor`."""
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": TINY_IMAGE_SIZE}, crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
    )
    return SoSRetrievalProcessor(
        image_processor=image_processor,
        feature_extractor=ASTFeatureExtractor(),
        tokenizer=tiny_clip_tokenizer(),
        **kwargs,
    )


def tiny_random_inputs(batch: int = 3, frames: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random model inputs of the tiny models' shapes (fbank 1024 x 128, 32 px frames, 77 tokens of
    distinct texts), as the processor would give them."""
    generator = torch.Generator().manual_seed(seed)
    texts = [f"story number {i} " * (i + 1) for i in range(batch)]
    tokens = tiny_clip_tokenizer()(texts, padding="max_length", max_length=77, return_tensors="pt")
    return {
        "input_values": torch.randn(batch, 1024, 128, generator=generator),
        "pixel_values": torch.randn(batch, frames, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE, generator=generator),
        "frame_mask": torch.ones(batch, frames, dtype=torch.long),
        "input_ids": tokens["input_ids"],
        "attention_mask": tokens["attention_mask"],
    }


__all__ = [
    "tiny_ast_config_dict",
    "tiny_clip_config_dict",
    "tiny_clip_tokenizer",
    "tiny_random_inputs",
    "tiny_retrieval_config",
    "tiny_retrieval_processor",
    "tiny_wav2clip_config",
]
