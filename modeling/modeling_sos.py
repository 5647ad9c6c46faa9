"""SoSRetrievalModel: multi-grained audio-video and audio-text retrieval (Sound of Story, section 4.1).

Encoders: CLIP text (sentence feature f_s at the end token, word features f_w), CLIP vision on each
frame followed by an X-CLIP style temporal transformer (frame features f_f, video feature f_v), and
the Audio Spectrogram Transformer on Kaldi fbank features (audio feature f_a = first token, audio
sequence feature f_as = the other tokens). Every feature is projected into CLIP's joint space and
L2-normalised.

Similarity: the paper's equations 1 to 11, computed as X-CLIP's "attention over similarity matrix"
(`multi_grained_similarity`), blockwise so that the full N x M test matrix has bounded memory.
"""

import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub import ModelCard
from torch import nn
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm
from transformers import ASTModel, CLIPModel, CLIPTextConfig, PreTrainedModel
from transformers.models.clip.modeling_clip import CLIPEncoderLayer
from transformers.utils import ModelOutput, logging

from .configuration_sos import SoSRetrievalConfig

logger = logging.get_logger(__name__)

# Size budget of one block's audio token x frame tensor in the chunked similarity. The block
# computation holds about two such tensors at once, so peak extra memory is about twice this.
SIMILARITY_BLOCK_BYTES = 256 * 2**20


@dataclass
class SoSAudioFeatures(ModelOutput):
    """Audio grains, L2-normalised, in the shared space.

    Args:
        audio_embeds (`torch.FloatTensor` of shape `(batch_size, dim)`):
            f_a: the first AST token, projected. With several crops per story, the normalised mean of
            the crops' features.
        audio_token_embeds (`torch.FloatTensor` of shape `(batch_size, num_tokens, dim)`, *optional*):
            f_as: the other AST tokens (or time tokens, see `audio_token_pooling`), projected; the
            crops of a story one after the other. `None` for baselines with a single audio vector.
    """

    audio_embeds: torch.FloatTensor | None = None
    audio_token_embeds: torch.FloatTensor | None = None


@dataclass
class SoSVideoFeatures(ModelOutput):
    """Video grains, L2-normalised, in the shared space.

    Args:
        video_embeds (`torch.FloatTensor` of shape `(batch_size, dim)`):
            f_v: the masked mean of the normalised temporal-encoder outputs, normalised again.
        frame_embeds (`torch.FloatTensor` of shape `(batch_size, num_frames, dim)`, *optional*):
            f_f: the frame features of the fine-grained terms (see `SoSRetrievalConfig.frame_features`).
        frame_mask (`torch.LongTensor` of shape `(batch_size, num_frames)`, *optional*):
            1 for real frames, 0 for padding.
    """

    video_embeds: torch.FloatTensor | None = None
    frame_embeds: torch.FloatTensor | None = None
    frame_mask: torch.LongTensor | None = None


@dataclass
class SoSTextFeatures(ModelOutput):
    """Text grains, L2-normalised, in the shared space.

    Args:
        text_embeds (`torch.FloatTensor` of shape `(batch_size, dim)`):
            f_s: the CLIP text output at the end token, projected.
        word_embeds (`torch.FloatTensor` of shape `(batch_size, sequence_length, dim)`, *optional*):
            f_w: every position of the CLIP text output, projected (X-CLIP's word features).
        attention_mask (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            1 for real tokens, 0 for padding.
    """

    text_embeds: torch.FloatTensor | None = None
    word_embeds: torch.FloatTensor | None = None
    attention_mask: torch.LongTensor | None = None


@dataclass
class SoSSimilarityOutput(ModelOutput):
    """The multi-grained similarity (before the logit scale) and its four terms.

    Rows are audio, columns are the other modality. For audio-text, "video" reads sentence and
    "frame" reads word.

    Args:
        similarity (`torch.FloatTensor` of shape `(num_audio, num_targets)`): Sim, eq. 11: the mean of the four terms.
        s_a_v: S_a,v (eq. 1), audio feature . video feature.
        s_a_f: S'_a,f (eq. 5), softmax over frames of the audio-frame similarities.
        s_as_v: S'_as,v (eq. 6), softmax over audio tokens of the token-video similarities.
        s_as_f: S'_as,f, the mean of S'_aud (eqs. 7-8) and S'_vid (eqs. 9-10).
    """

    similarity: torch.FloatTensor | None = None
    s_a_v: torch.FloatTensor | None = None
    s_a_f: torch.FloatTensor | None = None
    s_as_v: torch.FloatTensor | None = None
    s_as_f: torch.FloatTensor | None = None


