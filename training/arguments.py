"""The command-line flags both training scripts share, named as in diffusers' training examples."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Literal, get_args

LrScheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"]
MixedPrecision = Literal["no", "fp16", "bf16"]
Tracker = Literal["tensorboard", "wandb", "comet_ml", "none", "all"]


def add_common_arguments(
    parser: argparse.ArgumentParser,
    *,
    train_batch_size: int,
    num_train_epochs: int,
    gradient_accumulation_steps: int,
    learning_rate: float,
    lr_scheduler: LrScheduler,
    checkpointing_steps: int,
) -> None:
    """The diffusers-style flags; the defaults that differ between the two scripts are arguments."""
    g = parser.add_argument_group("run (as diffusers' training examples)")
    g.add_argument("--output_dir", required=True, help="where checkpoints, the final model, its card and logs go")
    g.add_argument(
        "--seed", type=int, default=0, help="seed of the data order, initialisation and noise (reproducible runs)"
    )
    g.add_argument("--train_batch_size", type=int, default=train_batch_size, help="batch size per process")
    g.add_argument(
        "--num_train_epochs",
        type=int,
        default=num_train_epochs,
        help="epochs (ignored when --max_train_steps is given)",
    )
    g.add_argument(
        "--max_train_steps", type=int, default=None, help="total optimizer steps; overrides --num_train_epochs"
    )
    g.add_argument(
        "--gradient_accumulation_steps",
        type=int,
        default=gradient_accumulation_steps,
        help="batches per optimizer step",
    )
    g.add_argument("--learning_rate", type=float, default=learning_rate, help="peak learning rate")
    g.add_argument(
        "--lr_scheduler",
        choices=get_args(LrScheduler),
        default=lr_scheduler,
        help="learning-rate schedule after warm-up",
    )
    g.add_argument(
        "--lr_warmup_steps",
        type=int,
        default=None,
        help="warm-up steps (default: 10%% of the steps, X-CLIP's warmup_proportion)",
    )
    g.add_argument("--adam_beta1", type=float, default=0.9, help="AdamW beta1")
    g.add_argument("--adam_beta2", type=float, default=0.999, help="AdamW beta2")
    g.add_argument("--adam_epsilon", type=float, default=1e-8, help="AdamW epsilon")
    g.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping norm (0 = no clipping)")
    g.add_argument(
        "--checkpointing_steps",
        type=int,
        default=checkpointing_steps,
        help="save the training state every N optimizer steps",
    )
    g.add_argument(
        "--checkpoints_total_limit", type=int, default=None, help="keep at most this many checkpoints (oldest removed)"
    )
    g.add_argument(
        "--resume_from_checkpoint", default=None,
        help="'latest' (the newest checkpoint in --output_dir, or a fresh start when there is none) or a checkpoint folder",
    )  # fmt: skip
    g.add_argument(
        "--mixed_precision", choices=get_args(MixedPrecision), default=None, help="default: accelerate config's"
    )
    g.add_argument("--report_to", choices=get_args(Tracker), default="tensorboard", help="experiment tracker")
    g.add_argument("--logging_dir", default="logs", help="tracker folder, relative to --output_dir")
    g.add_argument("--push_to_hub", action="store_true", help="upload the final model and its card to --hub_model_id")
    g.add_argument(
        "--hub_model_id", default=None, help="user/name of the model repository (default: the --output_dir name)"
    )
    g.add_argument("--hub_token", default=None, help="Hub token (default: the logged-in user's)")
    g.add_argument(
        "--dataloader_num_workers", type=int, default=0, help="data-loading worker processes (0 = in the main process)"
    )


def check_common_arguments(args: argparse.Namespace) -> None:
    """Values that would fail later, with the flag named (ValueError: exit code 2 in the scripts)."""
    for name in ("train_batch_size", "num_train_epochs", "gradient_accumulation_steps", "checkpointing_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.max_train_steps is not None and args.max_train_steps < 1:
        raise ValueError(f"--max_train_steps must be >= 1, got {args.max_train_steps}")
    if args.checkpoints_total_limit is not None and args.checkpoints_total_limit < 1:
        raise ValueError(f"--checkpoints_total_limit must be >= 1, got {args.checkpoints_total_limit}")
    if not args.learning_rate > 0:
        raise ValueError(f"--learning_rate must be > 0, got {args.learning_rate}")
    if args.lr_warmup_steps is not None and args.lr_warmup_steps < 0:
        raise ValueError(f"--lr_warmup_steps must be >= 0, got {args.lr_warmup_steps}")


def command_line(argv: list[str] | None) -> str:
    """The command that started this run, for the model card."""
    parts = [sys.argv[0]] + list(sys.argv[1:] if argv is None else argv)
    return "accelerate launch " + shlex.join(parts)


def training_settings(args: argparse.Namespace) -> dict:
    """Every flag except secrets, for the model card and the tracker's hyper-parameters."""
    return {k: v for k, v in sorted(vars(args).items()) if k != "hub_token"}


__all__ = [
    "LrScheduler",
    "MixedPrecision",
    "Tracker",
    "add_common_arguments",
    "check_common_arguments",
    "command_line",
    "training_settings",
]
