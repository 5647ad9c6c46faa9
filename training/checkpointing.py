"""Training checkpoints as diffusers' examples keep them: `OUTPUT/checkpoint-<step>` folders written by
`Accelerator.save_state` (model, optimizer, scheduler, sampler and every random state), at most
`--checkpoints_total_limit` of them, and `--resume_from_checkpoint latest|PATH`.

A checkpoint folder may come from someone else (downloaded with a model), and a pickle runs code when it is loaded.
Before a resume, `check_checkpoint_files` reads every file of the folder that could hold one:

- accelerate 1.15's `load_state` unpickles `optimizer*.bin`, `scheduler*.bin`, `sampler*.bin`, `dl_state_dict*.bin`,
  `pytorch_model*.bin`, `scaler.pt` and `random_states_<process>.pkl` with `torch.load(weights_only=True)` (its
  `accelerate.utils.load`; a random-state file that fails to load is skipped without a word, and the resumed run then
  silently differs). Each must be a `torch.save` archive that loads that way (memory-mapped, so the check costs no
  copy of the optimizer state), else the resume is refused naming the file.
- `custom_checkpoint_<n>.pkl`, the state of objects given to `register_for_checkpointing`, is loaded with a full
  pickle load (`weights_only=False`): always refused. This package registers none (the EMA weights are saved as
  safetensors by `save_pretrained`, see `training.sosgen.register_ema_checkpointing`).
- Any other file that is a pickle, by its name (`.pkl`, `.pickle`, `.pt`, `.pth`, `.bin`, `.ckpt`, `.joblib`) or by its
  first bytes (a pickle stream or a zip archive holding one), anywhere in the folder: refused. Nothing reads such a
  file, and a folder that holds one is not one this package wrote.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import zipfile
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


# The files accelerate's `load_state` reads with `torch.load(weights_only=True)`, and those it reads with a full
# pickle load (accelerate 1.15, `checkpointing.load_accelerator_state` and `load_custom_state`).
_WEIGHTS_ONLY_FILES = re.compile(
    r"^(?:(?:optimizer|scheduler|sampler|dl_state_dict|pytorch_model)(?:_\d+)?\.bin|random_states_\d+\.pkl|scaler\.pt)$"
)
_FULL_PICKLE_FILES = re.compile(r"^custom_checkpoint_\d+\.pkl$")
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib")
# Formats that hold no code, never sniffed (a safetensors header length can start with the bytes of a pickle's PROTO).
_PLAIN_SUFFIXES = (".safetensors", ".json", ".txt", ".md")
# A pickle stream starts with PROTO (0x80) and its protocol, 2 to 5.
_PICKLE_STARTS = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))


class UnsafeCheckpointError(ValueError):
    """A checkpoint folder holds a file whose loading could run code (the scripts exit with code 2)."""


def check_checkpoint_files(checkpoint: str | Path) -> None:
    """Refuse `checkpoint` (UnsafeCheckpointError naming the file) when resuming from it could unpickle anything but
    tensors and plain data: see the module's docstring for the rules."""
    checkpoint = Path(checkpoint)
    refuse = f"--resume_from_checkpoint {checkpoint}: refusing"
    for path in sorted(p for p in checkpoint.rglob("*") if p.is_file() or p.is_symlink()):
        name = path.relative_to(checkpoint).as_posix()
        if path.is_symlink():
            raise UnsafeCheckpointError(f"{refuse} {name}, a symbolic link (a checkpoint holds plain files)")
        if _FULL_PICKLE_FILES.match(name):
            raise UnsafeCheckpointError(
                f"{refuse} {name}: accelerate would read it with a full pickle load, which can run any code. This "
                "package never writes one (EMA weights are saved as safetensors); the folder was written by other "
                "code or altered"
            )
        if _WEIGHTS_ONLY_FILES.match(name):
            _check_loads_weights_only(path, name, refuse)
        elif name.lower().endswith(_PICKLE_SUFFIXES) or (
            not name.lower().endswith(_PLAIN_SUFFIXES) and _holds_pickle(path)
        ):
            raise UnsafeCheckpointError(
                f"{refuse} {name}: a pickle file (loading one can run any code), not a file this package's "
                "checkpoints hold (safetensors weights, accelerate's weights-only state files, JSON)"
            )


def _check_loads_weights_only(path: Path, name: str, refuse: str) -> None:
    """`path` is a torch.save archive that `torch.load(weights_only=True)` reads (with the numpy globals accelerate
    allows for its random states), memory-mapped."""
    from accelerate.utils import load

    if not zipfile.is_zipfile(path):
        raise UnsafeCheckpointError(
            f"{refuse} {name}: not a torch.save archive (a plain pickle, or damaged); accelerate writes archives"
        )
    try:
        load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001 - any failure refuses the file; the message names it
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnsafeCheckpointError(
            f"{refuse} {name}: it does not load with torch.load(weights_only=True), the only way a resume reads it "
            f"({type(error).__name__}: {first_line})"
        ) from None


def _holds_pickle(path: Path) -> bool:
    """Whether `path` starts as a pickle stream or is a zip archive holding one (torch.save's format)."""
    with path.open("rb") as file:
        start = file.read(2)
    if start in _PICKLE_STARTS:
        return True
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                return any(entry.endswith((".pkl", ".pickle")) for entry in archive.namelist())
        except zipfile.BadZipFile:
            return False
    return False


def resolve_resume_checkpoint(output_dir: str | Path, resume_from_checkpoint: str | None) -> Path | None:
    """The folder `--resume_from_checkpoint` names: `latest` (the newest in `output_dir`, or `None` when there is
    none yet, so a first run with `latest` starts fresh), or a path. A missing path raises FileNotFoundError; a folder
    that holds a file whose loading could run code raises UnsafeCheckpointError (`check_checkpoint_files`), before
    any training work."""
    path = _resume_checkpoint(output_dir, resume_from_checkpoint)
    if path is not None:
        check_checkpoint_files(path)
    return path


def _resume_checkpoint(output_dir: str | Path, resume_from_checkpoint: str | None) -> Path | None:
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
    "UnsafeCheckpointError",
    "apply_schedule_after_resume",
    "check_checkpoint_files",
    "checkpoint_step",
    "list_checkpoints",
    "read_history",
    "resolve_resume_checkpoint",
    "save_checkpoint",
    "write_history",
]
