"""The scaffold both training loops share, which diffusers' training examples write out in each script: the
Accelerator, resuming, the bookkeeping after every optimizer update (loss history, progress bar, tracker, a
checkpoint every `--checkpointing_steps`), and finishing (history, final outputs, upload, the end of the process
group). `train_retrieval` and `train_sosgen` supply what differs: the data, the model, the step, the evaluation and
the saved outputs.

    accelerator = build_accelerator(args)
    resume_path = resolve_resume_checkpoint(args.output_dir, args.resume_from_checkpoint)
    ...  # data, model, optimizer, plan_schedule, accelerator.prepare
    run = TrainingRun(accelerator, args, schedule, scheduler, resume_path, tracker_project="...")
    for epoch in run.epochs():
        for batch_index, batch in run.batches(loader, epoch):
            with accelerator.accumulate(model):
                loss = ...  # forward and backward
                apply_gradients(accelerator, optimizer, scheduler, parameters, args.max_grad_norm)
            run.end_batch(loss)
    run.finish(save_outputs)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .arguments import CommonTrainingArguments, training_settings, warmup_steps
from .checkpointing import apply_schedule_after_resume, checkpoint_step, read_history, save_checkpoint, write_history


def build_accelerator(args: CommonTrainingArguments):
    """The run's Accelerator: gradient accumulation, precision and tracker from the flags, the project folder for
    `save_state` and the tracker's logs, and a seedable sampler so that a resumed run sees the same data order."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

    return Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=str(Path(args.output_dir) / args.logging_dir)
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )


@dataclasses.dataclass
class Schedule:
    """How many optimizer updates an epoch holds, the run's length, and its learning-rate scheduler."""

    updates_per_epoch: int
    max_steps: int
    num_epochs: int
    scheduler: Any


def plan_schedule(args, optimizer, num_examples: int, num_processes: int, drop_last: bool = False) -> Schedule:
    """``--max_train_steps`` (or epochs x updates per epoch), warm-up (default 10%) and the scheduler.

    The scheduler is stepped once per process by accelerate, hence the factor ``num_processes``. With ``drop_last``
    (the loader drops an epoch's last partial global batch) an epoch holds the full global batches only.
    """
    from diffusers.optimization import get_scheduler

    global_batch = args.train_batch_size * num_processes
    batches = num_examples // global_batch if drop_last else math.ceil(num_examples / global_batch)
    updates_per_epoch = math.ceil(batches / args.gradient_accumulation_steps)
    max_steps = args.max_train_steps or args.num_train_epochs * updates_per_epoch
    warmup = warmup_steps(args.lr_warmup_steps, max_steps)
    scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer,
        num_warmup_steps=warmup * num_processes,
        num_training_steps=max_steps * num_processes,
    )
    return Schedule(updates_per_epoch, max_steps, math.ceil(max_steps / updates_per_epoch), scheduler)


@dataclasses.dataclass
class ResumePoint:
    """Where a (possibly resumed) run starts: step, epoch, batches of that epoch to skip, loss history so far."""

    global_step: int = 0
    first_epoch: int = 0
    skip_batches: int = 0
    history: list[dict] = dataclasses.field(default_factory=list)


def resume_training(accelerator, scheduler, resume_path: Path | None, args, updates_per_epoch: int) -> ResumePoint:
    """Load ``resume_path``'s state (model, optimizer, scheduler, RNGs) and say where the run continues."""
    if resume_path is None:
        return ResumePoint()
    accelerator.print(f"resuming from {resume_path}")
    # The folder was checked by resolve_resume_checkpoint (check_checkpoint_files); weights_only=True is also what
    # accelerate uses by default for the files these kwargs reach (optimizer, scheduler, dataloader state).
    accelerator.load_state(str(resume_path), load_kwargs={"weights_only": True})
    apply_schedule_after_resume(scheduler)
    global_step = checkpoint_step(resume_path)
    return ResumePoint(
        global_step=global_step,
        first_epoch=global_step // updates_per_epoch,
        skip_batches=(global_step % updates_per_epoch) * args.gradient_accumulation_steps,
        history=read_history(args.output_dir, global_step),
    )


def end_run(accelerator) -> None:
    """Close the trackers, then leave the process group together.

    Without an explicit barrier and ``destroy_process_group``, a CPU (gloo) rank whose peer has already exited can
    hang at interpreter exit.
    """
    import torch.distributed as dist

    accelerator.end_training()
    if dist.is_available() and dist.is_initialized():
        accelerator.wait_for_everyone()
        dist.destroy_process_group()


