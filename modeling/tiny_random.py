"""Tiny random-initialised retrieval models and processors, built in code with no download.

For the offline demo and the tests: every code path of the real models runs, on shapes a 2-core
CPU handles in milliseconds. The processor is the real one (40 frames, 77 tokens, AST's full
1024 x 128 fbank); only the tokenizer's vocabulary (bytes, no merges) and the image size (32 px)
are small, and the models' widths are 16.
"""

from typing import Any

import torch
from tokenizers.pre_tokenizers import ByteLevel
from transformers import ASTFeatureExtractor, BertTokenizer, ClapConfig, CLIPImageProcessor, CLIPTokenizer

from .configuration_msclap import MSClapConfig
from .configuration_sos import SoSRetrievalConfig
from .configuration_wav2clip_baseline import Wav2CLIPBaselineConfig
from .configuration_wav2clip_original import Wav2CLIPOriginalConfig
from .feature_extraction_waveform import WaveformWindowFeatureExtractor
from .processing_msclap import MSCLAP_SAMPLING_RATE, MSCLAP_WINDOW_SECONDS, MSClapProcessor
from .processing_sos import SoSRetrievalProcessor
from .processing_wav2clip_original import WAV2CLIP_SAMPLING_RATE, WAV2CLIP_WINDOW_SECONDS, Wav2CLIPOriginalProcessor

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


def tiny_wav2clip_original_config(**overrides: Any) -> Wav2CLIPOriginalConfig:
    """A `Wav2CLIPOriginalConfig` with the tiny CLIP (its vision tower spread as in `tiny_wav2clip_config`), a
    two-stage 4/8-channel ResNet on the real spectrogram, and an 8 -> 16 -> 16 transform."""
    clip = tiny_clip_config_dict()
    clip["vision_config"].update(initializer_factor=5.0, initializer_range=0.1)
    settings = {"clip_config": clip, "audio_channels": [4, 8], "audio_blocks": [1, 1], "transform_units": [8, 16, 16]}
    settings.update(overrides)
    return Wav2CLIPOriginalConfig(**settings)


def tiny_bert_tokenizer() -> BertTokenizer:
    """A BERT (WordPiece) tokenizer whose vocabulary is the special tokens, lower-case letters, digits and
    punctuation, each also as a `##` continuation: every lower-cased ASCII text tokenizes, one token per character."""
    characters = list("abcdefghijklmnopqrstuvwxyz0123456789") + list(".,;:!?'\"-()")
    symbols = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + characters + ["##" + c for c in characters]
    return BertTokenizer(vocab={symbol: index for index, symbol in enumerate(symbols)})


def tiny_bert_config_dict(tokenizer: BertTokenizer | None = None, hidden_size: int = TINY_WIDTH) -> dict[str, Any]:
    """A one-layer BERT matching `tiny_bert_tokenizer` (positions for msclap's 100 tokens)."""
    tokenizer = tokenizer or tiny_bert_tokenizer()
    return {
        "model_type": "bert",
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 2 * TINY_WIDTH,
        "max_position_embeddings": 128,
        "pad_token_id": tokenizer.pad_token_id,
    }


def tiny_msclap_config(**overrides: Any) -> MSClapConfig:
    """A `MSClapConfig` on the real 44.1 kHz log-mel front end with a 4-16 channel Cnn14, a 16-d embedding and the
    tiny BERT."""
    settings = {
        "text_config": tiny_bert_config_dict(),
        "audio_channels": [4, 4, 8, 8, 16, 16],
        "audio_embed_dim": TINY_WIDTH,
        "projection_dim": TINY_WIDTH,
    }
    settings.update(overrides)
    return MSClapConfig(**settings)


def tiny_wav2clip_original_processor(**kwargs: Any) -> Wav2CLIPOriginalProcessor:
    """The real Wav2CLIP processor (16 kHz, 10 s windows) with the tiny CLIP tokenizer and 32 px frames."""
    return Wav2CLIPOriginalProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": TINY_IMAGE_SIZE}, crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
        ),
        feature_extractor=WaveformWindowFeatureExtractor(
            sampling_rate=WAV2CLIP_SAMPLING_RATE, window_seconds=WAV2CLIP_WINDOW_SECONDS
        ),
        tokenizer=tiny_clip_tokenizer(),
        **kwargs,
    )


def tiny_msclap_processor(**kwargs: Any) -> MSClapProcessor:
    """The real msclap processor (44.1 kHz, 5 s windows, 100 tokens) with the tiny BERT tokenizer."""
    return MSClapProcessor(
        feature_extractor=WaveformWindowFeatureExtractor(
            sampling_rate=MSCLAP_SAMPLING_RATE, window_seconds=MSCLAP_WINDOW_SECONDS
        ),
        tokenizer=tiny_bert_tokenizer(),
        **kwargs,
    )


def tiny_retrieval_processor(tokenizer: CLIPTokenizer | None = None, **kwargs: Any) -> SoSRetrievalProcessor:
    """The real processor with 32 px frames and ``tokenizer`` (default: `tiny_clip_tokenizer`); `kwargs` go to
    `SoSRetrievalProcessor`."""
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": TINY_IMAGE_SIZE}, crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
    )
    return SoSRetrievalProcessor(
        image_processor=image_processor,
        feature_extractor=ASTFeatureExtractor(),
        tokenizer=tokenizer or tiny_clip_tokenizer(),
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
    "tiny_bert_config_dict",
    "tiny_bert_tokenizer",
    "tiny_clip_config_dict",
    "tiny_clip_tokenizer",
    "tiny_msclap_config",
    "tiny_msclap_processor",
    "tiny_random_inputs",
    "tiny_retrieval_config",
    "tiny_retrieval_processor",
    "tiny_wav2clip_config",
    "tiny_wav2clip_original_config",
    "tiny_wav2clip_original_processor",
]
