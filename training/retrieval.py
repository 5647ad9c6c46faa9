"""Contrastive training of the retrieval models (paper section 4.1.2), run by `accelerate launch train/retrieval.py`.

The loop follows diffusers' training examples (Accelerator, gradient accumulation, `save_state` checkpoints,
`--resume_from_checkpoint latest`, a tracker, a model card) and X-CLIP / CLIP4Clip for the retrieval parts:

- Negatives come from the global batch. Each process's features are gathered from every process; the local
  part keeps its gradient. Unlike CLIP4Clip's `AllGather` (whose backward returns only the local slice of the
  gradient, so DDP's average makes every gradient 1/world_size of the full-batch one), the backward here sums the
  gradient over processes first, so two processes with batch 64 give exactly the loss AND the gradients of one
  process with batch 128.
- `--grad_cache` (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup"):
  features of the whole batch are computed without autograd in chunks, the loss and its gradient with respect to
  the features are computed once, then each chunk is re-encoded with autograd (same random state) and
  back-propagated with its slice of that gradient. The gradients equal the full batch's.
- `--freeze_encoders --feature_cache DIR`: CLIP and AST are frozen and their outputs for every story are computed
  once and stored, so each step runs only the temporal encoder, the audio projection and the similarity.
- No model selection on the test split. With `--selection validation` (the default when a test split is
  evaluated) a validation split is carved from the training stories by movie, with the builder's split rule
  (`dataset_builder.build.split_by_movie`, `--validation_size`); every epoch it is encoded with the evaluation
  protocol (`sound_of_story.evaluation.retrieval`) and ranked in every direction of the pair, the best epoch by
  `--best_metric` is kept in `OUTPUT/best`, and that epoch is the saved model. `--selection last` is the protocol
  as the paper states it (section 4.1.2: a fixed number of epochs, no selection named; the last model). Either way the test split (`--eval_split`) is
  read once, after training, to evaluate the saved model: the figures of its card.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from sound_of_story.core import model_ids
from sound_of_story.core.atomic_files import atomic_path, write_json_atomic
from sound_of_story.core.hashing import model_fingerprint
from sound_of_story.evaluation.retrieval import (
    AUDIO_INPUTS,
    PAIR_COLUMNS,
    TEXT_INPUTS,
    VIDEO_INPUTS,
    Pair,
    check_pair,
    encode_stories,
    processor_fingerprint,
    retrieval_figures,
)
from sound_of_story.modeling import (
    MODEL_KINDS,
    ModelKind,
    SoSAudioFeatures,
    SoSRetrievalModel,
    SoSTextFeatures,
    SoSVideoFeatures,
    contrastive_loss,
)

from .arguments import (
    ORIGINAL_FORMAT_KINDS,
    RetrievalTrainingArguments,
    build_parser,
    parse_arguments,
    training_settings,
)
from .checkpointing import resolve_resume_checkpoint
from .loop import TrainingRun, apply_gradients, broadcast_from_main, build_accelerator, plan_schedule

logger = logging.getLogger(__name__)

# Parameter-name prefixes of the pretrained encoders (the lower learning rate; frozen by --freeze_encoders).
# SoS and Wav2CLIP: CLIP and AST (their audio_projection is new); CLAP: every tower and projection.
SOS_ENCODER_PREFIXES = ("clip.", "audio_model.")
TEXT_TOWER_PREFIXES = ("clip.text_model.", "clip.text_projection.")  # what --train_text_encoder keeps trainable
CLAP_ENCODER_PREFIXES = ("text_model.", "audio_model.", "text_projection.", "audio_projection.")
LOWER_IS_BETTER = ("MdR", "MnR")
DESCRIPTION = (
    "Train a Sound of Story retrieval model (paper section 4.1.2) on a built SoS dataset.\n"
    "Run with `accelerate launch train/retrieval.py ...` (one or more processes; negatives come from the global batch)."
)


# --------------------------------------------------------------------------- arguments


def build_retrieval_parser():
    """`train/retrieval.py`'s `HfArgumentParser`: one flag per field of `RetrievalTrainingArguments`."""
    return build_parser(RetrievalTrainingArguments, DESCRIPTION)


def parse_retrieval_args(argv: list[str] | None = None) -> RetrievalTrainingArguments:
    """`train/retrieval.py`'s flags (default: this process's) as `RetrievalTrainingArguments`; a value out of range
    raises ValueError naming its flag."""
    return parse_arguments(RetrievalTrainingArguments, DESCRIPTION, argv)


# --------------------------------------------------------------------------- data


@dataclass
class RetrievalSplits:
    """The stories a run trains on, selects on (None with `--selection last`) and tests on once at the end (None
    with `--eval_split none`)."""

    train: Any
    validation: Any | None
    test: Any | None
    validation_movies: int = 0


