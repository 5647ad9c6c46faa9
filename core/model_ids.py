"""The Hub checkpoints the package starts from by default: one name each, used by every part.

A user online gets these by id; offline, every command takes a local folder in place of any of them.
"""

# Retrieval (paper section 4.1): CLIP ViT-B/32 for frames and text, AST fine-tuned on AudioSet for audio.
CLIP = "openai/clip-vit-base-patch32"
AST = "MIT/ast-finetuned-audioset-10-10-0.4593"
# The CLAP baseline of Table 2 (LAION's transformers port) and the CLAP embedder of the generation metrics.
CLAP = "laion/clap-htsat-unfused"
# Generation (paper section 4.2): SoSgen starts from Riffusion; MusicGen is a Table 3 baseline.
RIFFUSION = "riffusion/riffusion-model-v1"
MUSICGEN = "facebook/musicgen-small"

__all__ = ["AST", "CLAP", "CLIP", "MUSICGEN", "RIFFUSION"]