@dataclass
class SoSRetrievalOutput(ModelOutput):
    """Output of [`SoSRetrievalModel.forward`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `return_loss=True`):
            Symmetric InfoNCE on the scaled similarities; the mean over the pairs given (audio-video,
            audio-text).
        logits_per_audio_video (`torch.FloatTensor` of shape `(audio_batch, video_batch)`): logit scale x Sim_AV.
        logits_per_video_audio: its transpose.
        logits_per_audio_text (`torch.FloatTensor` of shape `(audio_batch, text_batch)`): logit scale x Sim_AT.
        logits_per_text_audio: its transpose.
        audio_features, video_features, text_features: every grain of each modality given.
    """

    loss: torch.FloatTensor | None = None
    logits_per_audio_video: torch.FloatTensor | None = None
    logits_per_video_audio: torch.FloatTensor | None = None
    logits_per_audio_text: torch.FloatTensor | None = None
    logits_per_text_audio: torch.FloatTensor | None = None
    audio_features: SoSAudioFeatures | None = None
    video_features: SoSVideoFeatures | None = None
    text_features: SoSTextFeatures | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in (self[k] for k in self.keys()))


def masked_mean_pool(frame_embeds: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """X-CLIP's video feature: the mean of the valid (already normalised) frames, L2-normalised.

    Args:
        frame_embeds: `(batch, num_frames, dim)`, each frame L2-normalised.
        frame_mask: `(batch, num_frames)`, 1 = valid; every row needs at least one valid frame.
    """
    weights = frame_mask.to(frame_embeds.dtype).unsqueeze(-1)
    # The division by the frame count cancels in the normalisation; it is kept for clarity of the values.
    pooled = (frame_embeds * weights).sum(dim=1) / weights.sum(dim=1)
    return pooled / pooled.norm(dim=-1, keepdim=True)


def clip_frame_embeddings(
    clip, pixel_values: torch.Tensor, frame_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """CLIP's projected image embedding of every frame, `(batch, num_frames, dim)`, and the checked mask
    (all ones when `None`). Shared by the retrieval model and the Wav2CLIP baseline."""
    if pixel_values.dim() != 5:
        raise ValueError(
            f"pixel_values must have shape (batch, num_frames, channels, height, width), got {tuple(pixel_values.shape)}"
        )
    batch, num_frames = pixel_values.shape[:2]
    if frame_mask is None:
        frame_mask = torch.ones(batch, num_frames, dtype=torch.long, device=pixel_values.device)
    _check_frame_mask(frame_mask, batch, num_frames, "frame_mask")
    vision = clip.vision_model(pixel_values=pixel_values.flatten(0, 1))
    return clip.visual_projection(vision.pooler_output).view(batch, num_frames, -1), frame_mask


def _check_frame_mask(frame_mask: torch.Tensor, batch: int, num_frames: int, name: str) -> None:
    if tuple(frame_mask.shape) != (batch, num_frames):
        raise ValueError(
            f"{name} must have shape (batch, num_frames) = ({batch}, {num_frames}), got {tuple(frame_mask.shape)}"
        )
    empty = (frame_mask.sum(dim=-1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"{name}: rows {empty} have no valid entry; every item needs at least one")


def crop_pooled_embeds(
    input_values: torch.Tensor, item_shape: str, embed: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """One normalised audio vector per story from `(batch, *item)` or `(batch, crops, *item)` inputs: `embed` of
    every crop, normalised, averaged over the story's crops and normalised again. `item_shape` names the dimensions
    of one crop (`"samples"`, `"time, mel"`) for the error message. Shared by the baselines with global embeddings."""
    item_dims = len(item_shape.split(","))
    if input_values.dim() == item_dims + 1:
        input_values = input_values.unsqueeze(1)
    if input_values.dim() != item_dims + 2:
        raise ValueError(
            f"input_values must have shape (batch, {item_shape}) or (batch, crops, {item_shape}), "
            f"got {tuple(input_values.shape)}"
        )
    batch, crops = input_values.shape[:2]
    embeds = F.normalize(embed(input_values.flatten(0, 1)), dim=-1)
    return F.normalize(embeds.view(batch, crops, -1).mean(dim=1), dim=-1)


def global_similarity(
    audio_features: SoSAudioFeatures,
    other_features: SoSVideoFeatures | SoSTextFeatures,
    audio_text_model: str | None = None,
) -> torch.Tensor:
    """Cosine similarity of normalised global embeddings, `(num_audio, num_other)`: the similarity of the baselines,
    which have one vector per clip. `audio_text_model` (its name) refuses video features."""
    if isinstance(other_features, SoSTextFeatures):
        return audio_features.audio_embeds @ other_features.text_embeds.T
    if audio_text_model is not None:
        raise TypeError(
            f"{audio_text_model} is an audio-text model: other_features must be SoSTextFeatures, "
            f"got {type(other_features).__name__}"
        )
    if isinstance(other_features, SoSVideoFeatures):
        return audio_features.audio_embeds @ other_features.video_embeds.T
    raise TypeError(f"other_features must be SoSVideoFeatures or SoSTextFeatures, got {type(other_features).__name__}")


def _softmax_pool(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """sum_x softmax(logits)_x * logits_x along `dim` (in the units of `logits`).

    Without autograd the softmax buffer is reused for the product, so one extra tensor of the
    input's size is alive at a time.
    """
    weights = torch.softmax(logits, dim=dim)
    if torch.is_grad_enabled() and (logits.requires_grad or weights.requires_grad):
        return (weights * logits).sum(dim=dim)
    return weights.mul_(logits).sum(dim=dim)


def _mask_last_axis(logits: torch.Tensor, invalid: torch.Tensor | None) -> torch.Tensor:
    """Give invalid entries of the last axis (shape broadcast as `(..., num_targets, m)`) zero softmax weight.

    A finite fill keeps 0 * fill = 0 in the weighted sums (-inf would give NaN).
    """
    if invalid is None:
        return logits
    fill = torch.finfo(logits.dtype).min
    if torch.is_grad_enabled() and logits.requires_grad:
        return logits.masked_fill(invalid, fill)
    return logits.masked_fill_(invalid, fill)


def _shared_exponential_pools(token_frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Both first-level AOSM pools of `(rows, tokens, cols, frames)` logits from one exponential.

    `_softmax_pool` along the token axis and along the frame axis would each exponentiate the whole
    block; shifting by one maximum per (audio, target) pair lets both softmaxes share it, which saves
    about a quarter of the non-matmul time. A row or column whose every logit lies far below its pair's
    maximum (a cosine gap above ~0.87 at T = 0.01 in float32) underflows to a zero sum; then `None` is
    returned and the caller takes the exact two-softmax path. Inference only: the exponential is
    updated in place.
    """
    shift = token_frame.amax(dim=(1, 3), keepdim=True)
    weights = (token_frame - shift).exp_()
    over_tokens, over_frames = weights.sum(dim=1), weights.sum(dim=-1)
    if not (over_tokens.min() > 0 and over_frames.min() > 0):
        return None
    weights.mul_(token_frame)
    return weights.sum(dim=1) / over_tokens, weights.sum(dim=-1) / over_frames


def _similarity_block(
    audio_embeds: torch.Tensor,
    audio_token_embeds: torch.Tensor,
    target_embeds: torch.Tensor,
    target_token_embeds: torch.Tensor,
    invalid: torch.Tensor | None,
    temperature: float,
) -> torch.Tensor:
    """The four terms for one block of audio rows x target columns, stacked as `(4, rows, cols)`.

    The block's targets are divided by the temperature first, so every similarity below is already
    a softmax logit; each aggregated value is multiplied back by the temperature at the end.
    """
    rows, num_tokens, dim = audio_token_embeds.shape
    cols, num_frames, _ = target_token_embeds.shape
    tokens = audio_token_embeds.reshape(rows * num_tokens, dim)
    target_embeds_scaled = target_embeds / temperature
    frames_t = (target_token_embeds.reshape(cols * num_frames, dim) / temperature).T

    # eq. 1: audio . video
    s_a_v = (audio_embeds @ target_embeds_scaled.T) * temperature
    # eqs. 2 and 5: audio . frames, softmax over frames
    audio_frame = (audio_embeds @ frames_t).view(rows, cols, num_frames)
    s_a_f = _softmax_pool(_mask_last_axis(audio_frame, invalid), dim=-1)
    # eqs. 3 and 6: tokens . video, softmax over tokens
    token_video = (tokens @ target_embeds_scaled.T).view(rows, num_tokens, cols)
    s_as_v = _softmax_pool(token_video, dim=1)
    # eq. 4: the token x frame matrix of every pair, as one matrix product
    token_frame = (tokens @ frames_t).view(rows, num_tokens, cols, num_frames)
    # eq. 7 (X-CLIP's word-level logit): per frame, softmax over tokens, padded frames included
    # (they get zero weight in eq. 8 instead); eq. 9 (frame-level logit): per token, softmax over frames.
    pools = None
    if invalid is None and not (torch.is_grad_enabled() and token_frame.requires_grad):
        pools = _shared_exponential_pools(token_frame)
    if pools is None:
        per_frame = _softmax_pool(token_frame, dim=1)
        per_token = _softmax_pool(_mask_last_axis(token_frame, invalid), dim=-1)
    else:
        per_frame, per_token = pools
    del token_frame, pools
    # eqs. 8 and 10: second-level softmaxes, over frames and over tokens
    s_aud = _softmax_pool(_mask_last_axis(per_frame, invalid), dim=-1)
    s_vid = _softmax_pool(per_token, dim=1)
    s_as_f = (s_aud + s_vid) / 2
    return torch.stack([s_a_v, s_a_f * temperature, s_as_v * temperature, s_as_f * temperature])


def default_chunk_size(num_tokens: int, num_frames: int, dtype: torch.dtype, budget_bytes: int | None = None) -> int:
    """The largest square block whose `(rows, tokens, cols, frames)` tensor fits `budget_bytes`
    (default `SIMILARITY_BLOCK_BYTES`)."""
    budget_bytes = SIMILARITY_BLOCK_BYTES if budget_bytes is None else budget_bytes
    per_pair = num_tokens * num_frames * torch.empty((), dtype=dtype).element_size()
    return max(1, math.isqrt(budget_bytes // per_pair))


def multi_grained_similarity(
    audio_embeds: torch.Tensor,
    audio_token_embeds: torch.Tensor,
    target_embeds: torch.Tensor,
    target_token_embeds: torch.Tensor,
    target_mask: torch.Tensor | None = None,
    *,
    temperature: float = 0.01,
    chunk_size: int | None = None,
    return_components: bool = False,
    progress: bool = False,
) -> torch.Tensor | SoSSimilarityOutput:
    r"""The paper's Sim (eqs. 1-11) between every audio and every target, as X-CLIP computes it.

    Inputs must be L2-normalised (as `get_*_features` return them); the target global feature must
    already be pooled (for video, `masked_mean_pool`). With T = `temperature`:

    - S_a,v = a . v
    - S'_a,f = sum_l softmax_l(a . f_l / T) (a . f_l)
    - S'_as,v = sum_k softmax_k(w_k . v / T) (w_k . v)
    - with M_kl = w_k . f_l: A_l = sum_k softmax_k(M_kl / T) M_kl, B1 = sum_l softmax_l(A_l / T) A_l;
      C_k = sum_l softmax_l(M_kl / T) M_kl, B2 = sum_k softmax_k(C_k / T) C_k; S'_as,f = (B1 + B2) / 2
    - Sim = (S_a,v + S'_a,f + S'_as,v + S'_as,f) / 4

    Args:
        audio_embeds: `(num_audio, dim)`, f_a.
        audio_token_embeds: `(num_audio, num_tokens, dim)`, f_as.
        target_embeds: `(num_targets, dim)`, f_v (or f_s for text).
        target_token_embeds: `(num_targets, num_frames, dim)`, f_f (or f_w for text).
        target_mask: `(num_targets, num_frames)`, 1 = valid. When given, invalid frames get zero
            weight in every softmax over frames (the golden's `alt_masked_*` variant). X-CLIP's own
            behaviour is `None`: the mask is used only in the pooling of f_v.
        temperature: softmax temperature of every aggregation.
        chunk_size: audio rows and target columns per block. `None` picks the largest square block
            whose token x frame tensor fits `SIMILARITY_BLOCK_BYTES`; the result does not depend on it.
            With autograd on and more than one block, each block is recomputed in the backward pass
            (activation checkpointing), so training memory is bounded by the block size as well.
        return_components: return a `SoSSimilarityOutput` with the four terms as well.
        progress: show a progress bar over the blocks.

    Returns:
        `(num_audio, num_targets)` similarity, or a `SoSSimilarityOutput`.
    """
    if (
        audio_embeds.dim() != 2
        or audio_token_embeds.dim() != 3
        or target_embeds.dim() != 2
        or target_token_embeds.dim() != 3
    ):
        raise ValueError(
            "expected audio_embeds (N, D), audio_token_embeds (N, n, D), target_embeds (M, D), target_token_embeds (M, m, D); got "
            f"{tuple(audio_embeds.shape)}, {tuple(audio_token_embeds.shape)}, {tuple(target_embeds.shape)}, {tuple(target_token_embeds.shape)}"
        )
    num_audio, num_targets = audio_embeds.shape[0], target_embeds.shape[0]
    if audio_token_embeds.shape[0] != num_audio or target_token_embeds.shape[0] != num_targets:
        raise ValueError(
            "audio_embeds/audio_token_embeds and target_embeds/target_token_embeds must have the same batch size"
        )
    dims = {
        audio_embeds.shape[-1],
        audio_token_embeds.shape[-1],
        target_embeds.shape[-1],
        target_token_embeds.shape[-1],
    }
    if len(dims) != 1:
        raise ValueError(f"all features must share one embedding dimension, got {sorted(dims)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    num_tokens, num_frames = audio_token_embeds.shape[1], target_token_embeds.shape[1]
    invalid = None
    if target_mask is not None:
        _check_frame_mask(target_mask, num_targets, num_frames, "target_mask")
        invalid = target_mask == 0
    if chunk_size is None:
        chunk_size = default_chunk_size(num_tokens, num_frames, target_token_embeds.dtype)
    elif chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")

    row_starts = range(0, num_audio, chunk_size)
    col_starts = range(0, num_targets, chunk_size)
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (audio_embeds, audio_token_embeds, target_embeds, target_token_embeds)
    )
    block_fn: Callable[..., torch.Tensor] = _similarity_block
    if needs_grad and len(row_starts) * len(col_starts) > 1:

        def block_fn(*args):  # noqa: E306 - recompute each block in the backward pass
            return checkpoint(_similarity_block, *args, use_reentrant=False)

    # Only the similarity is kept unless the terms are asked for, so the output is N x M, not 4 N x M.
    def kept(block: torch.Tensor) -> torch.Tensor:
        return block if return_components else block.mean(dim=0, keepdim=True)

    # Without autograd blocks are written into one preallocated array; with it they are concatenated.
    out = None if needs_grad else audio_embeds.new_empty((4 if return_components else 1, num_audio, num_targets))
    block_rows: list[list[torch.Tensor]] = []
    bar = tqdm(total=len(row_starts) * len(col_starts), desc="similarity blocks", disable=not progress)
    for i in row_starts:
        block_rows.append([])
        for j in col_starts:
            rows, cols = slice(i, i + chunk_size), slice(j, j + chunk_size)
            block = kept(block_fn(
                audio_embeds[rows], audio_token_embeds[rows], target_embeds[cols], target_token_embeds[cols],
                None if invalid is None else invalid[cols], temperature,
            ))  # fmt: skip
            if out is None:
                block_rows[-1].append(block)
            else:
                out[:, rows, cols] = block
            bar.update()
    bar.close()
    if out is None:
        out = torch.cat([torch.cat(row, dim=2) for row in block_rows], dim=1)
    if not return_components:
        return out[0]
    similarity = out.mean(dim=0)
    return SoSSimilarityOutput(similarity=similarity, s_a_v=out[0], s_a_f=out[1], s_as_v=out[2], s_as_f=out[3])


def contrastive_loss(logits: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (X-CLIP's CrossEn on the logits and their transpose); item i matches item i."""
    if logits.shape[0] != logits.shape[1]:
        raise ValueError(
            f"the contrastive loss needs a square logits matrix (paired batch), got {tuple(logits.shape)}"
        )
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class SoSTemporalEncoder(nn.Module):
    """X-CLIP's `seqTransf` head: frame position embeddings, a transformer over the frames, and a
    residual connection to the CLIP frame features. Its layers have the CLIP text layer's layout,
    so `SoSRetrievalModel.from_encoders` can copy them from CLIP, as X-CLIP does."""

    def __init__(self, config: SoSRetrievalConfig):
        super().__init__()
        dim = config.projection_dim
        text = config.clip_config.text_config
        same_width = text.hidden_size == dim
        self.layer_config = CLIPTextConfig(
            hidden_size=dim,
            intermediate_size=text.intermediate_size if same_width else 4 * dim,
            num_attention_heads=config.temporal_heads,
            num_hidden_layers=config.temporal_num_layers,
            hidden_act=text.hidden_act,
            layer_norm_eps=text.layer_norm_eps,
        )
        self.layer_config._attn_implementation = "eager"
        self.max_frames = config.max_frames
        self.frame_position_embeddings = nn.Embedding(config.max_frames, dim)
        self.layers = nn.ModuleList([CLIPEncoderLayer(self.layer_config) for _ in range(config.temporal_num_layers)])

    def forward(self, frame_embeds: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        num_frames = frame_embeds.shape[1]
        if num_frames > self.max_frames:
            raise ValueError(
                f"got {num_frames} frames per video but the model has max_frames={self.max_frames} frame positions"
            )
        hidden = frame_embeds + self.frame_position_embeddings.weight[:num_frames]
        # Padded frames are never attended to (X-CLIP's key-padding mask).
        key_bias = (1.0 - frame_mask.to(hidden.dtype))[:, None, None, :] * torch.finfo(hidden.dtype).min
        for layer in self.layers:
            hidden = layer(hidden, key_bias)
        return hidden + frame_embeds


class RetrievalForwardMixin:
    """`forward` of every retrieval model here, built on its `get_*_features`, `similarity` and `scale`."""

    def forward(
        self,
        input_values: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
    ) -> SoSRetrievalOutput | tuple:
        r"""Audio against video and/or text of a batch; `return_loss=True` adds the symmetric InfoNCE loss
        (as `ClapModel`), averaged over the pairs given.

        Args:
            input_values: AST fbank features, `(batch, 1024, 128)` or `(batch, crops, 1024, 128)`.
            pixel_values, frame_mask: the stories' frames, `(batch, num_frames, 3, H, W)` and `(batch, num_frames)`.
            input_ids, attention_mask: the stories' text (CLIP tokens, at most 77).
            return_loss: return the contrastive loss; item i of each modality is the positive of item i.
        """
        if input_values is None:
            raise ValueError("input_values (the audio) is required: retrieval pairs audio with video and/or text")
        if pixel_values is None and input_ids is None:
            raise ValueError("give pixel_values (audio-video), input_ids (audio-text), or both")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        audio = self.get_audio_features(input_values)
        scale = self.scale()
        output = SoSRetrievalOutput(audio_features=audio)
        losses = []
        if pixel_values is not None:
            video = self.get_video_features(pixel_values, frame_mask)
            logits = scale * self.similarity(audio, video)
            output.video_features, output.logits_per_audio_video, output.logits_per_video_audio = (
                video,
                logits,
                logits.T,
            )
            if return_loss:
                losses.append(contrastive_loss(logits))
        if input_ids is not None:
            text = self.get_text_features(input_ids, attention_mask)
            logits = scale * self.similarity(audio, text)
            output.text_features, output.logits_per_audio_text, output.logits_per_text_audio = text, logits, logits.T
            if return_loss:
                losses.append(contrastive_loss(logits))
        if losses:
            output.loss = torch.stack(losses).mean()
        return output if return_dict else output.to_tuple()


class ClipGlobalRetrievalMixin:
    """What both Wav2CLIP models share of the retrieval interface, around their frozen CLIP `self.clip`: CLIP's
    text embedding (end token, projected), the clamped logit scale, and the cosine of the global embeddings."""

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped at exp(`config.logit_scale_max`)."""
        return self.logit_scale.clamp(max=self.config.logit_scale_max).exp()

    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> SoSTextFeatures:
        """CLIP's text embedding (end token, projected), normalised."""
        text = self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return SoSTextFeatures(
            text_embeds=F.normalize(self.clip.text_projection(text.pooler_output), dim=-1),
            attention_mask=attention_mask,
        )

    def similarity(
        self, audio_features: SoSAudioFeatures, other_features: SoSVideoFeatures | SoSTextFeatures, **_: object
    ) -> torch.Tensor:
        """Cosine similarity of the global embeddings, `(num_audio, num_other)` (block options are accepted and unused)."""
        return global_similarity(audio_features, other_features)


class SoSRetrievalPreTrainedModel(PreTrainedModel):
    """Base class: configuration class, loading and saving, and the default initialisation of the new
    layers (normal with `config.initializer_range`; CLIP and AST initialise themselves)."""

    config_class = SoSRetrievalConfig
    config: SoSRetrievalConfig
    base_model_prefix = "sos"
    main_input_name = "input_values"
    input_modalities = ("audio", "image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["CLIPEncoderLayer", "ASTLayer", "CLIPTextEmbeddings", "CLIPVisionEmbeddings", "ASTEmbeddings"]

    def push_to_hub(
        self,
        repo_id: str,
        *,
        processor: Any = None,
        model_card: ModelCard | None = None,
        base_models: list[str] | None = None,
        commit_message: str | None = None,
        private: bool | None = None,
        token: bool | str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
    ) -> Any:
        """Upload the weights, configuration, remote code, the processor (when given) and a model card.

        Unlike `PreTrainedModel.push_to_hub`, the card is this package's (`sound_of_story.cards.build_model_card`):
        `model_card` when given, else one naming `base_models`, so `AutoModel` / `AutoProcessor` load the repo with
        `trust_remote_code=True` and the card says where the weights came from.
        """
        from huggingface_hub import HfApi

        # Inside try so that remote code (this file copied into a Hub repo) loads without the package:
        # transformers' import check skips try blocks.
        try:
            from sound_of_story.cards import build_model_card
        except ImportError as error:
            raise ImportError(
                "push_to_hub writes its model card with the sound-of-story package; pip install sound-of-story"
            ) from error
        api = HfApi(token=token if isinstance(token, str) else None)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        card = model_card or build_model_card(
            library_name="transformers", base_models=base_models or [], tags=["audio-retrieval", "multimodal"],
            model_name=repo_id.split("/")[-1], description=f"`{type(self).__name__}` (Sound of Story, section 4.1).",
        )  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            if processor is not None:
                processor.save_pretrained(tmp)
            card.save(os.path.join(tmp, "README.md"))
            return api.upload_folder(
                repo_id=repo_id, folder_path=tmp, commit_message=commit_message or f"Upload {type(self).__name__}",
                revision=revision, create_pr=create_pr,
            )  # fmt: skip


class SoSRetrievalModel(RetrievalForwardMixin, SoSRetrievalPreTrainedModel):
    r"""Multi-grained audio-video and audio-text retrieval model of Sound of Story (paper section 4.1).

    Example (with network access; tests build tiny random configs instead):

    ```python
    >>> from sound_of_story.modeling import SoSRetrievalModel, SoSRetrievalProcessor
    >>> model = SoSRetrievalModel.from_encoders(clip="openai/clip-vit-base-patch32", audio="MIT/ast-finetuned-audioset-10-10-0.4593")
    >>> processor = SoSRetrievalProcessor.from_encoders(clip="openai/clip-vit-base-patch32", audio="MIT/ast-finetuned-audioset-10-10-0.4593")
    >>> inputs = processor(text=texts, frames=frame_lists, audio=audios, audio_crop="random")
    >>> loss = model(**inputs, return_loss=True).loss
    ```
    """

    def __init__(self, config: SoSRetrievalConfig):
        super().__init__(config)
        self.clip = CLIPModel._from_config(config.clip_config)
        self.audio_model = ASTModel._from_config(config.audio_config)
        self.temporal_encoder = SoSTemporalEncoder(config)
        self.audio_projection = nn.Linear(config.audio_config.hidden_size, config.projection_dim, bias=False)
        self.post_init()

    @property
    def logit_scale(self) -> nn.Parameter:
        """The learnable log logit scale: CLIP's, initialised as CLIP (or copied from the CLIP checkpoint)."""
        return self.clip.logit_scale

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped at exp(`config.logit_scale_max`) (100), as CLIP and X-CLIP clip it."""
        return self.logit_scale.clamp(max=self.config.logit_scale_max).exp()

    # ------------------------------------------------------------------ encoders

    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> SoSTextFeatures:
        """f_s (end token) and f_w (every position), projected by CLIP's text projection and normalised."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        text = self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask)
        sentence = self.clip.text_projection(text.pooler_output)
        words = self.clip.text_projection(text.last_hidden_state)
        return SoSTextFeatures(
            text_embeds=F.normalize(sentence, dim=-1),
            word_embeds=F.normalize(words, dim=-1),
            attention_mask=attention_mask,
        )

    def get_video_features(
        self, pixel_values: torch.Tensor, frame_mask: torch.Tensor | None = None
    ) -> SoSVideoFeatures:
        """CLIP on every frame, the temporal encoder, and f_v as the masked mean.

        Args:
            pixel_values: `(batch, num_frames, 3, height, width)`, from the processor.
            frame_mask: `(batch, num_frames)`, 1 = real frame; all ones when `None`.
        """
        clip_frames, frame_mask = clip_frame_embeddings(self.clip, pixel_values, frame_mask)
        return self.video_features_from_clip_frames(clip_frames, frame_mask)

    def video_features_from_clip_frames(self, clip_frames: torch.Tensor, frame_mask: torch.Tensor) -> SoSVideoFeatures:
        """The part of `get_video_features` after CLIP: the temporal encoder and the pooling.

        With frozen CLIP, training caches `clip_frames` (`clip_frame_embeddings`) and calls only this.
        """
        temporal = self.temporal_encoder(clip_frames, frame_mask)
        video = masked_mean_pool(F.normalize(temporal, dim=-1), frame_mask)
        frames = temporal if self.config.frame_features == "temporal" else clip_frames
        return SoSVideoFeatures(video_embeds=video, frame_embeds=F.normalize(frames, dim=-1), frame_mask=frame_mask)

    def get_audio_features(self, input_values: torch.Tensor) -> SoSAudioFeatures:
        """AST on fbank features: f_a (first token) and f_as (the rest, or time tokens), projected and normalised.

        Args:
            input_values: `(batch, max_length, num_mel_bins)` for one crop per story, or
                `(batch, num_crops, max_length, num_mel_bins)` (processor's `audio_crops=K`): f_a is then the
                normalised mean of the crops' f_a, and f_as the crops' tokens one after the other.
        """
        audio_config = self.config.audio_config
        if input_values.dim() == 3:
            input_values = input_values.unsqueeze(1)
        expected = (audio_config.max_length, audio_config.num_mel_bins)
        if input_values.dim() != 4 or tuple(input_values.shape[2:]) != expected:
            raise ValueError(
                f"input_values must have shape (batch, {expected[0]}, {expected[1]}) or (batch, crops, {expected[0]}, {expected[1]}), "
                f"got {tuple(input_values.shape)}"
            )
        return self.audio_features_from_states(*self.audio_encoder_states(input_values))

    def audio_encoder_states(self, input_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """AST's output before the projection: the first token `(batch, crops, hidden)` and the audio
        sequence tokens `(batch, crops, num_tokens, hidden)` (after `audio_token_pooling`).

        With frozen AST, training caches these and calls only `audio_features_from_states`.
        """
        batch, crops = input_values.shape[:2]
        hidden = self.audio_model(input_values=input_values.flatten(0, 1)).last_hidden_state
        if self.config.audio_token_pooling == "frequency":
            freq, time = self.audio_model.embeddings.get_shape(self.config.audio_config)
            # Patch tokens are frequency-major (AST flattens its (frequency, time) patch grid).
            tokens = hidden[:, 2:].unflatten(1, (freq, time)).mean(dim=1)
        else:
            tokens = hidden[:, 1:]
        return hidden[:, 0].view(batch, crops, -1), tokens.view(batch, crops, *tokens.shape[1:])

    def audio_features_from_states(self, first_token: torch.Tensor, tokens: torch.Tensor) -> SoSAudioFeatures:
        """The part of `get_audio_features` after AST: the projection, normalisation and crop averaging."""
        cls = F.normalize(self.audio_projection(first_token), dim=-1)
        tokens = F.normalize(self.audio_projection(tokens.flatten(1, 2)), dim=-1)
        # The crops' tokens one after the other; f_a is the normalised mean of the crops' first tokens.
        return SoSAudioFeatures(audio_embeds=F.normalize(cls.mean(dim=1), dim=-1), audio_token_embeds=tokens)

    # ---------------------------------------------------------------- similarity

    def similarity(
        self,
        audio_features: SoSAudioFeatures,
        other_features: SoSVideoFeatures | SoSTextFeatures,
        *,
        chunk_size: int | None = None,
        return_components: bool = False,
        progress: bool = False,
    ) -> torch.Tensor | SoSSimilarityOutput:
        """Sim between every audio and every video (or text), before the logit scale: `(num_audio, num_other)`.

        Computed in blocks of `chunk_size` (default `config.similarity_chunk_size`, else automatic); see
        `multi_grained_similarity`.
        """
        if isinstance(other_features, SoSVideoFeatures):
            target, target_tokens, mask = (
                other_features.video_embeds,
                other_features.frame_embeds,
                other_features.frame_mask,
            )
        elif isinstance(other_features, SoSTextFeatures):
            target, target_tokens, mask = (
                other_features.text_embeds,
                other_features.word_embeds,
                other_features.attention_mask,
            )
        else:
            raise TypeError(
                f"other_features must be SoSVideoFeatures or SoSTextFeatures, got {type(other_features).__name__}"
            )
        return multi_grained_similarity(
            audio_features.audio_embeds,
            audio_features.audio_token_embeds,
            target,
            target_tokens,
            mask if self.config.mask_padded_frames else None,
            temperature=self.config.temperature,
            chunk_size=chunk_size if chunk_size is not None else self.config.similarity_chunk_size,
            return_components=return_components,
            progress=progress,
        )

    # ------------------------------------------------------------------- loading

    @classmethod
    def from_encoders(
        cls,
        clip: str = "openai/clip-vit-base-patch32",  # core.model_ids.CLIP: remote code imports no package
        audio: str = "MIT/ast-finetuned-audioset-10-10-0.4593",  # core.model_ids.AST
        **config_kwargs: Any,
    ) -> "SoSRetrievalModel":
        """Build the model from pretrained CLIP and AST checkpoints (Hub ids or local folders).

        CLIP (with its logit scale) and AST are copied as they are. The temporal encoder starts from
        the first `temporal_num_layers` layers of the CLIP text transformer and the frame positions
        from CLIP's text position embeddings, as X-CLIP initialises them (when the widths match).
        The audio projection is new.

        Args:
            clip: a `CLIPModel` checkpoint.
            audio: an AST checkpoint (`ASTModel` or `ASTForAudioClassification`; the classifier is dropped).
            config_kwargs: other `SoSRetrievalConfig` fields (`audio_token_pooling`, `frame_features`, ...).
        """
        clip_model = CLIPModel.from_pretrained(clip)
        audio_model = ASTModel.from_pretrained(audio)
        config = SoSRetrievalConfig(clip_config=clip_model.config, audio_config=audio_model.config, **config_kwargs)
        model = cls(config)
        model.clip.load_state_dict(clip_model.state_dict())
        model.audio_model.load_state_dict(audio_model.state_dict())
        if not model.init_temporal_encoder_from_clip_text():
            logger.warning(
                "The temporal encoder keeps its random initialisation: copying CLIP text layers needs the text width to equal "
                "projection_dim, at least temporal_num_layers text layers and at least max_frames text positions."
            )
        return model

    @torch.no_grad()
    def init_temporal_encoder_from_clip_text(self) -> bool:
        """X-CLIP's initialisation: temporal layer i <- CLIP text layer i, frame positions <- text positions.

        Returns `False` (and leaves the random initialisation) when the shapes do not allow it.
        """
        text = self.clip.text_model
        layers = self.temporal_encoder.layers
        text_config = self.config.clip_config.text_config
        fits = (
            text_config.hidden_size == self.config.projection_dim
            and text_config.intermediate_size == self.temporal_encoder.layer_config.intermediate_size
            and text_config.num_attention_heads == self.temporal_encoder.layer_config.num_attention_heads
            and len(text.encoder.layers) >= len(layers)
            and text.embeddings.position_embedding.num_embeddings >= self.config.max_frames
        )
        if not fits:
            return False
        for target, source in zip(layers, text.encoder.layers):
            target.load_state_dict(source.state_dict())
        positions = text.embeddings.position_embedding.weight[: self.config.max_frames]
        self.temporal_encoder.frame_position_embeddings.weight.copy_(positions)
        return True


__all__ = [
    "SIMILARITY_BLOCK_BYTES",
    "ClipGlobalRetrievalMixin",
    "RetrievalForwardMixin",
    "SoSAudioFeatures",
    "SoSRetrievalModel",
    "SoSRetrievalOutput",
    "SoSRetrievalPreTrainedModel",
    "SoSSimilarityOutput",
    "SoSTextFeatures",
    "SoSVideoFeatures",
    "clip_frame_embeddings",
    "contrastive_loss",
    "crop_pooled_embeds",
    "default_chunk_size",
    "global_similarity",
    "masked_mean_pool",
    "multi_grained_similarity",
]