def load_retrieval_splits(
    dataset: str, pair: str, train_split: str, eval_split: str | None, config: str | None = None,
    validation_size: float | None = None,
) -> RetrievalSplits:  # fmt: skip
    """The training, validation and test splits of a built SoS dataset, checked for the pair's columns. With
    `validation_size` the validation split is carved from the training split by movie (`carve_validation_split`).

    Raises:
        FileNotFoundError: `dataset` is neither a folder nor a reachable Hub dataset.
        ValueError: a split is missing or empty, or lacks the pair's columns; the validation split cannot be carved.
    """
    import datasets

    try:
        splits = datasets.load_dataset(dataset, config) if config else datasets.load_dataset(dataset)
    except (FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as error:
        raise FileNotFoundError(
            f"--dataset {dataset}: not a built SoS folder or a reachable Hub dataset ({error})"
        ) from error
    except ValueError as error:  # e.g. `Instruction "train" corresponds to no data!` for a split with no rows
        raise ValueError(
            f"--dataset {dataset} could not be loaded ({error}): a split is empty or the config is unknown"
        ) from error
    wanted = [train_split] + ([eval_split] if eval_split else [])
    result = []
    for name in wanted:
        if name not in splits:
            raise ValueError(f"--dataset {dataset} has no split {name!r} (it has {sorted(splits)})")
        split = splits[name]
        missing = [c for c in ("id", *PAIR_COLUMNS[pair]) if c not in split.column_names]
        if missing:
            raise ValueError(
                f"--dataset {dataset} split {name!r} has no column(s) {missing} for {pair}; it has {split.column_names} "
                "(use the SoS stories config)"
            )
        if len(split) == 0:
            raise ValueError(f"--dataset {dataset} split {name!r} is empty")
        if name == train_split and len(split) < 2:
            raise ValueError(
                f"--dataset {dataset} split {name!r} has {len(split)} story: contrastive training needs at least 2"
            )
        result.append(split)
    train, validation, movies = result[0], None, 0
    if validation_size is not None:
        train, validation, movies = carve_validation_split(
            train, validation_size, f"--dataset {dataset} split {train_split!r}"
        )
    columns = ["id", *PAIR_COLUMNS[pair]]
    return RetrievalSplits(
        train=train.select_columns(columns),
        validation=validation.select_columns(columns) if validation is not None else None,
        test=result[1].select_columns(columns) if eval_split else None,
        validation_movies=movies,
    )


def carve_validation_split(stories, size: float, name: str):
    """`stories` split into (training stories, validation stories, number of validation movies), whole movies at a
    time: the builder's rule for its test split (`dataset_builder.build.split_by_movie`: movies in the order of a hash
    of their name until the validation split holds `size` stories, a share when < 1, a count otherwise), so the
    carve is deterministic and the same on every machine and process."""
    from sound_of_story.dataset_builder.build import split_by_movie

    if "movie" not in stories.column_names:
        raise ValueError(
            f"{name} has no 'movie' column to carve a validation split by movie (use --selection last, the protocol as "
            "the paper states it, or a SoS stories config)"
        )
    ids, movies = stories["id"], stories["movie"]
    part = split_by_movie(list(zip(ids, movies)), size)
    validation = [i for i, story_id in enumerate(ids) if part[story_id] == "test"]
    train = [i for i, story_id in enumerate(ids) if part[story_id] == "train"]
    if not validation:
        raise ValueError(
            f"{name} holds {len(set(movies))} movie(s): a validation split by movie needs at least two (use --selection "
            "last, the protocol as the paper states it)"
        )
    if len(train) < 2:
        raise ValueError(
            f"{name}: after the validation split ({len(validation)} stories) {len(train)} story is left to train on, "
            "contrastive training needs at least 2 (lower --validation_size, or --selection last)"
        )
    return stories.select(train), stories.select(validation), len({movies[i] for i in validation})


class IndexedStories(torch.utils.data.Dataset):
    """A `datasets.Dataset` whose items carry their index (the random audio crop is seeded by it)."""

    def __init__(self, stories):
        self.stories = stories

    def __len__(self) -> int:
        return len(self.stories)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.stories[index]


def crop_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The random source of one story's training crop: fixed by (seed, epoch, story), so the crop does not depend
    on the batch it lands in, the number of processes, or a resume."""
    digest = hashlib.sha256(f"{seed}:{epoch}:{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


@dataclass
class StoryCollator:
    """Rows of the stories split into model inputs: a random audio window per story for training (section 4.1.2),
    40 frames or 77 tokens. `epoch` is set by the loop before each epoch."""

    processor: Any
    pair: str
    seed: int
    epoch: int = 0

    def __call__(self, items: list[tuple[int, dict]]) -> dict[str, torch.Tensor]:
        other = PAIR_COLUMNS[self.pair][1]
        batch = dict(self.processor(**{other: [row[other] for _, row in items]}))
        per_story = [
            self.processor(
                audio=row["audio"], audio_crop="random", generator=crop_generator(self.seed, self.epoch, index)
            )
            for index, row in items
        ]
        for key in per_story[0]:
            batch[key] = torch.cat([inputs[key] for inputs in per_story])
        return batch


# --------------------------------------------------------------------------- model


def build_retrieval_model(args: RetrievalTrainingArguments):
    """The model and processor to train: a saved one (``--init_from``, or CLAP's default checkpoint for
    ``--model clap``) through the package's one loader, or a new one built from ``--clip_model``/``--audio_model``."""
    from sound_of_story.modeling import SoSRetrievalProcessor, Wav2CLIPBaselineModel, load_retrieval_model

    if args.model in ORIGINAL_FORMAT_KINDS and not args.init_from:
        return original_baseline(args)
    source = args.init_from or (model_ids.CLAP if args.model == "clap" else None)
    if source:
        try:
            loaded = load_retrieval_model(source, expected_kind=args.model, eval_mode=False)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"--init_from: cannot load the {args.model} model ({error})") from error
        return loaded.model, loaded.processor
    try:
        processor = SoSRetrievalProcessor.from_encoders(clip=args.clip_model, audio=args.audio_model)
        if args.model == "sos":
            return SoSRetrievalModel.from_encoders(clip=args.clip_model, audio=args.audio_model), processor
        return Wav2CLIPBaselineModel.from_encoders(clip=args.clip_model), processor
    except OSError as error:  # a missing folder, or a Hub id that cannot be reached or has no such files
        raise FileNotFoundError(
            f"--clip_model/--audio_model: cannot load the {args.model} encoders ({error})"
        ) from error


