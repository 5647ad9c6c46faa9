"""What the training scripts accept, as dataclasses parsed by transformers' `HfArgumentParser`.

`CommonTrainingArguments` holds the flags both scripts share, named as in diffusers' training examples;
`RetrievalTrainingArguments` (`train/retrieval.py`) and `SoSgenTrainingArguments` (`train/gen.py`) add their own.
Each field is one `--flag` with its default and help; `__post_init__` rejects values that would fail later with a
ValueError naming the flag, so arguments built in Python are checked like a parsed command line:

    args = RetrievalTrainingArguments(dataset="sos_out/sos", output_dir="runs/av", max_train_steps=100)
    train_retrieval(args)

Values that depend on the run's processes (the retrieval batch per process) are computed by methods, never written
back into the arguments.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from sound_of_story.cards.public import is_secret_name, public_command, public_settings
from sound_of_story.core import model_ids
from sound_of_story.core.help_formatter import HelpFormatter
from sound_of_story.dataset_builder.build_options import PAPER_TEST_SHARE
from sound_of_story.evaluation.retrieval import PAIR_DIRECTIONS, Pair
from sound_of_story.modeling import ModelKind

LrScheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"]
MixedPrecision = Literal["no", "fp16", "bf16"]
Tracker = Literal["tensorboard", "wandb", "comet_ml", "none", "all"]
GenMode = Literal["text", "controlnet", "image"]
Selection = Literal["validation", "last"]
GEN_MODES: tuple[str, ...] = get_args(GenMode)

# Retrieval, section 4.1.2: batch 128 for audio-video, 256 for audio-text, 100 epochs.
PAPER_RETRIEVAL_BATCH_SIZE = {"audio-video": 128, "audio-text": 256}
PAPER_RETRIEVAL_EPOCHS = 100
# Where the paper is silent (section 4.1.2 gives the batch and the epochs only), X-CLIP's release: its run scripts'
# --lr 1e-4 (new layers) and --coef_lr 1e-3 (CLIP at 1e-4 x 1e-3), and main_xclip.py's weight decay 0.2 (not on
# biases and norms) and warmup_proportion 0.1. Its optimiser is BertAdam (betas 0.9/0.98, epsilon 1e-6); this package
# uses torch's AdamW with diffusers' defaults.
NEW_LAYERS_LR = 1e-4
ENCODER_LR = 1e-7
RETRIEVAL_WEIGHT_DECAY = 0.2
RETRIEVAL_FIGURES = ("R@1", "R@5", "R@10", "MdR", "MnR")
# SoSgen, section 4.2.2: batch 1, gradient accumulation 16, lr 1e-6, cosine schedule (no warm-up stated); SoSgen_text
# 406,000 steps, SoSgen_text+image 525,000 more from SoSgen_text, SoSgen_image 525,000 from Riffusion.
PAPER_SOSGEN_BATCH_SIZE = 1
PAPER_SOSGEN_ACCUMULATION = 16
PAPER_SOSGEN_LR = 1e-6
PAPER_SOSGEN_SCHEDULER = "cosine"
PAPER_SOSGEN_STEPS = {"text": 406_000, "controlnet": 525_000, "image": 525_000}
PAPER_SOSGEN_NAMES = {"text": "SoSgen_text", "controlnet": "SoSgen_text+image", "image": "SoSgen_image"}
# What the paper's "steps" count is not stated. "passes": forward/backward passes of one example, 16 to an optimizer
# update (406,000 passes in the reported 2 days on one RTX 3090 is 2.3 a second, a plausible rate for a Stable
# Diffusion UNet; 406,000 updates of 16 passes would be 6.5 million passes, about a month). "updates": optimizer
# updates, as diffusers' --max_train_steps counts them.
PaperSchedule = Literal["passes", "updates"]


# The Table 2 baselines that start from their authors' released checkpoint files (their original formats).
ORIGINAL_FORMAT_KINDS = ("wav2clip_original", "msclap")


def _flag(help: str, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field that `HfArgumentParser` turns into `--name` with this help (no default: a required flag)."""
    return field(default=default, metadata={"help": help})


