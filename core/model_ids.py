"""The Hub checkpoints the package starts from by default: one name each, used by every part.

A user online gets these by id; offline, every command takes a local folder in place of any of them.
"""

# Retrieval (paper section 4.1 names "CLIP" and "AST"; the variants are this package's choice): CLIP ViT-B/32 for
# frames and text, AST fine-tuned on AudioSet for audio.
CLIP = "openai/clip-vit-base-patch32"
AST = "MIT/ast-finetuned-audioset-10-10-0.4593"
# The CLAP baseline of Table 2 (LAION's transformers port) and the CLAP embedder of the generation metrics.
CLAP = "laion/clap-htsat-unfused"
# The original-format checkpoint files of Table 2's baselines as the paper ran them (paper section 4.1.3: "fine-tuned
# ... from their pretrained weights"): Wav2CLIP's release (the file wav2clip.get_model() downloads) and Microsoft
# CLAP 2022 (msclap's CLAPWrapper(version="2022")), whose BERT tokenizer comes from the Hub id msclap names.
WAV2CLIP_CHECKPOINT = "https://github.com/descriptinc/lyrebird-wav2clip/releases/download/v0.1.0-alpha/Wav2CLIP.pt"
MSCLAP_CHECKPOINT = "https://huggingface.co/microsoft/msclap/resolve/main/CLAP_weights_2022.pth"
MSCLAP_CHECKPOINT_SHA256 = "5b917c47fec10547b65cf1d9096e194896fa1c2d6180536c8524289721a4c5b8"
MSCLAP_TEXT_MODEL = "bert-base-uncased"
# The dataset as the paper built it (section 3): bytesep's MUSDB18 accompaniment checkpoint (ResUNet143_Subbandtime,
# the file `python -m bytesep download-checkpoints` fetches; bytesep asserts its size) for --separator bytesep, and
# Keras' ImageNet VGG16 (imagecluster's fingerprints) for `sound-of-story convert-vgg16`.
BYTESEP_CHECKPOINT = (
    "https://zenodo.org/record/5804160/files/resunet143_subbtandtime_accompaniment_16.4dB_500k_steps_v2.pth?download=1"
)
BYTESEP_CHECKPOINT_BYTES = 414_046_363
KERAS_VGG16_WEIGHTS = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5"
)
# Generation (paper section 4.2): SoSgen starts from Riffusion; MusicGen is a Table 3 baseline (the paper names no
# MusicGen size: small is this package's choice).
RIFFUSION = "riffusion/riffusion-model-v1"
MUSICGEN = "facebook/musicgen-small"
# An SD 1.5-size ControlNet: the reference layout of the ControlNet that SoSgen_text+image and SoSgen_image train (the
# package initialises its own from the UNet, as diffusers' train_controlnet.py; this id is the size it stands in for).
CONTROLNET_SD15 = "lllyasviel/sd-controlnet-canny"

__all__ = [
    "AST",
    "BYTESEP_CHECKPOINT",
    "BYTESEP_CHECKPOINT_BYTES",
    "CLAP",
    "CLIP",
    "KERAS_VGG16_WEIGHTS",
    "CONTROLNET_SD15",
    "MSCLAP_CHECKPOINT",
    "MSCLAP_CHECKPOINT_SHA256",
    "MSCLAP_TEXT_MODEL",
    "MUSICGEN",
    "RIFFUSION",
    "WAV2CLIP_CHECKPOINT",
]