def apply_gradients(accelerator, optimizer, scheduler, parameters: list, max_grad_norm: float) -> None:
    """Clip (at the end of an accumulation, `--max_grad_norm` > 0), step the optimizer and the schedule, clear the
    gradients. Inside `accelerator.accumulate`, the optimizer only steps at the end of an accumulation."""
    if accelerator.sync_gradients and max_grad_norm > 0:
        accelerator.clip_grad_norm_(parameters, max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


class TrainingRun:
    """One run's position and bookkeeping, from its start (or the resumed checkpoint) to its end.

    Built after `accelerator.prepare`: starts the tracker with the run's settings, loads `resume_path`'s state and
    continues at its step (same epoch, the batches of that epoch already seen skipped, the loss history kept).
    """

    def __init__(
        self, accelerator, args: CommonTrainingArguments, schedule: Schedule, scheduler, resume_path: Path | None,
        tracker_project: str,
    ) -> None:  # fmt: skip
        self.accelerator = accelerator
        self.args = args
        self.max_steps = schedule.max_steps
        self.num_epochs = schedule.num_epochs
        self.scheduler = scheduler
        if accelerator.log_with:
            settings = training_settings(args)
            accelerator.init_trackers(
                tracker_project,
                config={k: v for k, v in settings.items() if isinstance(v, (int, float, str, bool))},
            )
        start = resume_training(accelerator, scheduler, resume_path, args, schedule.updates_per_epoch)
        self.global_step = start.global_step
        self.first_epoch = start.first_epoch
        self.skip_batches = start.skip_batches
        self.history = start.history
        self._batch_losses: list[torch.Tensor] = []
        self.progress = tqdm(
            range(self.max_steps),
            initial=self.global_step,
            desc="steps",
            disable=not accelerator.is_local_main_process,
        )

    @property
    def done(self) -> bool:
        """Whether the run has made its `max_steps` optimizer updates."""
        return self.global_step >= self.max_steps

    @property
    def losses(self) -> list[float]:
        """The loss of every update so far, those before a resume included."""
        return [entry["loss"] for entry in self.history]

    def epochs(self) -> Iterator[int]:
        """The epochs still to run; stops after the epoch in which the run reaches `max_steps`."""
        for epoch in range(self.first_epoch, self.num_epochs):
            yield epoch
            if self.done:
                return

    def batches(self, loader, epoch: int) -> Iterator[tuple[int, Any]]:
        """`(index in the epoch, batch)` of `loader`'s epoch `epoch`, without the batches a resumed run has already
        trained on; stops after the batch that completes the last update."""
        loader.set_epoch(epoch)
        skip = self.skip_batches if epoch == self.first_epoch else 0
        batches: Iterable = self.accelerator.skip_first_batches(loader, skip) if skip else loader
        for batch_index, batch in enumerate(batches, start=skip):
            yield batch_index, batch
            if self.done:
                return

    def end_batch(self, loss: torch.Tensor) -> bool:
        """Record a batch's (global) loss. At the end of an accumulation, i.e. after an optimizer update: count the
        step, append the mean loss of its batches and the learning rate to the history, update the progress bar and
        the tracker, and save a checkpoint every `--checkpointing_steps`. Returns whether an update ended."""
        self._batch_losses.append(loss.detach())
        if not self.accelerator.sync_gradients:
            return False
        self.global_step += 1
        step_loss = float(torch.stack(self._batch_losses).mean())
        self._batch_losses = []
        learning_rate = self.scheduler.get_last_lr()[0]
        self.history.append({"step": self.global_step, "loss": step_loss, "lr": learning_rate})
        self.progress.update(1)
        self.progress.set_postfix(loss=f"{step_loss:.4f}")
        self.accelerator.log({"train/loss": step_loss, "train/lr": learning_rate}, step=self.global_step)
        if self.global_step % self.args.checkpointing_steps == 0:
            write_history(self.accelerator, self.args.output_dir, self.history)
            save_checkpoint(
                self.accelerator, self.args.output_dir, self.global_step, self.args.checkpoints_total_limit
            )
        return True

    def finish(self, save_outputs: Callable[[], None]) -> None:
        """Write the history; on the main process `save_outputs()` (the final model and its card) and, with
        `--push_to_hub`, upload them; then end the trackers and the process group on every process."""
        self.progress.close()
        write_history(self.accelerator, self.args.output_dir, self.history)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            save_outputs()
            if self.args.push_to_hub:
                push_output_dir(self.args)
        end_run(self.accelerator)


def broadcast_from_main(accelerator, compute: Callable[[], Any]) -> Any:
    """`compute()` on the main process (the others wait), its result returned on every process."""
    import torch.distributed as dist

    value = [compute() if accelerator.is_main_process else None]
    if accelerator.num_processes > 1:
        dist.broadcast_object_list(value, src=0)
    return value[0]


def push_output_dir(args: CommonTrainingArguments) -> str:
    """Upload the final model and card of `--output_dir` (not the checkpoints, logs or the best epoch's copy) to
    `--hub_model_id`."""
    from huggingface_hub import HfApi

    api = HfApi(token=args.hub_token)
    repo_id = api.create_repo(args.hub_model_id or Path(args.output_dir).name, exist_ok=True).repo_id
    api.upload_folder(
        repo_id=repo_id, folder_path=args.output_dir, commit_message="End of training",
        ignore_patterns=["checkpoint-*", "checkpoint-*/**", f"{args.logging_dir}/**", "best/**", "*.tmp*"],
    )  # fmt: skip
    return repo_id


__all__ = [
    "ResumePoint",
    "Schedule",
    "TrainingRun",
    "apply_gradients",
    "broadcast_from_main",
    "build_accelerator",
    "end_run",
    "plan_schedule",
    "push_output_dir",
    "resume_training",
]