@dataclass(kw_only=True)
class CommonTrainingArguments:
    """The flags of both training scripts (diffusers' names and meanings). The scripts' classes override the
    defaults that differ (batch, accumulation, learning rate)."""

    script: ClassVar[str] = "train/<script>.py"

    output_dir: str = _flag("where checkpoints, the final model, its card and logs go")
    seed: int = _flag("seed of the data order, initialisation and noise (reproducible runs)", 0)
    train_batch_size: int | None = _flag("batch size per process", 1)
    num_train_epochs: int = _flag("epochs (ignored when --max_train_steps is given)", 100)
    max_train_steps: int | None = _flag("total optimizer steps; overrides --num_train_epochs", None)
    gradient_accumulation_steps: int = _flag("batches per optimizer step", 1)
    learning_rate: float = _flag("peak learning rate", NEW_LAYERS_LR)
    lr_scheduler: LrScheduler = _flag("learning-rate schedule after warm-up", "cosine")
    lr_warmup_steps: int | None = _flag(
        "warm-up steps (default: 10%% of the optimizer updates, X-CLIP's release's warmup_proportion 0.1, for both "
        "scripts; the SoSgen paper states none, and --paper_schedule uses 0)",
        None,
    )
    adam_beta1: float = _flag("AdamW beta1 (torch's and diffusers' default; X-CLIP's BertAdam: 0.9 too)", 0.9)
    adam_beta2: float = _flag("AdamW beta2 (torch's and diffusers' default; X-CLIP's BertAdam: 0.98)", 0.999)
    adam_epsilon: float = _flag("AdamW epsilon (torch's and diffusers' default; X-CLIP's BertAdam: 1e-6)", 1e-8)
    max_grad_norm: float = _flag("gradient clipping norm (0 = no clipping)", 1.0)
    checkpointing_steps: int = _flag("save the training state every N optimizer steps", 500)
    checkpoints_total_limit: int | None = _flag("keep at most this many checkpoints (oldest removed)", None)
    resume_from_checkpoint: str | None = _flag(
        "'latest' (the newest checkpoint in --output_dir, or a fresh start when there is none) or a checkpoint folder",
        None,
    )
    mixed_precision: MixedPrecision | None = _flag("default: accelerate config's", None)
    report_to: Tracker = _flag("experiment tracker", "tensorboard")
    logging_dir: str = _flag("tracker folder, relative to --output_dir", "logs")
    push_to_hub: bool = _flag("upload the final model and its card to --hub_model_id", False)
    hub_model_id: str | None = _flag("user/name of the model repository (default: the --output_dir name)", None)
    hub_token: str | None = _flag(
        "Hub token for --push_to_hub. Prefer `hf auth login` or the HF_TOKEN environment variable, which "
        "huggingface_hub reads when this flag is not given: a token on the command line shows in the process list "
        "and the shell history. Its value is never written to the card, the tracker or --output_dir",
        None,
    )
    dataloader_num_workers: int = _flag("data-loading worker processes (0 = in the main process)", 0)
    # The command that started the run, for the model card: set by the parse functions, not a flag.
    command: str | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._check_choices()
        for name in ("num_train_epochs", "gradient_accumulation_steps", "checkpointing_steps"):
            _at_least(name, getattr(self, name), 1)
        for name in ("train_batch_size", "max_train_steps", "checkpoints_total_limit"):
            if getattr(self, name) is not None:
                _at_least(name, getattr(self, name), 1)
        if not self.learning_rate > 0:
            raise ValueError(f"--learning_rate must be > 0, got {self.learning_rate}")
        if self.lr_warmup_steps is not None:
            _at_least("lr_warmup_steps", self.lr_warmup_steps, 0)
        _at_least("dataloader_num_workers", self.dataloader_num_workers, 0)

    def _check_choices(self) -> None:
        """The choices argparse enforces on a command line, enforced on values built in Python too."""
        hints = get_type_hints(type(self))
        for item in dataclasses.fields(self):
            choices = _literal_choices(hints[item.name])
            value = getattr(self, item.name)
            if choices and value not in choices and not (value is None and item.default is None):
                raise ValueError(f"--{item.name} must be one of {list(choices)}, got {value!r}")

    def to_argv(self) -> list[str]:
        """The flags that give these arguments: the required ones and every value that differs from its default."""
        argv: list[str] = []
        for item in dataclasses.fields(self):
            if not item.init:
                continue
            value = getattr(self, item.name)
            if item.default is not dataclasses.MISSING and value == item.default:
                continue
            if isinstance(value, bool):
                argv += [f"--{item.name}"] if value else [f"--{item.name}", "false"]
            elif value is not None:
                argv += [f"--{item.name}", str(value)]
        return argv

    def launch_command(self) -> str:
        """The command that starts this run: as typed when parsed from a command line, else one that gives the same
        arguments (arguments built in Python)."""
        return self.command or command_line(self.to_argv(), script=self.script)