def original_checkpoint(args: RetrievalTrainingArguments) -> str:
    """The released checkpoint a --model wav2clip_original / msclap run starts from (path or URL)."""
    default = model_ids.WAV2CLIP_CHECKPOINT if args.model == "wav2clip_original" else model_ids.MSCLAP_CHECKPOINT
    return args.original_checkpoint or default


def original_baseline(args: RetrievalTrainingArguments):
    """Table 2's baselines as the paper runs them, "fine-tuned ... from their pretrained weights" (section 4.1.3):
    Wav2CLIP's released audio encoder beside a frozen CLIP (Wav2CLIP's own design: the audio is trained into CLIP's
    space), or Microsoft CLAP 2022, from their original checkpoint files."""
    from sound_of_story.modeling import (
        MSClapModel,
        MSClapProcessor,
        Wav2CLIPOriginalModel,
        Wav2CLIPOriginalProcessor,
    )

    checkpoint = original_checkpoint(args)
    try:
        if args.model == "wav2clip_original":
            model = Wav2CLIPOriginalModel.from_original_checkpoint(checkpoint, clip=args.clip_model)
            return model, Wav2CLIPOriginalProcessor.from_encoders(clip=args.clip_model)
        model = MSClapModel.from_original_checkpoint(checkpoint)
        return model, MSClapProcessor.from_encoders(model_ids.MSCLAP_TEXT_MODEL)
    except OSError as error:  # a missing file, an unreachable URL or Hub id
        raise FileNotFoundError(f"--original_checkpoint: cannot load the {args.model} baseline ({error})") from error


def base_models(args: RetrievalTrainingArguments) -> list[str]:
    """What the weights started from, for the model card."""
    if args.init_from:
        return [args.init_from]
    if args.model == "clap":
        return [model_ids.CLAP]
    if args.model == "wav2clip_original":
        return [original_checkpoint(args), args.clip_model]
    if args.model == "msclap":
        return [original_checkpoint(args), model_ids.MSCLAP_TEXT_MODEL]
    return [args.clip_model] + ([args.audio_model] if args.model == "sos" else [])


def _encoder_prefixes(model: nn.Module) -> tuple[str, ...]:
    """The parameter-name prefixes of a model's pretrained encoders (the lower learning rate; --freeze_encoders):
    what the model class declares (the original-format baselines), else CLAP's or SoS's towers."""
    from transformers import ClapModel

    declared = getattr(model, "encoder_parameter_prefixes", None)
    if declared:
        return tuple(declared)
    return CLAP_ENCODER_PREFIXES if isinstance(model, ClapModel) else SOS_ENCODER_PREFIXES


def is_encoder_parameter(model: nn.Module, name: str) -> bool:
    """Whether parameter `name` belongs to a pretrained encoder (not the logit scale, which is trained at its rate)."""
    return name.startswith(_encoder_prefixes(model)) and not name.endswith("logit_scale")


def freeze_for_pair(model: nn.Module, pair: str, freeze_encoders: bool, train_text_encoder: bool = False) -> None:
    """Freeze what the pair never uses (the text tower for audio-video, the vision side for audio-text), so every
    trainable parameter gets a gradient in every step (DDP requires it), and the encoders with --freeze_encoders,
    except CLIP's text tower and projection with ``train_text_encoder`` (audio-text)."""
    clip = getattr(model, "clip", None)
    if clip is not None:
        unused = (
            [clip.text_model, clip.text_projection]
            if pair == "audio-video"
            else [clip.vision_model, clip.visual_projection]
        )
        for module in unused:
            module.requires_grad_(False)
    if pair == "audio-text" and hasattr(model, "temporal_encoder"):
        model.temporal_encoder.requires_grad_(False)
    if freeze_encoders:
        for name, parameter in model.named_parameters():
            if is_encoder_parameter(model, name):
                parameter.requires_grad_(False)
    if train_text_encoder:
        if pair != "audio-text" or clip is None:
            raise ValueError("train_text_encoder trains the CLIP text tower of an audio-text SoS model")
        for module in (clip.text_model, clip.text_projection):
            module.requires_grad_(True)


