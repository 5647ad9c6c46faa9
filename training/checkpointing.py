"""Training checkpoints as diffusers' examples keep them: `OUTPUT/checkpoint-<step>` folders written by
`Accelerator.save_state` (model, optimizer, scheduler, sampler and every random state), at most
`--checkpoints_total_limit` of them, and `--resume_from_checkpoint latest|PATH`."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from sound_of_story.core.atomic_files import write_json_atomic

CHECKPOINT_PREFIX = "checkpoint-"
# Per-step loss and learning rate of a run (the global loss), kept across resumes.
HISTORY_FILE = "training_history.json"
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
# Marks a checkpoint folder whose save finished: a save killed half-way is never resumed from.
COMPLETE_MARKER = "checkpoint_complete"

logger = logging.getLogger(__name__)


def checkpoint_step(path: str | Path) -> int:
    """The global step a `checkpoint-<step>` folder was saved at."""
    match = _CHECKPOINT_RE.match(Path(path).name)
    if not match:
        raise ValueError(f"{path} is not a checkpoint folder (expected a name like {CHECKPOINT_PREFIX}500)")
    return int(match.group(1))


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """The complete checkpoint folders of `output_dir`, oldest (lowest step) first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if _CHECKPOINT_RE.match(p.name) and (p / COMPLETE_MARKER).exists()]
    return sorted(found, key=checkpoint_step)


def resolve_resume_checkpoint(output_dir: str | Path, resume_from_checkpoint: str | None) -> Path | None:
    """The folder `--resume_from_checkpoint` names: `latest` (the newest in `output_dir`, or `None` when there is
    none yet, so a first run with `latest` starts fresh), or a path. A missing path raises FileNotFoundError."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            logger.info("--resume_from_checkpoint latest: no checkpoint in %s yet, starting a new run", output_dir)
            return None
        return found[-1]
    path = Path(resume_from_checkpoint)
    if not path.is_absolute() and not path.exists():
        path = Path(output_dir) / path
    if not path.is_dir():
        raise FileNotFoundError(
            f"--resume_from_checkpoint: {resume_from_checkpoint} does not exist (nor under {output_dir})"
        )
    if not (path / COMPLETE_MARKER).exists():
        raise FileNotFoundError(
            f"--resume_from_checkpoint: {path} is not a complete checkpoint (no {COMPLETE_MARKER}; the save was interrupted)"
        )
    checkpoint_step(path)
    return path


def save_checkpoint(accelerator, output_dir: str | Path, global_step: int, total_limit: int | None) -> Path | None:
    """`accelerator.save_state` into `output_dir/checkpoint-<global_step>`, first removing the oldest checkpoints so
    that at most `total_limit` remain after the save. Every process must call it (the state includes each
    process's random state); returns the folder."""
    output_dir = Path(output_dir)
    path = output_dir / f"{CHECKPOINT_PREFIX}{global_step}"
    if accelerator.is_main_process and total_limit is not None:
        existing = [p for p in list_checkpoints(output_dir) if p != path]
        for old in existing[: max(0, len(existing) - (total_limit - 1))]:
            logger.info("removing checkpoint %s (--checkpoints_total_limit %d)", old, total_limit)
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(path))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (path / COMPLETE_MARKER).write_text(str(global_step))
    accelerator.wait_for_everyone()
    return path


def apply_schedule_after_resume(scheduler) -> None:
    """Set the learning rates the resumed schedule gives at its restored position.

    The checkpoint stores the schedule's position and the optimizer's last learning rates; the schedule's shape
    (warm-up, total steps) comes from this run's flags. Without this, a run resumed with a longer
    `--max_train_steps` would take its first step at the learning rate the old, shorter schedule ended on.
    `scheduler` is a `LambdaLR` (diffusers' `get_scheduler`), possibly wrapped by accelerate."""
    inner = getattr(scheduler, "scheduler", scheduler)
    rates = [base * schedule(inner.last_epoch) for base, schedule in zip(inner.base_lrs, inner.lr_lambdas)]
    for group, rate in zip(inner.optimizer.param_groups, rates):
        group["lr"] = rate
    inner._last_lr = rates


def read_history(output_dir: str | Path, up_to_step: int) -> list[dict]:
    """The recorded steps of a run up to `up_to_step` (the checkpoint being resumed)."""
    path = Path(output_dir) / HISTORY_FILE
    return [h for h in json.loads(path.read_text()) if h["step"] <= up_to_step] if path.exists() else []


def write_history(accelerator, output_dir: str | Path, history: list[dict]) -> None:
    """Write the per-step history atomically (main process only)."""
    if accelerator.is_main_process:
        write_json_atomic(Path(output_dir) / HISTORY_FILE, history, indent=None)


__all__ = [
    "CHECKPOINT_PREFIX",
    "COMPLETE_MARKER",
    "HISTORY_FILE",
    "apply_schedule_after_resume",
    "checkpoint_step",
    "list_checkpoints",
    "read_history",
    "resolve_resume_checkpoint",
    "save_checkpoint",
    "write_history",
]