@dataclass(kw_only=True)
class RetrievalTrainingArguments(CommonTrainingArguments):
    """`train/retrieval.py`: contrastive training of a retrieval model (paper section 4.1.2)."""

    script: ClassVar[str] = "train/retrieval.py"

    dataset: str = _flag("a built SoS folder (`sound-of-story build`) or a Hub dataset id")
    dataset_config: str | None = _flag("dataset config (default: the stories config)", None)
    train_split: str = _flag("split to train on", "train")
    eval_split: str = _flag(
        "the test split: evaluated once, at the end, on the saved model ('none': no test evaluation)", "test"
    )
    selection: Selection | None = _flag(
        "which model is saved. 'validation' (the default when --eval_split names a split): every epoch is evaluated "
        "on a validation split carved from the training stories by movie (--validation_size), and the epoch with the "
        "best --best_metric is the model; 'last' (the default with --eval_split none): the protocol as the paper "
        "states it (section 4.1.2: 100 epochs, no validation split or selection named), --num_train_epochs epochs "
        "and the last model",
        None,
    )
    validation_size: float = _flag(
        "--selection validation: the training stories held out as the validation split, a share (< 1) or a number "
        "(>= 1), whole movies at a time, chosen as the builder chooses its test split (by a hash of the movie's "
        "name); default: the share of the paper's test split, 1300 of 27354 stories",
        PAPER_TEST_SHARE,
    )
    pair: Pair = _flag("which pair to train", "audio-video")
    model: ModelKind = _flag("SoS model, or a Table 2 baseline", "sos")
    init_from: str | None = _flag(
        "a saved model folder or Hub id of --model's class (with its processor); default: build it from "
        f"--clip_model and --audio_model ({model_ids.CLAP} for clap: LAION's CLAP in transformers, this package's "
        "stand-in; the paper's baseline is Microsoft's CLAP, Elizalde et al. 2023)",
        None,
    )
    original_checkpoint: str | None = _flag(
        "--model wav2clip_original / msclap without --init_from: the baseline's released checkpoint in its original "
        "format, a path or an http(s) URL (default: Wav2CLIP's release, Microsoft CLAP 2022's)",
        None,
    )
    clip_model: str = _flag(
        "CLIP checkpoint when --init_from is not given (this package's choice, X-CLIP's ViT-B/32: the paper names CLIP, "
        "no checkpoint)",
        model_ids.CLIP,
    )
    audio_model: str = _flag(
        "AST checkpoint when --init_from is not given (this package's choice, AST's AudioSet release: the paper names "
        "the Audio Spectrogram Transformer, no checkpoint)",
        model_ids.AST,
    )
    encoder_learning_rate: float = _flag(
        "learning rate of the pretrained CLIP/AST/CLAP encoders (X-CLIP's release: lr 1e-4 x coef_lr 1e-3; the paper "
        "gives none); --learning_rate is the new layers'",
        ENCODER_LR,
    )
    weight_decay: float = _flag(
        "AdamW weight decay, not on biases and norms (X-CLIP's release; the paper gives none)", RETRIEVAL_WEIGHT_DECAY
    )
    grad_cache: bool = _flag("gradient caching: the full batch's gradients in --grad_cache_chunk_size chunks", False)
    grad_cache_chunk_size: int = _flag("stories encoded at once with --grad_cache", 16)
    freeze_encoders: bool = _flag("freeze CLIP and AST; train the temporal encoder, audio projection, scale", False)
    train_text_encoder: bool = _flag(
        "with --freeze_encoders and --pair audio-text: CLIP's text tower and text projection still train, at "
        "--encoder_learning_rate (otherwise nothing on the text side trains); with --feature_cache only AST's outputs "
        "are cached and the text is encoded in every step",
        False,
    )
    feature_cache: str | None = _flag(
        "with --freeze_encoders (sos): compute CLIP/AST outputs once into this folder", None
    )
    eval_batch_size: int = _flag("stories per forward pass in the evaluation", 8)
    eval_cache_dir: str | None = _flag("evaluation embedding cache (default: none)", None)
    best_metric: str | None = _flag(
        "--selection validation: 'DIRECTION/FIGURE' on the validation split that picks the epoch (default: A2V/R@1 or "
        "A2T/R@1)",
        None,
    )
    train_batch_size: int | None = _flag(
        "batch size per process (default: the paper's global batch, 128 audio-video / 256 audio-text, over the "
        "processes)",
        None,
    )
    num_train_epochs: int = _flag(
        "epochs (ignored when --max_train_steps is given; the paper's 100, section 4.1.2)", PAPER_RETRIEVAL_EPOCHS
    )
    learning_rate: float = _flag(
        "peak learning rate of the new layers (X-CLIP's release: lr 1e-4; the paper gives none)", NEW_LAYERS_LR
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model in ("clap", "msclap") and self.pair != "audio-text":
            raise ValueError(f"--model {self.model} is an audio-text model: use --pair audio-text")
        if self.model == "wav2clip_original" and self.pair != "audio-video":
            raise ValueError("--model wav2clip_original is the paper's audio-video baseline: use --pair audio-video")
        if self.original_checkpoint and (self.init_from or self.model not in ORIGINAL_FORMAT_KINDS):
            raise ValueError(
                f"--original_checkpoint starts {' or '.join(ORIGINAL_FORMAT_KINDS)} from its released file; "
                "it does not combine with --init_from or another --model"
            )
        if self.feature_cache and not self.freeze_encoders:
            raise ValueError(
                "--feature_cache needs --freeze_encoders (the cached features are the frozen encoders' outputs)"
            )
        if self.train_text_encoder and not (self.freeze_encoders and self.pair == "audio-text"):
            raise ValueError(
                "--train_text_encoder keeps the text tower trainable under --freeze_encoders: it needs "
                "--freeze_encoders and --pair audio-text"
            )
        if self.train_text_encoder and self.model != "sos":
            raise ValueError("--train_text_encoder is implemented for --model sos only")
        if self.feature_cache and self.model != "sos":
            raise ValueError("--feature_cache is implemented for --model sos only")
        if self.feature_cache and self.grad_cache:
            raise ValueError(
                "--feature_cache and --grad_cache do not combine: cached features already make large batches cheap"
            )
        _at_least("grad_cache_chunk_size", self.grad_cache_chunk_size, 1)
        _at_least("eval_batch_size", self.eval_batch_size, 1)
        if not (math.isfinite(self.validation_size) and self.validation_size > 0):
            raise ValueError(
                f"--validation_size must be a share (< 1) or a number of stories > 0, got {self.validation_size}"
            )
        if self.best_metric is not None and self.resolved_selection() == "last":
            raise ValueError(
                "--best_metric picks an epoch on the validation split: it has no use with --selection last"
            )
        if self.best_metric is not None:
            direction, _, figure = self.best_metric.partition("/")
            if direction not in PAIR_DIRECTIONS[self.pair] or figure not in RETRIEVAL_FIGURES:
                raise ValueError(
                    f"--best_metric must be DIRECTION/FIGURE with a direction of {self.pair} "
                    f"{PAIR_DIRECTIONS[self.pair]} and a figure of {RETRIEVAL_FIGURES}, got {self.best_metric!r}"
                )

    @property
    def held_out_split(self) -> str | None:
        """The test split, evaluated once at the end; None for `--eval_split none`."""
        return None if self.eval_split == "none" else self.eval_split

    def resolved_selection(self) -> str:
        """`--selection`, or 'validation' when a test split is evaluated and 'last' when none is."""
        return self.selection or ("validation" if self.held_out_split else "last")

    def per_process_batch_size(self, num_processes: int) -> int:
        """`--train_batch_size`, or the paper's global batch of the pair divided over the processes."""
        if self.train_batch_size is not None:
            return self.train_batch_size
        return max(1, PAPER_RETRIEVAL_BATCH_SIZE[self.pair] // num_processes)

    def selection_metric(self) -> str:
        """`--best_metric`, or R@1 of the pair's first direction (A2V or A2T)."""
        return self.best_metric or f"{PAIR_DIRECTIONS[self.pair][0]}/R@1"

    def resolved(self, num_processes: int) -> RetrievalTrainingArguments:
        """A copy with the defaults that depend on the run filled in (the per-process batch, the selection and its
        metric): what the loop trains with and what the card and the tracker record, with these arguments' command.
        These arguments are left as they are."""
        selection = self.resolved_selection()
        copy = dataclasses.replace(
            self,
            train_batch_size=self.per_process_batch_size(num_processes),
            selection=selection,
            best_metric=self.selection_metric() if selection == "validation" else None,
        )
        copy.command = self.launch_command()
        return copy


@dataclass(kw_only=True)
class SoSgenTrainingArguments(CommonTrainingArguments):
    """`train/gen.py`: fine-tuning of a SoSgen pipeline (paper section 4.2.2)."""

    script: ClassVar[str] = "train/gen.py"

    mode: GenMode = _flag("text: UNet + text encoder; controlnet: frames; image: frames, text 'Audio'", "text")
    pretrained_model: str = _flag(
        "a SoSgen/Riffusion pipeline folder or Hub id to start from. The paper (section 4.2.2, Figure 5): Riffusion "
        "for text and for image (SoSgen_image), a text output for controlnet (SoSgen_text+image continues from "
        "SoSgen_text)",
        model_ids.RIFFUSION,
    )
    image_encoder: str = _flag(
        "CLIP vision model of a new ControlNet's frame tokens (this package's choice, ViT-B/32 as the retrieval model: "
        "the paper names 'an additional CLIP image encoder', no checkpoint)",
        model_ids.CLIP,
    )
    dataset: str = _flag("a built SoS folder (`sound-of-story build`) or a Hub dataset id")
    dataset_config: str = _flag("dataset config with 15 s slices", "generation")
    train_split: str = _flag("split to train on", "train")
    validation_split: str = _flag(
        "held-out slices: validation prompts/frames and FAD references ('none': no validation)", "test"
    )
    validation_steps: int = _flag("validate every N optimizer steps (and at the end)", 500)
    num_validation_samples: int = _flag("held-out slices generated at each validation", 4)
    validation_inference_steps: int = _flag("denoising steps of the validation generations", 25)
    validation_fad_checkpoint: str | None = _flag(
        "local path of torchvggish's vggish-10086976.pth for the validation FAD (not bundled, never downloaded; "
        "checked before the first step); 'random' = random weights (offline tests only). Needed unless "
        "--no_validation_fad or --validation_split none",
        None,
    )
    no_validation_fad: bool = _flag("skip the FAD at validation (audio and images are still logged)", False)
    freeze_text_encoder: bool = _flag("text mode: train the UNet only (the paper trains both)", False)
    gradient_checkpointing: bool = _flag("recompute activations in the backward pass (less memory)", False)
    use_ema: bool = _flag("keep an exponential moving average of the trained weights and save it", False)
    ema_decay: float = _flag("EMA decay (diffusers' EMAModel default)", 0.9999)
    snr_gamma: float | None = _flag("Min-SNR loss weighting gamma (Hang et al. 2023; 5.0 recommended)", None)
    noise_offset: float = _flag("noise offset (0 = none)", 0.0)
    proportion_empty_prompts: float = _flag(
        "share of training examples whose text is replaced by the empty prompt, so that classifier-free guidance "
        "has an unconditional prediction to move away from (diffusers' train_controlnet.py flag; the ControlNet "
        "paper drops 50%; the SoS paper does not say)",
        0.0,
    )
    use_lora: bool = _flag("text mode: train LoRA adapters of the UNet and text encoder (peft) instead", False)
    lora_rank: int = _flag("LoRA rank", 4)
    weight_decay: float = _flag(
        "AdamW weight decay (diffusers' training examples' default; the paper gives none)", 1e-2
    )
    train_batch_size: int = _flag("batch size per process (the paper's 1, section 4.2.2)", PAPER_SOSGEN_BATCH_SIZE)
    gradient_accumulation_steps: int = _flag(
        "batches per optimizer step (the paper's 16, section 4.2.2)", PAPER_SOSGEN_ACCUMULATION
    )
    learning_rate: float = _flag("peak learning rate (the paper's initial 1e-6, section 4.2.2)", PAPER_SOSGEN_LR)
    paper_schedule: PaperSchedule | None = _flag(
        "the paper's schedule of --mode (section 4.2.2): SoSgen_text 406,000 steps, SoSgen_text+image 525,000 more "
        "(from SoSgen_text), SoSgen_image 525,000 (from Riffusion), at batch 1, 16 accumulation steps, lr 1e-6, "
        "cosine. The paper does not say what a step is. 'passes': a forward/backward pass of one example, so "
        "406,000 steps are 25,375 optimizer updates (525,000: 32,813), the reading its 2 days on one RTX 3090 "
        "supports; 'updates': an optimizer update of 16 passes (16 times longer). Sets --max_train_steps (optimizer "
        "updates) and no warm-up (the paper states none); the batch, accumulation, learning rate and scheduler must "
        "stay the paper's (their defaults)",
        None,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.use_lora and self.mode != "text":
            raise ValueError("--use_lora is implemented for --mode text (the ControlNet is trained in full)")
        if self.use_lora and self.use_ema:
            raise ValueError("--use_lora and --use_ema do not combine here (as in diffusers' LoRA example)")
        for name in ("validation_steps", "num_validation_samples", "validation_inference_steps", "lora_rank"):
            _at_least(name, getattr(self, name), 1)
        if self.snr_gamma is not None and not self.snr_gamma > 0:
            raise ValueError(f"--snr_gamma must be > 0, got {self.snr_gamma}")
        if not 0.0 <= self.proportion_empty_prompts <= 1.0:
            raise ValueError(f"--proportion_empty_prompts must be in [0, 1], got {self.proportion_empty_prompts}")
        if self.paper_schedule is not None:
            self._check_paper_schedule()

    @property
    def held_out_split(self) -> str | None:
        """The split of the validations, None for `--validation_split none`."""
        return None if self.validation_split == "none" else self.validation_split

    def _check_paper_schedule(self) -> None:
        if self.max_train_steps not in (None, self.paper_schedule_updates()):
            raise ValueError(
                f"--paper_schedule sets --max_train_steps ({self.paper_schedule_updates()} for --mode {self.mode}); "
                f"--max_train_steps {self.max_train_steps} is not: give one of them"
            )
        if self.lr_warmup_steps not in (None, 0):
            raise ValueError(
                "--paper_schedule trains without warm-up, as the paper states none: drop --lr_warmup_steps"
            )
        paper = {
            "train_batch_size": PAPER_SOSGEN_BATCH_SIZE, "gradient_accumulation_steps": PAPER_SOSGEN_ACCUMULATION,
            "learning_rate": PAPER_SOSGEN_LR, "lr_scheduler": PAPER_SOSGEN_SCHEDULER,
        }  # fmt: skip
        for name, value in paper.items():
            if getattr(self, name) != value:
                raise ValueError(
                    f"--paper_schedule is the paper's {name.replace('_', ' ')} too ({value}); --{name} "
                    f"{getattr(self, name)} is not: drop one of them"
                )

    def paper_schedule_updates(self) -> int | None:
        """The optimizer updates of `--paper_schedule` for this mode (None without it): the paper's steps of the
        mode, divided by the 16 passes of an update for the `passes` reading (rounded up)."""
        if self.paper_schedule is None:
            return None
        steps = PAPER_SOSGEN_STEPS[self.mode]
        return steps if self.paper_schedule == "updates" else math.ceil(steps / PAPER_SOSGEN_ACCUMULATION)

    def resolved(self) -> SoSgenTrainingArguments:
        """A copy with `--paper_schedule`'s steps and warm-up filled in (what the loop trains with and the card and
        tracker record), with these arguments' command. These arguments are left as they are."""
        if self.paper_schedule is None:
            return self
        copy = dataclasses.replace(self, max_train_steps=self.paper_schedule_updates(), lr_warmup_steps=0)
        copy.command = self.launch_command()
        return copy

    def schedule_description(self, max_steps: int, num_processes: int) -> str:
        """The schedule a run trained with, in words, for its card: the paper's (and how its steps were read) or not."""
        passes = max_steps * self.gradient_accumulation_steps * self.train_batch_size * num_processes
        plan = (
            f"{max_steps:,} optimizer updates, each of {self.gradient_accumulation_steps} accumulated batches of "
            f"{self.train_batch_size} on {num_processes} process(es) ({passes:,} examples), learning rate "
            f"{self.learning_rate:g}, {self.lr_scheduler} schedule, {warmup_steps(self.lr_warmup_steps, max_steps)} "
            "warm-up steps"
        )
        if self.paper_schedule is None:
            return f"Schedule: {plan}. Not the paper's schedule (`--paper_schedule`)."
        steps, name = PAPER_SOSGEN_STEPS[self.mode], PAPER_SOSGEN_NAMES[self.mode]
        reading = (
            f"its {steps:,} steps read as forward/backward passes of one example, {PAPER_SOSGEN_ACCUMULATION} to an "
            "update (`--paper_schedule passes`; the paper does not say which a step is)"
            if self.paper_schedule == "passes"
            else f"its {steps:,} steps read as optimizer updates (`--paper_schedule updates`; the paper does not say "
            "which a step is)"
        )
        note = (
            ""
            if num_processes == 1
            else f" The paper trained on one GPU; here each update averages {num_processes} processes' batches."
        )
        return f"Schedule: the paper's {name} schedule (section 4.2.2), {reading}: {plan}.{note}"


def warmup_steps(lr_warmup_steps: int | None, max_steps: int) -> int:
    """`--lr_warmup_steps`, or 10% of the run's optimizer updates (X-CLIP's warmup_proportion 0.1)."""
    return lr_warmup_steps if lr_warmup_steps is not None else int(0.1 * max_steps)


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f"--{name} must be >= {minimum}, got {value}")


def _literal_choices(hint: Any) -> tuple | None:
    """The values of a `Literal[...]` type hint, also inside `Literal[...] | None`; None for other hints."""
    if get_origin(hint) in (Union, types.UnionType):
        hint = next((arg for arg in get_args(hint) if arg is not type(None)), hint)
    return get_args(hint) if get_origin(hint) is Literal else None


Arguments = TypeVar("Arguments", bound=CommonTrainingArguments)


def build_parser(arguments_class: type[CommonTrainingArguments], description: str):
    """The `HfArgumentParser` of a script: one `--flag` per field, with its default and help."""
    from transformers import HfArgumentParser

    return HfArgumentParser(
        arguments_class, prog=arguments_class.script, description=description, formatter_class=HelpFormatter
    )


def parse_arguments(arguments_class: type[Arguments], description: str, argv: list[str] | None) -> Arguments:
    """Parse `argv` (default: `sys.argv[1:]`) into `arguments_class`; argparse exits with code 2 on an unknown flag
    or a malformed value, `__post_init__` raises ValueError naming the flag on a value out of range."""
    parser = build_parser(arguments_class, description)
    args, remaining = parser.parse_args_into_dataclasses(argv, return_remaining_strings=True, look_for_args_file=False)
    if remaining:
        parser.error(f"unrecognized arguments: {' '.join(remaining)}")
    argv = list(sys.argv[1:] if argv is None else argv)
    args.command = command_line(argv, secret_flags=_secret_option_strings(parser, argv))
    return args


def _secret_option_strings(parser, argv: list[str]) -> set[str]:
    """The option strings of `argv` that argparse resolves to a secret field, abbreviations included (argparse
    takes `--hub_tok` for `--hub_token`)."""
    options = parser._option_string_actions
    found = set()
    for word in argv:
        flag = word.partition("=")[0]
        if not flag.startswith("--"):
            continue
        actions = [options[flag]] if flag in options else [a for s, a in options.items() if s.startswith(flag)]
        if actions and any(is_secret_name(action.dest) for action in actions):
            found.add(flag)
    return found


def command_line(argv: list[str] | None, script: str | None = None, secret_flags: set[str] = frozenset()) -> str:
    """The command that started this run (`script`, default: this process's, with `argv`, default: its arguments),
    for the model card and the tracker, with the values of secret flags (`cards.public.is_secret_name`, and
    `secret_flags`) and anything shaped like an access token replaced by `<redacted>`: the token is never held in
    the arguments' `command`. Local paths are made public where the command is shown (`cards.public`)."""
    parts = [script or sys.argv[0]] + list(sys.argv[1:] if argv is None else argv)
    return "accelerate launch " + public_command(parts, secret_flags=secret_flags, local_paths=False)


def training_settings(args: CommonTrainingArguments) -> dict:
    """Every argument but the secret ones (`--hub_token`, anything named like a token, password or key), and the
    command, as a card and a tracker (tensorboard's hparams, wandb, comet) may show them: secrets masked and absolute
    local paths relative or `<local>/NAME` (`cards.public.public_settings`)."""
    settings = {
        item.name: getattr(args, item.name) for item in dataclasses.fields(args) if not is_secret_name(item.name)
    }
    settings["command"] = args.launch_command()
    return dict(sorted(public_settings(settings).items()))


__all__ = [
    "GEN_MODES",
    "CommonTrainingArguments",
    "GenMode",
    "LrScheduler",
    "MixedPrecision",
    "PaperSchedule",
    "RetrievalTrainingArguments",
    "Selection",
    "SoSgenTrainingArguments",
    "Tracker",
    "build_parser",
    "command_line",
    "parse_arguments",
    "training_settings",
    "warmup_steps",
]