def optimizer_groups(
    model: nn.Module, learning_rate: float, encoder_learning_rate: float, weight_decay: float
) -> list[dict]:
    """AdamW groups as X-CLIP's release (main_xclip.py): pretrained encoders at the lower rate, new layers at the base rate; no weight decay on
    biases, norms, embeddings and the logit scale."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        encoder = is_encoder_parameter(model, name)
        no_decay = parameter.ndim < 2 or "norm" in name.lower() or "embedding" in name or name.endswith("logit_scale")
        groups.setdefault((encoder, no_decay), []).append(parameter)
    return [
        {
            "params": params,
            "lr": encoder_learning_rate if encoder else learning_rate,
            "weight_decay": 0.0 if no_decay else weight_decay,
        }
        for (encoder, no_decay), params in sorted(groups.items())
    ]


# --------------------------------------------------------------------------- features and loss


AUDIO_KEYS = ("audio_embeds", "audio_token_embeds")
OTHER_KEYS = {
    "audio-video": ("video_embeds", "frame_embeds", "frame_mask"),
    "audio-text": ("text_embeds", "word_embeds", "attention_mask"),
}
OTHER_CLASS = {"audio-video": SoSVideoFeatures, "audio-text": SoSTextFeatures}


def features_to_tensors(
    audio: SoSAudioFeatures, other: SoSVideoFeatures | SoSTextFeatures, pair: str
) -> dict[str, torch.Tensor]:
    """The feature grains as a flat dict of tensors (absent grains left out): what is gathered and grad-cached."""
    out = {k: getattr(audio, k) for k in AUDIO_KEYS if getattr(audio, k) is not None}
    out.update({k: getattr(other, k) for k in OTHER_KEYS[pair] if getattr(other, k, None) is not None})
    return out


def tensors_to_features(tensors: dict[str, torch.Tensor], pair: str) -> tuple[SoSAudioFeatures, Any]:
    audio = SoSAudioFeatures(**{k: tensors[k] for k in AUDIO_KEYS if k in tensors})
    other = OTHER_CLASS[pair](**{k: tensors[k] for k in OTHER_KEYS[pair] if k in tensors})
    return audio, other


def in_model_dtype(inputs: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The floating inputs in the dtype of `model`'s weights (the processor gives float32; a model may be float64, as
    in the two-process test, or bfloat16); masks and token ids as they are."""
    dtype = next(model.parameters()).dtype
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}


class RetrievalEncoder(nn.Module):
    """The trained part of one step as a module (what `accelerator.prepare` wraps in DDP): inputs to the feature
    tensors of the pair and the logit scale. With `cached=True` the inputs are the frozen encoders' stored outputs."""

    def __init__(self, model: nn.Module, pair: str, cached: bool = False):
        super().__init__()
        self.model = model
        self.pair = pair
        self.cached = cached

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        model = self.model
        batch = in_model_dtype(batch, model)
        if self.cached:
            audio = model.audio_features_from_states(batch["audio_first_token"], batch["audio_tokens"])
            if self.pair == "audio-video":
                other = model.video_features_from_clip_frames(batch["clip_frames"], batch["frame_mask"])
            elif "input_ids" in batch:  # the text tower trains (--train_text_encoder): only AST's outputs are cached
                other = model.get_text_features(batch["input_ids"], batch["attention_mask"])
            else:
                other = SoSTextFeatures(
                    text_embeds=batch["text_embeds"],
                    word_embeds=batch["word_embeds"],
                    attention_mask=batch["attention_mask"],
                )
        else:
            audio = model.get_audio_features(**{k: batch[k] for k in AUDIO_INPUTS if k in batch})
            if self.pair == "audio-video":
                other = model.get_video_features(**{k: batch[k] for k in VIDEO_INPUTS if k in batch})
            else:
                other = model.get_text_features(**{k: batch[k] for k in TEXT_INPUTS if k in batch})
        out = features_to_tensors(audio, other, self.pair)
        out["scale"] = model.scale()
        return out


