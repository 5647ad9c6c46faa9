"""Configuration of the Sound of Story retrieval model (paper section 4.1)."""

import math
from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import ASTConfig, CLIPConfig, PreTrainedConfig


@strict
class SoSRetrievalConfig(PreTrainedConfig):
    r"""
    Configuration of [`SoSRetrievalModel`]: CLIP text and vision encoders, an X-CLIP style temporal
    transformer over the frame features, an AST audio encoder, and the multi-grained similarity of
    the paper's equations 1 to 11 (X-CLIP's "attention over similarity matrix").

    Every feature lives in CLIP's joint embedding space, so the shared dimension is
    `clip_config.projection_dim` (512 for ViT-B/32), readable as `config.projection_dim`. The AST
    tokens get one new linear projection into it.

    Args:
        clip_config (`dict` or `CLIPConfig`, *optional*):
            The CLIP model (text tower for the story text, vision tower for each frame). Its
            `logit_scale_init_value` initialises the contrastive logit scale, as in CLIP.
        audio_config (`dict` or `ASTConfig`, *optional*):
            The Audio Spectrogram Transformer on Kaldi fbank features (1024 frames x 128 mel bins for
            the AudioSet checkpoints).
        temporal_num_layers (`int`, *optional*, defaults to 4):
            Layers of the temporal transformer over the frames (X-CLIP's `cross_num_hidden_layers`).
            `from_encoders` copies them from the first layers of the CLIP text transformer, as X-CLIP does.
        temporal_num_attention_heads (`int`, *optional*):
            Heads of the temporal transformer. Defaults to the CLIP text tower's when its width equals
            the shared dimension (so its layers can be copied), else to `projection_dim // 64`.
        max_frames (`int`, *optional*, defaults to 77):
            Size of the learned frame position table. X-CLIP initialises it from CLIP's 77 text
            positions; the processor sends 40 frames per story.
        frame_features (`"temporal"` or `"clip"`, *optional*, defaults to `"temporal"`):
            Which frame features the fine-grained terms (audio-frame, audio sequence-frame) use.
            `"temporal"` follows the paper, which defines the frame feature f_f as the temporal
            encoder's output and the video feature f_v as its mean. `"clip"` follows X-CLIP's code
            (`use_original_clip_for_frame_features=True`): the fine-grained terms use the CLIP frame
            features and only f_v comes from the temporal encoder. Both pool f_v from the temporal
            encoder's output.
        mask_padded_frames (`bool`, *optional*, defaults to `False`):
            `False` is X-CLIP's behaviour: the frame mask enters the temporal encoder's attention and
            the mean pooling of f_v only, and padded frames take part in every frame-axis softmax
            with their own features (the golden `sim` of `tests/golden/xclip_aosm_*`). `True`
            also gives padded frames zero weight in every frame-axis softmax (the golden
            `alt_masked_*` arrays), and padded word positions zero weight in the audio-text scores.
            The processor always sends `max_frames` real frames per story, so the two agree on its
            output; they differ only on hand-padded batches.
        audio_token_pooling (`"none"` or `"frequency"`, *optional*, defaults to `"none"`):
            `"none"`: the audio sequence feature f_as is every AST token after the first (the
            distillation token and the 12 x 101 patch tokens: 1213 tokens), as in the paper.
            `"frequency"`: the patch tokens are averaged over the frequency axis into one token per
            time step (101 tokens for 1024 frames), and the distillation token is left out. This
            cuts the cost of the audio sequence-frame term by about 12x.
        temperature (`float`, *optional*, defaults to 0.01):
            Temperature of every softmax aggregation (X-CLIP's 1e-2; the paper's equations leave it out).
        logit_scale_max (`float`, *optional*, defaults to ln(100)):
            The logit scale is clamped to at most this value (CLIP and X-CLIP clip the scale at 100).
        similarity_chunk_size (`int`, *optional*):
            Default block size (queries and targets per block) of the chunked N x M similarity. `None`
            picks the largest square block whose audio token-frame tensor fits `SIMILARITY_BLOCK_BYTES`.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the initialisation of the new layers (temporal encoder, frame
            positions, audio projection).

    Not in this model, on purpose: X-CLIP's eight identity-initialised learnable matrices inside the
    similarity. The paper's equations have none, and the n x n and m x m ones would tie the model to
    fixed token and frame counts. At their initial value they change nothing.

    Example:

    ```python
    >>> from sound_of_story.modeling import SoSRetrievalConfig, SoSRetrievalModel
    >>> config = SoSRetrievalConfig(audio_token_pooling="frequency")
    >>> model = SoSRetrievalModel(config)  # random weights; see SoSRetrievalModel.from_encoders
    ```
    """

    model_type = "sos_retrieval"
    sub_configs_defaults = {"clip_config": CLIPConfig, "audio_config": ASTConfig}

    clip_config: dict | CLIPConfig | None = None
    audio_config: dict | ASTConfig | None = None
    temporal_num_layers: int = 4
    temporal_num_attention_heads: int | None = None
    max_frames: int = 77
    frame_features: Literal["temporal", "clip"] = "temporal"
    mask_padded_frames: bool = False
    audio_token_pooling: Literal["none", "frequency"] = "none"
    temperature: float = 0.01
    logit_scale_max: float = math.log(100.0)
    similarity_chunk_size: int | None = None
    initializer_range: float = 0.02

    @property
    def projection_dim(self) -> int:
        """The shared embedding dimension: CLIP's projection dimension."""
        return self.clip_config.projection_dim

    @property
    def temporal_heads(self) -> int:
        """Attention heads of the temporal transformer (see `temporal_num_attention_heads`)."""
        if self.temporal_num_attention_heads is not None:
            return self.temporal_num_attention_heads
        text = self.clip_config.text_config
        if text.hidden_size == self.projection_dim:
            return text.num_attention_heads
        return max(1, self.projection_dim // 64)

    def validate_retrieval_settings(self):
        """Checked at construction: values that would fail later, with the argument named."""
        if self.temporal_num_layers < 0:
            raise ValueError(f"temporal_num_layers must be >= 0, got {self.temporal_num_layers}")
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.similarity_chunk_size is not None and self.similarity_chunk_size < 1:
            raise ValueError(
                f"similarity_chunk_size must be a positive integer or None, got {self.similarity_chunk_size}"
            )
        if self.projection_dim % self.temporal_heads:
            raise ValueError(
                f"the shared dimension (clip_config.projection_dim = {self.projection_dim}) must be divisible by "
                f"temporal_num_attention_heads ({self.temporal_heads})"
            )


__all__ = ["SoSRetrievalConfig"]