class _GatherWithGradient(torch.autograd.Function):
    """all_gather whose backward all-reduces (sums) the gradient of the gathered tensor and returns this process's
    slice: every process computes the same global loss, so the local features' gradient is the sum of its
    contributions on every process. DDP then averages over processes, which makes the parameters' gradients
    exactly the single-process full-batch ones."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.batch = dist.get_rank(), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.batch : (ctx.rank + 1) * ctx.batch]


def gather_with_gradient(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's `tensor` concatenated in rank order; the local part keeps its gradient (see above)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    return _GatherWithGradient.apply(tensor)


def global_contrastive_loss(model: nn.Module, tensors: dict[str, torch.Tensor], pair: str) -> torch.Tensor:
    """Symmetric InfoNCE over the global batch: the features of every process gathered, `scale x Sim`."""
    gathered = {k: gather_with_gradient(v) for k, v in tensors.items() if k != "scale"}
    audio, other = tensors_to_features(gathered, pair)
    return contrastive_loss(tensors["scale"] * model.similarity(audio, other))


class _RandomStateContext:
    """Captures the CPU (and current CUDA device's) random state, to replay a chunk's forward identically
    (GradCache's RandContext)."""

    def __init__(self):
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None

    def __enter__(self):
        self._saved = (torch.get_rng_state(), torch.cuda.get_rng_state() if self.cuda is not None else None)
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda)

    def __exit__(self, *exc):
        torch.set_rng_state(self._saved[0])
        if self.cuda is not None:
            torch.cuda.set_rng_state(self._saved[1])


def _chunk(batch: dict[str, torch.Tensor], start: int, size: int) -> dict[str, torch.Tensor]:
    return {k: v[start : start + size] for k, v in batch.items()}


def grad_cached_backward(
    encoder: nn.Module, model: nn.Module, batch: dict[str, torch.Tensor], pair: str, chunk_size: int,
    loss_scale: float = 1.0, no_sync=None,
) -> torch.Tensor:  # fmt: skip
    """One gradient-cached backward pass over `batch` (gradients accumulate into the parameters).

    1. Encode the batch in chunks of `chunk_size` without autograd, saving each chunk's random state.
    2. Compute the global loss on the detached features and its gradient with respect to them (and the scale).
    3. Re-encode each chunk with autograd under its saved random state and back-propagate its slice of the
       feature gradient. `no_sync(encoder)` (the Accelerator's) skips DDP's all-reduce on all chunks but the last.

    Returns the (unscaled) loss.
    """
    size = next(iter(batch.values())).shape[0]
    starts = range(0, size, chunk_size)
    states, outputs = [], []
    with torch.no_grad():
        for start in starts:
            states.append(_RandomStateContext())
            outputs.append(encoder(**_chunk(batch, start, chunk_size)))
    leaves = {k: torch.cat([o[k] for o in outputs]).detach() for k in outputs[0] if k != "scale"}
    for value in leaves.values():
        if value.is_floating_point():
            value.requires_grad_(True)
    scale = outputs[0]["scale"].detach().requires_grad_(True)
    loss = global_contrastive_loss(model, {**leaves, "scale": scale}, pair)
    (loss * loss_scale).backward()
    for i, start in enumerate(starts):
        last = i == len(starts) - 1
        with nullcontext() if last or no_sync is None else no_sync(encoder), states[i]:
            out = encoder(**_chunk(batch, start, chunk_size))
            tensors = [out[k] for k, v in leaves.items() if v.grad is not None]
            grads = [v.grad[start : start + chunk_size] for v in leaves.values() if v.grad is not None]
            # The scale is an output of every chunk's forward; its gradient is given once.
            tensors.append(out["scale"])
            grads.append(scale.grad if i == 0 else torch.zeros_like(scale.grad))
            torch.autograd.backward(tensors, grads)
    return loss.detach()


# --------------------------------------------------------------------------- frozen-encoder feature cache


@torch.no_grad()
def frozen_encoder_features(
    model: SoSRetrievalModel,
    processor,
    stories,
    pair: str,
    cache_dir: str | Path,
    batch_size: int = 8,
    text_inputs: bool = False,
) -> dict:
    """CLIP and AST outputs of every story (evaluation crop: the window of most energy, this package's reading of the
    paper's "information-rich area"), computed once and stored in
    `cache_dir` under a key of the frozen weights, the processor, the pair and the stories' fingerprint.

    With ``text_inputs`` (audio-text, `--train_text_encoder`) the text tower trains, so its token ids and attention
    mask are stored in place of its outputs, and its weights are not part of the key."""
    if text_inputs and pair != "audio-text":
        raise ValueError("text_inputs stores the token ids of the audio-text pair")

    def frozen(name: str) -> bool:
        return is_encoder_parameter(model, name) and not (text_inputs and name.startswith(TEXT_TOWER_PREFIXES))

    fingerprint = f"{model_fingerprint(model, include=frozen)[:16]}:{processor_fingerprint(processor)}:{pair}"
    fingerprint += ":text-inputs" if text_inputs else ""
    key = hashlib.sha256(f"{fingerprint}:{stories._fingerprint}".encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"features-{key}.pt"
    if path.exists():
        # weights_only=True passed explicitly: the cache folder may be shared, and an implicit default can be turned
        # off (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD), which would make torch.load run a planted pickle's code.
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - a file this code did not write: say which, and how to go on
            raise ValueError(
                f"--feature_cache: {path.name} in {cache_dir} does not load with torch.load(weights_only=True) "
                f"({type(error).__name__}); it was not written by this package or is damaged. Delete it to compute "
                "the features again"
            ) from None
    device = next(model.parameters()).device
    parts: dict[str, list[torch.Tensor]] = {}
    was_training = model.training
    model.eval()
    other = PAIR_COLUMNS[pair][1]
    for start in tqdm(range(0, len(stories), batch_size), desc="frozen-encoder features", leave=False):
        rows = stories[start : start + batch_size]
        inputs = {k: v.to(device) for k, v in processor(audio=rows["audio"], **{other: rows[other]}).items()}
        inputs = in_model_dtype(inputs, model)
        first, tokens = model.audio_encoder_states(inputs["input_values"].unsqueeze(1))  # one crop per story
        values = {"audio_first_token": first, "audio_tokens": tokens}
        if pair == "audio-video":
            from sound_of_story.modeling.modeling_sos import clip_frame_embeddings

            values["clip_frames"], values["frame_mask"] = clip_frame_embeddings(
                model.clip, inputs["pixel_values"], inputs["frame_mask"]
            )
        elif text_inputs:
            values.update(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        else:
            text = model.get_text_features(inputs["input_ids"], inputs["attention_mask"])
            values.update(
                text_embeds=text.text_embeds, word_embeds=text.word_embeds, attention_mask=text.attention_mask
            )
        for name, value in values.items():
            parts.setdefault(name, []).append(value.cpu())
    model.train(was_training)
    features = {name: torch.cat(values) for name, values in parts.items()}
    with atomic_path(path) as tmp:
        torch.save(features, tmp)
    return features


class CachedFeatureStories(torch.utils.data.Dataset):
    """Items of the stored frozen-encoder features (collated by `torch.utils.data.default_collate`)."""

    def __init__(self, features: dict[str, torch.Tensor]):
        self.features = features

    def __len__(self) -> int:
        return next(iter(self.features.values())).shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.features.items()}


# --------------------------------------------------------------------------- evaluation and outputs


def evaluate_retrieval(
    model, processor, stories, pair: str, batch_size: int, cache_dir: str | None
) -> dict[str, dict[str, Any]]:
    """Table 2's figures of the pair's directions on `stories` (the section-4.1.2 evaluation protocol)."""
    embeddings = encode_stories(
        model, processor, stories, pair=pair, batch_size=batch_size, cache_dir=cache_dir, progress=False
    )
    return retrieval_figures(model, embeddings)


def flat_figures(figures: dict[str, dict[str, Any]]) -> dict[str, float]:
    """`{"A2V/R@1": 12.5, ...}` for the tracker."""
    return {
        f"{d}/{k}": float(v)
        for d, fig in figures.items()
        for k, v in fig.items()
        if k in ("R@1", "R@5", "R@10", "MdR", "MnR")
    }


def eval_results(figures: dict[str, float], dataset: str, split: str) -> list:
    """The figures as `huggingface_hub.EvalResult`s for the card's model-index."""
    from huggingface_hub import EvalResult

    return [
        EvalResult(
            task_type="audio-retrieval",
            task_name="Story audio retrieval",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split=split,
            metric_type=name.split("/")[1].lower(),
            metric_name=name,
            metric_value=value,
        )  # fmt: skip
        for name, value in sorted(figures.items())
    ]


SELECTION_FILE = "selection.json"
VALIDATION_SPLIT = "validation"


def _figures_text(figures: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in sorted(figures.items()))


def protocol_description(
    args: RetrievalTrainingArguments, splits: RetrievalSplits, selected: dict | None, final: bool
) -> str:
    """How the model was chosen and evaluated, for its card: the selection and, for the final model, the test."""
    epochs = f"--max_train_steps {args.max_train_steps}" if args.max_train_steps else f"{args.num_train_epochs} epochs"
    if args.selection == "last":
        chosen = (
            f"Model selection: none. A fixed run ({epochs}), and this is its last model: the protocol as the paper "
            "states it (section 4.1.2: 100 epochs; it names no validation split or selection)."
        )
    else:
        chosen = (
            f"Model selection: every epoch was evaluated on a validation split of {len(splits.validation)} stories "
            f"({splits.validation_movies} movie(s)) carved by movie from the training split '{args.train_split}' "
            f"(`--validation_size {args.validation_size:g}`, the dataset builder's split rule; the model trained on the "
            f"other {len(splits.train)}), and the epoch with the best {args.best_metric} on it is this model"
        )
        if selected:
            chosen += (
                f": step {selected['step']} (epoch {selected['epoch'] + 1}; {_figures_text(selected['figures'])})."
            )
        else:
            chosen += "."
    if not final:
        return chosen + " The figures below are the validation split's."
    if splits.test is None:
        return chosen + " No test split was evaluated (`--eval_split none`)."
    tested = (
        f" The test split '{args.eval_split}' ({len(splits.test)} stories) was evaluated once, after training, on this "
        "model: the figures below."
    )
    return chosen + tested + (" It took no part in choosing it." if args.selection == "validation" else "")


def save_retrieval_model(
    model, processor, out_dir: str | Path, args: RetrievalTrainingArguments, figures: dict[str, float] | None,
    split: str | None = None, protocol: str = "",
) -> None:  # fmt: skip
    """`save_pretrained` of the model and processor, and the model card (README.md: `figures` on `split` as its
    model-index, `protocol` said in words), into `out_dir`."""
    from sound_of_story.cards import build_model_card

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    card = build_model_card(
        library_name="transformers", base_models=base_models(args), dataset=args.dataset, pipeline_tag="feature-extraction",
        tags=["audio-retrieval", args.pair, args.model], command=args.launch_command(), training_settings=training_settings(args),
        eval_results=eval_results(figures, args.dataset, split) if figures else None,
        model_name=args.hub_model_id.split("/")[-1] if args.hub_model_id else Path(args.output_dir).name,
        description=f"A {type(model).__name__} trained for {args.pair} retrieval with `train/retrieval.py` (Sound of Story, section 4.1.2).\n\n{protocol}",
    )  # fmt: skip
    with atomic_path(out_dir / "README.md") as tmp:
        card.save(tmp)


def evaluate_and_select(
    accelerator, model, processor, splits: RetrievalSplits, args: RetrievalTrainingArguments, global_step: int,
    epoch: int, selected: dict | None,
) -> tuple[dict[str, float], dict | None]:  # fmt: skip
    """An epoch's evaluation of the validation split on the main process (the figures go to the tracker and to
    every process), and `OUTPUT/best` saved, with `selection.json`, when `--best_metric` improves. Returns the
    figures and the selection so far (`{"metric", "value", "step", "epoch", "figures"}`, on the main process)."""

    def evaluate() -> dict[str, float]:
        figures = flat_figures(
            evaluate_retrieval(
                model, processor, splits.validation, args.pair, args.eval_batch_size, args.eval_cache_dir
            )
        )
        accelerator.log({f"{VALIDATION_SPLIT}/{k}": v for k, v in figures.items()}, step=global_step)
        accelerator.print(f"step {global_step} validation: {_figures_text(figures)}")
        return figures

    figures = broadcast_from_main(accelerator, evaluate)
    metric = args.best_metric
    if accelerator.is_main_process and _is_better(figures[metric], selected["value"] if selected else None, metric):
        selected = {
            "metric": metric,
            "value": figures[metric],
            "step": global_step,
            "epoch": epoch,
            "figures": figures,
        }
        best = Path(args.output_dir) / "best"
        save_retrieval_model(
            model,
            processor,
            best,
            args,
            figures,
            VALIDATION_SPLIT,
            protocol_description(args, splits, selected, False),
        )
        write_json_atomic(best / SELECTION_FILE, selected)
    accelerator.wait_for_everyone()
    return figures, selected


def resumed_selection(accelerator, output_dir: str | Path, resumed_step: int) -> dict | None:
    """The selection a resumed run continues from: `best/selection.json` when its step is at most the resumed
    checkpoint's; a later one (a resume from an older checkpoint) is removed with its model, on the main process."""
    if resumed_step == 0:
        return None
    best = Path(output_dir) / "best"
    path = best / SELECTION_FILE
    selected = json.loads(path.read_text()) if path.is_file() else None
    if selected is not None and selected["step"] > resumed_step:
        if accelerator.is_main_process:
            shutil.rmtree(best)
        selected = None
    accelerator.wait_for_everyone()
    return selected


def _is_better(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value < best if metric.split("/")[1] in LOWER_IS_BETTER else value > best


def save_final_model(
    model, processor, args: RetrievalTrainingArguments, splits: RetrievalSplits, selection: dict, outcome: dict
) -> None:
    """The run's model into `--output_dir` (main process): the selected epoch's (`OUTPUT/best`) or the last, then the
    test split evaluated once on it (the card's figures, `outcome["figures"]`)."""
    selected = selection.get("selected")
    if args.selection == "validation" and selected is not None:
        best = type(model).from_pretrained(Path(args.output_dir) / "best")
        model.load_state_dict(best.state_dict())
        del best
    figures = None
    if splits.test is not None:
        figures = flat_figures(
            evaluate_retrieval(model, processor, splits.test, args.pair, args.eval_batch_size, args.eval_cache_dir)
        )
        print(f"test ({args.eval_split}, evaluated once): {_figures_text(figures)}")
    outcome["figures"] = figures
    save_retrieval_model(
        model, processor, args.output_dir, args, figures, args.eval_split,
        protocol_description(args, splits, selected, final=True),
    )  # fmt: skip


@dataclass
class TrainingResult:
    """What a training run returns: steps done, per-step losses, the test figures (evaluated once, at the end, on
    the saved model), the validation figures of the selected epoch and its step, where the model is."""

    global_step: int
    losses: list[float] = field(default_factory=list)
    figures: dict[str, float] | None = None
    validation: dict[str, float] | None = None
    selected_step: int | None = None
    output_dir: str = ""


# --------------------------------------------------------------------------- the loop


def prepare_retrieval_model(args: RetrievalTrainingArguments, train_stories, device):
    """The model and processor to train, checked against the pair's data, with what the run does not train frozen,
    on `device`."""
    model, processor = build_retrieval_model(args)
    check_pair(model, processor, train_stories, args.pair)
    freeze_for_pair(model, args.pair, args.freeze_encoders, args.train_text_encoder)
    model.to(device)
    return model, processor


def training_loader(
    args: RetrievalTrainingArguments, model, processor, train_stories, accelerator
) -> tuple[torch.utils.data.DataLoader, StoryCollator | None]:
    """The shuffled training batches (stories and their random crops, or the frozen encoders' cached outputs with
    `--feature_cache`) and the collator whose epoch sets the crops (None with the cache)."""
    if args.feature_cache:
        with accelerator.main_process_first():
            features = frozen_encoder_features(
                model, processor, train_stories, args.pair, args.feature_cache, args.eval_batch_size,
                text_inputs=args.train_text_encoder,
            )  # fmt: skip
        data, collate, collator = CachedFeatureStories(features), torch.utils.data.default_collate, None
    else:
        collator = StoryCollator(processor, args.pair, args.seed)
        data, collate = IndexedStories(train_stories), collator
    # As X-CLIP's training loaders: an epoch's last partial global batch is dropped (a batch of one story has a
    # contrastive loss of 0 and would still move the weights through AdamW's momentum and weight decay; with several
    # processes accelerate would fill it with repeated stories, which are false negatives). A train split smaller
    # than one global batch is trained on whole, one batch an epoch.
    drop_last = len(data) >= args.train_batch_size * accelerator.num_processes
    loader = torch.utils.data.DataLoader(
        data, batch_size=args.train_batch_size, shuffle=True, collate_fn=collate, num_workers=args.dataloader_num_workers,
        generator=torch.Generator().manual_seed(args.seed), drop_last=drop_last,
    )  # fmt: skip
    return loader, collator


def build_optimizer(model: nn.Module, args: RetrievalTrainingArguments) -> torch.optim.AdamW:
    """AdamW over the trainable parameters in X-CLIP's groups (`optimizer_groups`)."""
    return torch.optim.AdamW(
        optimizer_groups(model, args.learning_rate, args.encoder_learning_rate, args.weight_decay),
        betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon,
    )  # fmt: skip


def contrastive_backward(accelerator, encoder, model, batch, args: RetrievalTrainingArguments) -> torch.Tensor:
    """One batch's global contrastive loss and its backward pass (gradient-cached with `--grad_cache`)."""
    if args.grad_cache:
        return grad_cached_backward(
            encoder, model, batch, args.pair, args.grad_cache_chunk_size,
            loss_scale=1.0 / args.gradient_accumulation_steps, no_sync=accelerator.no_sync,
        )  # fmt: skip
    loss = global_contrastive_loss(model, encoder(**batch), args.pair)
    accelerator.backward(loss)
    return loss


def train_retrieval(args: RetrievalTrainingArguments, accelerator=None) -> TrainingResult:
    """Run `train/retrieval.py` with `args` (parsed by `parse_retrieval_args` or built in Python) in this process.

    Raises ValueError / FileNotFoundError on bad input (the script maps them to exit code 2).
    """
    from accelerate.utils import set_seed

    accelerator = accelerator or build_accelerator(args)
    args = args.resolved(accelerator.num_processes)
    resume_path = resolve_resume_checkpoint(args.output_dir, args.resume_from_checkpoint)
    splits = load_retrieval_splits(
        args.dataset, args.pair, args.train_split, args.held_out_split, args.dataset_config,
        validation_size=args.validation_size if args.selection == "validation" else None,
    )  # fmt: skip
    train_stories = splits.train
    set_seed(args.seed)
    model, processor = prepare_retrieval_model(args, train_stories, accelerator.device)
    loader, collator = training_loader(args, model, processor, train_stories, accelerator)
    encoder = RetrievalEncoder(model, args.pair, cached=collator is None)
    optimizer = build_optimizer(model, args)
    schedule = plan_schedule(
        args, optimizer, len(loader.dataset), accelerator.num_processes, drop_last=loader.drop_last
    )
    encoder, optimizer, loader, scheduler = accelerator.prepare(encoder, optimizer, loader, schedule.scheduler)
    run = TrainingRun(accelerator, args, schedule, scheduler, resume_path, tracker_project="sos-retrieval")
    model = accelerator.unwrap_model(encoder).model
    trained = [p for p in encoder.parameters() if p.requires_grad]
    selection = {"selected": resumed_selection(accelerator, args.output_dir, run.global_step)}
    for epoch in run.epochs():
        encoder.train()
        if collator is not None:
            collator.epoch = epoch
        for _, batch in run.batches(loader, epoch):
            with accelerator.accumulate(encoder):
                loss = contrastive_backward(accelerator, encoder, model, batch, args)
                apply_gradients(accelerator, optimizer, scheduler, trained, args.max_grad_norm)
            run.end_batch(loss)
        if splits.validation is not None:
            _, selection["selected"] = evaluate_and_select(
                accelerator, model, processor, splits, args, run.global_step, epoch, selection["selected"]
            )
    outcome: dict[str, Any] = {}
    run.finish(partial(save_final_model, model, processor, args, splits, selection, outcome))
    selected = selection["selected"]
    return TrainingResult(
        run.global_step, run.losses, outcome.get("figures"), selected["figures"] if selected else None,
        selected["step"] if selected else None, args.output_dir,
    )  # fmt: skip


__all__ = [
    "MODEL_KINDS",
    "ModelKind",
    "Pair",
    "RetrievalEncoder",
    "RetrievalSplits",
    "StoryCollator",
    "TrainingResult",
    "build_retrieval_parser",
    "evaluate_retrieval",
    "frozen_encoder_features",
    "gather_with_gradient",
    "global_contrastive_loss",
    "grad_cached_backward",
    "build_retrieval_model",
    "carve_validation_split",
    "load_retrieval_splits",
    "parse_retrieval_args",
    "train_retrieval",
]
