"""train/retrieval.py and sound_of_story.training.retrieval: global-batch loss across processes, gradient caching,
resume, per-epoch evaluation, the saved model and card, bad input."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import MISSING, fields, replace
from pathlib import Path
from unittest import mock

import pytest
import torch
from training_fixtures import (  # noqa: F401
    FLOAT64_ROUNDOFF,
    accelerate_launch,
    launch_env,
    reset_accelerate,
    script,
    similarity_rounding_bound,
    sos_training_dataset,
    tiny_retrieval_dir,
    tiny_retrieval_dir_float64,
)

from sound_of_story.cards.public import public_path
from sound_of_story.modeling import SoSRetrievalModel
from sound_of_story.modeling.tiny_random import tiny_random_inputs, tiny_retrieval_config
from sound_of_story.training.arguments import RetrievalTrainingArguments
from sound_of_story.training.checkpointing import HISTORY_FILE
from sound_of_story.training.retrieval import (
    RetrievalEncoder,
    build_retrieval_parser,
    freeze_for_pair,
    global_contrastive_loss,
    grad_cached_backward,
    parse_retrieval_args,
    train_retrieval,
)

VIDEO_KEYS = ("input_values", "pixel_values", "frame_mask")


def _run(argv: list[str] | RetrievalTrainingArguments):
    reset_accelerate()
    return train_retrieval(parse_retrieval_args(argv) if isinstance(argv, list) else argv)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return SoSRetrievalModel.from_pretrained(folder).state_dict()


def _checkpoint_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The model weights of an `Accelerator.save_state` checkpoint (saved under the `RetrievalEncoder`'s `model.`)."""
    from safetensors.torch import load_file

    return {k.removeprefix("model."): v for k, v in load_file(checkpoint / "model.safetensors").items()}


def _largest_difference(a: dict, b: dict) -> float:
    assert a.keys() <= b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    assert _largest_difference(a, b) == 0.0


def _tiny_model_and_batch(batch: int = 4):
    torch.manual_seed(0)
    model = SoSRetrievalModel(tiny_retrieval_config(audio_token_pooling="frequency"))
    freeze_for_pair(model, "audio-video", freeze_encoders=False)
    inputs = tiny_random_inputs(batch=batch, frames=5, seed=1)
    return model, {k: inputs[k] for k in VIDEO_KEYS}


def test_grad_cache_gives_the_full_batch_gradients():
    # float64: batch-of-1 and batch-of-4 kernels sum in different orders; the gradients agree up to the float64
    # rounding bound of the similarity and the gradients through it (training_fixtures.similarity_rounding_bound),
    # relative to the gradients' scale. A gradient-caching error (a chunk's slice, the scale's gradient given once
    # per chunk) is of the order of the gradients themselves.
    model, batch = _tiny_model_and_batch(4)
    model = model.double()
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    encoder = RetrievalEncoder(model, "audio-video")
    loss = global_contrastive_loss(model, encoder(**batch), "audio-video")
    loss.backward()
    full = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    cached_loss = grad_cached_backward(encoder, model, batch, "audio-video", chunk_size=1)
    cached = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert (
        cached.keys() == full.keys()
        and "clip.logit_scale" in full
        and "temporal_encoder.frame_position_embeddings.weight" in full
    )
    bound = similarity_rounding_bound(model.config.temperature)
    # The loss: 2 x scale x the similarities' error (test_two_processes_give_the_one_process_loss_and_weights).
    torch.testing.assert_close(cached_loss, loss.detach(), rtol=0, atol=2 * float(model.scale().detach()) * bound)
    scale = max(float(g.abs().max()) for g in full.values())
    assert scale > 0
    for name in full:
        torch.testing.assert_close(cached[name], full[name], rtol=bound, atol=bound * scale, msg=name)


def test_loss_falls_on_a_repeated_batch():
    model, batch = _tiny_model_and_batch(4)
    encoder = RetrievalEncoder(model, "audio-video")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(8):
        loss = global_contrastive_loss(model, encoder(**batch), "audio-video")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


# AdamW without moments (beta1 = beta2 = 0), epsilon far above every gradient, no weight decay and no clipping: each
# update is w -= lr g / (|g| + eps), about (lr / eps) g, linear in the gradient, so a rounding difference in a gradient
# moves a weight by a rounding-sized amount. With AdamW's defaults the first updates move each weight by about lr
# whatever the size of its gradient (m / sqrt(v) = +-1), so a gradient that is zero up to rounding (a bias before a
# normalisation) moves its weight by a fraction of lr that depends on the processor's order of summation.
LINEAR_UPDATES = ["--adam_beta1", "0", "--adam_beta2", "0", "--adam_epsilon", "1000", "--weight_decay", "0",
                  "--max_grad_norm", "0", "--learning_rate", "1", "--encoder_learning_rate", "1",
                  "--lr_scheduler", "constant"]  # fmt: skip
LINEAR_LR = 1.0


def test_two_processes_give_the_one_process_loss_and_weights(
    sos_training_dataset, tiny_retrieval_dir_float64, tmp_path
):
    """accelerate launch with 2 processes x batch 2 == one process x batch 4: the same per-step loss and weights up to
    float64 rounding (the bounds are derived below, for any processor); the checkpoint and the final model load, and
    the total limit keeps one checkpoint."""
    common = ["--dataset", str(sos_training_dataset), "--init_from", str(tiny_retrieval_dir_float64),
              "--max_train_steps", "2", "--checkpointing_steps", "1", "--eval_split", "none", "--report_to", "none",
              "--seed", "5", *LINEAR_UPDATES]  # fmt: skip
    two = tmp_path / "two"
    cmd = [*accelerate_launch(2), str(script("retrieval.py")), *common, "--output_dir", str(two),
           "--train_batch_size", "2", "--checkpoints_total_limit", "1"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=launch_env())
    assert done.returncode == 0, done.stderr[-4000:]
    assert sorted(p.name for p in two.glob("checkpoint-*")) == ["checkpoint-2"]
    assert (two / "checkpoint-2" / "model.safetensors").exists()
    one = tmp_path / "one"
    _run([*common, "--output_dir", str(one), "--train_batch_size", "4"])  # keeps checkpoint-1: the first update

    start, final = (
        SoSRetrievalModel.from_pretrained(tiny_retrieval_dir_float64),
        SoSRetrievalModel.from_pretrained(one),
    )
    assert start.dtype == final.dtype == torch.float64
    bound = similarity_rounding_bound(start.config.temperature)
    # The loss is the mean cross-entropy of `scale x similarity` over rows and columns; cross-entropy's gradient with
    # respect to its logits sums to at most 2 in absolute value, so the loss is off by at most 2 x scale x the
    # similarities' error (which is at most `bound`: they lie in [-1, 1]).
    loss_tolerance = 2 * max(float(start.scale().detach()), float(final.scale().detach())) * bound
    losses_two = [h["loss"] for h in json.loads((two / HISTORY_FILE).read_text())]
    losses_one = [h["loss"] for h in json.loads((one / HISTORY_FILE).read_text())]
    assert len(losses_one) == 2
    assert losses_two == pytest.approx(losses_one, rel=0, abs=loss_tolerance)
    # An update moves a weight by lr g / (|g| + eps), at most `move` over the weights: the gradients' scale in weight
    # units is (lr / eps) max|g| = move lr / (lr - move). g / (|g| + eps) is 1/eps-Lipschitz, so gradients off by
    # `bound` of their scale move the weights by at most `bound` x that, per update; each update also rounds the
    # weights themselves (2 u relative).
    weights = [_weights(tiny_retrieval_dir_float64), _checkpoint_weights(one / "checkpoint-1"), final.state_dict()]
    moves = [_largest_difference(after, before) for before, after in zip(weights, weights[1:])]
    tolerance = bound * sum(move * LINEAR_LR / (LINEAR_LR - move) for move in moves)
    trained_two = _weights(two)
    for name, value in weights[-1].items():
        torch.testing.assert_close(
            trained_two[name], value, rtol=2 * len(moves) * FLOAT64_ROUNDOFF, atol=tolerance, msg=name
        )
    # A real difference is of the order of a move (a gradient scaled by 1/world_size is off by half of one).
    assert min(moves) > 1e4 * tolerance, (moves, tolerance)


@pytest.mark.parametrize("selection", ["last", "validation"])
def test_resume_matches_an_uninterrupted_run(sos_training_dataset, tiny_retrieval_dir, tmp_path, selection):
    """Stopped after step 1, then resumed to step 3, equals 3 steps in one go. `last`: 4 training stories in batches
    of 2, so step 1 stops mid-epoch. `validation`: 2 stories are carved off, one update an epoch; step 1 ends epoch 1,
    whose validation picked the best so far, which the resumed run continues from (best/selection.json)."""
    common = ["--dataset", str(sos_training_dataset), "--init_from", str(tiny_retrieval_dir), "--train_batch_size", "2",
              "--checkpointing_steps", "1", "--report_to", "none", "--seed", "3", "--learning_rate", "1e-3",
              "--lr_warmup_steps", "1", "--selection", selection]  # fmt: skip
    full = tmp_path / "full"
    result = _run([*common, "--output_dir", str(full), "--max_train_steps", "3"])
    assert result.global_step == 3 and len(result.losses) == 3
    # The schedule's position comes from the checkpoint and its shape from the new --max_train_steps, as in
    # diffusers' examples.
    part = tmp_path / "part"
    _run([*common, "--output_dir", str(part), "--max_train_steps", "1", "--eval_split", "none"])
    resumed = _run(
        [*common, "--output_dir", str(part), "--max_train_steps", "3", "--resume_from_checkpoint", "latest"]
    )
    # Exact: the same computations in the same process, from the checkpoint's exact state.
    assert resumed.losses == result.losses
    _assert_same_weights(_weights(part), _weights(full))
    assert resumed.figures == result.figures and set(result.figures) >= {"A2V/R@1", "V2A/R@1", "A2V/MdR", "V2A/MnR"}
    assert (resumed.validation, resumed.selected_step) == (result.validation, result.selected_step)
    card = (full / "README.md").read_text()
    assert "model-index" in card and "A2V/R@1" in card and "--max_train_steps 3" in card
    if selection == "last":
        assert result.validation is None and not (full / "best").exists()
        assert "this is its last model: the protocol as the paper states it" in card
    else:
        assert 1 <= result.selected_step <= 3
        selected = [json.loads((run / "best" / "selection.json").read_text()) for run in (full, part)]
        assert selected[0] == selected[1]
        _assert_same_weights(_weights(full / "best"), _weights(full))


def test_an_epoch_drops_its_last_partial_batch_as_x_clip(sos_training_dataset, tiny_retrieval_dir, tmp_path):
    """4 training stories in batches of 3: one update an epoch, never the 1-story rest whose contrastive loss is 0
    (X-CLIP's training loaders drop_last). A split smaller than one batch is trained on whole, once an epoch."""
    from datasets import load_dataset

    assert len(load_dataset(str(sos_training_dataset), split="train")) == 4
    common = ["--dataset", str(sos_training_dataset), "--init_from", str(tiny_retrieval_dir), "--num_train_epochs", "3",
              "--eval_split", "none", "--report_to", "none", "--seed", "0", "--checkpointing_steps", "1000"]  # fmt: skip
    three = _run([*common, "--output_dir", str(tmp_path / "three"), "--train_batch_size", "3"])
    assert three.global_step == 3 and len(three.losses) == 3
    assert min(three.losses) > 0.1, three.losses
    whole = _run([*common, "--output_dir", str(tmp_path / "whole"), "--train_batch_size", "8"])
    assert whole.global_step == 3 and min(whole.losses) > 0.1, whole.losses


@pytest.mark.parametrize(
    "examples, batch, processes, accumulation, drop_last, updates",
    [(161, 16, 1, 1, True, 10), (161, 16, 1, 1, False, 11), (161, 8, 2, 1, True, 10), (161, 8, 2, 1, False, 11),
     (160, 16, 1, 1, True, 10), (161, 16, 1, 3, True, 4), (161, 16, 1, 3, False, 4), (15, 16, 1, 1, False, 1)],
)  # fmt: skip
def test_schedule_counts_the_updates_the_loader_gives(examples, batch, processes, accumulation, drop_last, updates):
    from types import SimpleNamespace

    from sound_of_story.training.loop import plan_schedule

    args = SimpleNamespace(
        train_batch_size=batch, gradient_accumulation_steps=accumulation, max_train_steps=None, num_train_epochs=2,
        lr_warmup_steps=None, lr_scheduler="constant",
    )  # fmt: skip
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = plan_schedule(args, optimizer, examples, processes, drop_last=drop_last)
    assert (schedule.updates_per_epoch, schedule.max_steps, schedule.num_epochs) == (updates, 2 * updates, 2)
    # As many as a loader of global batches gives: accelerate hands each process one share of every global batch.
    loader = torch.utils.data.DataLoader(range(examples), batch_size=batch * processes, drop_last=drop_last)
    assert -(-len(loader) // accumulation) == updates


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"train_{name}", script(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parquet_dataset(folder: Path, rows: dict[str, list], split: str = "train") -> Path:
    import datasets

    (folder / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(rows).to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    return folder


def test_bad_input_exits_with_code_2_and_a_message(sos_training_dataset, tiny_retrieval_dir, tmp_path, capsys):
    main = _load_script("retrieval").main
    base = ["--init_from", str(tiny_retrieval_dir), "--output_dir", str(tmp_path / "out"), "--report_to", "none"]
    cases = {
        "no split 'validation'": ["--dataset", str(sos_training_dataset), "--eval_split", "validation"],
        "no column(s) ['audio', 'frames']": [
            "--dataset",
            str(_parquet_dataset(tmp_path / "textonly", {"id": ["a", "b"], "text": ["x", "y"]})),
        ],
        "a split is empty": [
            "--dataset",
            str(_parquet_dataset(tmp_path / "empty", {"id": [], "audio": [], "frames": []})),
            "--eval_split",
            "none",
        ],
        "does not exist": [
            "--dataset",
            str(sos_training_dataset),
            "--resume_from_checkpoint",
            str(tmp_path / "checkpoint-9"),
        ],
        "is an audio-text model": ["--dataset", str(sos_training_dataset), "--model", "clap"],
        "cannot load the sos model": [
            "--dataset",
            str(sos_training_dataset),
            "--init_from",
            str(tmp_path / "no_model"),
        ],
    }
    for message, argv in cases.items():
        reset_accelerate()
        assert main([*base, *argv]) == 2, message
        err = capsys.readouterr().err
        assert "error:" in err and message in err and "Traceback" not in err, err


def _fresh_interpreter(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_saved_model_loads_with_auto_model_in_a_fresh_interpreter_without_the_package(tiny_retrieval_dir, tmp_path):
    done = _fresh_interpreter(
        f"""
        import sys
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(tiny_retrieval_dir)!r}, trust_remote_code=True)
        assert not any(n.startswith("sound_of_story") for n in sys.modules), "imported the package"
        print(type(model).__name__, type(model).__module__.split(".")[0])
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["SoSRetrievalModel", "transformers_modules"]


def test_saved_processor_loads_with_auto_processor_in_a_fresh_interpreter(tiny_retrieval_dir, tmp_path):
    done = _fresh_interpreter(
        f"""
        import numpy
        from transformers import AutoProcessor
        processor = AutoProcessor.from_pretrained({str(tiny_retrieval_dir)!r}, trust_remote_code=True)
        out = processor(text=["a story"], frames=[[numpy.zeros((32, 32, 3), "uint8")]])
        print(type(processor).__name__, tuple(out["pixel_values"].shape), processor.num_frames)
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["SoSRetrievalProcessor", "(1,", "40,", "3,", "32,", "32)", "40"]


def test_saved_processor_remote_code_names_the_package_it_needs(tiny_retrieval_dir, tmp_path):
    """The model's remote code is self-contained; the processor's imports `sound_of_story.audio` (the package's
    one waveform layout and resampler), so where the package is missing, loading says what to install."""
    done = _fresh_interpreter(
        f"""
        import sys
        class NotInstalled:  # as if the package were not installed
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "sound_of_story":
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        sys.meta_path.insert(0, NotInstalled())
        from transformers import AutoProcessor
        try:
            AutoProcessor.from_pretrained({str(tiny_retrieval_dir)!r}, trust_remote_code=True)
        except ImportError as error:
            print("ImportError:", error)
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ImportError:" in done.stdout and "sound_of_story" in done.stdout and "pip install" in done.stdout, (
        done.stdout
    )


def test_push_to_hub_uploads_weights_processor_and_card(tiny_retrieval_dir):
    from sound_of_story.modeling import SoSRetrievalProcessor

    model = SoSRetrievalModel.from_pretrained(tiny_retrieval_dir)
    processor = SoSRetrievalProcessor.from_pretrained(tiny_retrieval_dir)
    seen = {}

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        seen["files"] = sorted(p.name for p in Path(folder_path).iterdir())
        seen["card"] = (Path(folder_path) / "README.md").read_text()
        return "url"

    repo = mock.Mock(repo_id="user/sos-tiny")
    with (
        mock.patch("huggingface_hub.HfApi.create_repo", return_value=repo),
        mock.patch("huggingface_hub.HfApi.upload_folder", upload_folder),
    ):
        assert (
            model.push_to_hub("user/sos-tiny", processor=processor, base_models=["openai/clip-vit-base-patch32"])
            == "url"
        )
    assert {
        "README.md",
        "config.json",
        "model.safetensors",
        "modeling_sos.py",
        "processor_config.json",
        "processing_sos.py",
    } <= set(seen["files"])
    assert (
        "library_name: transformers" in seen["card"]
        and "openai/clip-vit-base-patch32" in seen["card"]
        and "# sos-tiny" in seen["card"]
    )


def test_frozen_encoder_feature_cache_trains_only_the_new_layers_and_is_reused(
    sos_training_dataset, tiny_retrieval_dir, tmp_path
):
    cache = tmp_path / "features"
    common = ["--dataset", str(sos_training_dataset), "--init_from", str(tiny_retrieval_dir), "--train_batch_size", "4", "--max_train_steps", "1",
              "--eval_split", "none", "--report_to", "none", "--learning_rate", "1e-3", "--freeze_encoders", "--feature_cache", str(cache)]  # fmt: skip
    _run([*common, "--output_dir", str(tmp_path / "a")])
    (stored,) = cache.glob("features-*.pt")
    written = stored.stat().st_mtime_ns
    # The second run's arguments are built in Python, as the demo builds them: they equal the parsed command line
    # and train the same model, exactly (the same computations in one process).
    built = RetrievalTrainingArguments(
        dataset=str(sos_training_dataset), init_from=str(tiny_retrieval_dir), train_batch_size=4, max_train_steps=1,
        eval_split="none", report_to="none", learning_rate=1e-3, freeze_encoders=True, feature_cache=str(cache),
        output_dir=str(tmp_path / "b"),
    )  # fmt: skip
    assert built == parse_retrieval_args([*common, "--output_dir", str(tmp_path / "b")])
    _run(built)
    assert [p.name for p in cache.glob("features-*")] == [
        stored.name
    ] and stored.stat().st_mtime_ns == written  # read, not recomputed
    histories = [json.loads((tmp_path / run / HISTORY_FILE).read_text()) for run in ("a", "b")]
    assert histories[0] == histories[1] and len(histories[0]) == 1
    _assert_same_weights(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    # The card of arguments built in Python gives a command line that parses back to them, with their local
    # folders shown as the card shows them (relative to the current folder, or <local>/NAME).
    (command,) = [
        line for line in (tmp_path / "b" / "README.md").read_text().splitlines() if line.startswith("accelerate")
    ]
    assert command.split()[:3] == ["accelerate", "launch", "train/retrieval.py"]
    shown = {
        name: public_path(getattr(built, name)) for name in ("dataset", "init_from", "feature_cache", "output_dir")
    }
    assert shown["dataset"] == "<local>/sos" and str(tmp_path) not in command
    assert parse_retrieval_args(shlex.split(command)[3:]) == replace(built, **shown)
    assert parse_retrieval_args(shlex.split(built.launch_command())[3:]) == built
    before, after = _weights(tiny_retrieval_dir), _weights(tmp_path / "b")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert {k.split(".")[0] for k in changed} == {"temporal_encoder", "audio_projection", "clip"}
    assert [k for k in changed if k.startswith("clip.")] == ["clip.logit_scale"]


def test_train_text_encoder_trains_the_text_tower_over_cached_audio(
    sos_training_dataset, tiny_retrieval_dir, tmp_path
):
    """`--train_text_encoder` under `--freeze_encoders`: the cache holds AST's outputs and the stories' token ids (not
    the text tower's outputs), and the text tower and projection train while AST and the vision tower stay fixed."""
    from datasets import load_dataset

    from sound_of_story.modeling import SoSRetrievalProcessor

    cache = tmp_path / "features"
    common = ["--dataset", str(sos_training_dataset), "--init_from", str(tiny_retrieval_dir), "--pair", "audio-text",
              "--train_batch_size", "4", "--max_train_steps", "2", "--eval_split", "none", "--report_to", "none",
              "--learning_rate", "1e-3", "--encoder_learning_rate", "1e-3", "--freeze_encoders", "--train_text_encoder",
              "--feature_cache", str(cache)]  # fmt: skip
    _run([*common, "--output_dir", str(tmp_path / "a")])
    (stored,) = cache.glob("features-*.pt")
    features = torch.load(stored, weights_only=True)
    assert set(features) == {"audio_first_token", "audio_tokens", "input_ids", "attention_mask"}
    processor = SoSRetrievalProcessor.from_pretrained(tiny_retrieval_dir)
    train = load_dataset(str(sos_training_dataset), split="train")
    assert torch.equal(features["input_ids"], processor(text=train["text"])["input_ids"])
    before, after = _weights(tiny_retrieval_dir), _weights(tmp_path / "a")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("clip.text_model.encoder.") for k in changed)
    assert {"clip.text_projection.weight", "clip.text_model.embeddings.token_embedding.weight"} <= changed
    assert not [k for k in changed if k.startswith(("audio_model.", "clip.vision_model.", "clip.visual_projection."))]
    # The same run again reads the cache and trains the same weights; a run without --train_text_encoder keys its
    # cache apart (it stores the text tower's outputs).
    _run([*common, "--output_dir", str(tmp_path / "b")])
    _assert_same_weights(after, _weights(tmp_path / "b"))
    frozen = [arg for arg in common if arg != "--train_text_encoder"]
    frozen[frozen.index("--encoder_learning_rate") + 1] = "1e-7"
    _run([*frozen, "--output_dir", str(tmp_path / "c")])
    assert len(list(cache.glob("features-*.pt"))) == 2
    assert not any(
        k.startswith("clip.text_model.") for k, v in _weights(tmp_path / "c").items() if not torch.equal(v, before[k])
    )


@pytest.mark.parametrize(
    "values, message",
    [
        ({"train_batch_size": 0}, "--train_batch_size must be >= 1, got 0"),
        ({"max_train_steps": 0}, "--max_train_steps must be >= 1"),
        ({"learning_rate": 0.0}, "--learning_rate must be > 0"),
        ({"lr_warmup_steps": -1}, "--lr_warmup_steps must be >= 0"),
        ({"checkpoints_total_limit": 0}, "--checkpoints_total_limit must be >= 1"),
        ({"lr_scheduler": "cosine_annealing"}, "--lr_scheduler must be one of"),
        ({"pair": "audio-image"}, "--pair must be one of"),
        ({"model": "clap"}, "--model clap is an audio-text model"),
        ({"feature_cache": "features"}, "--feature_cache needs --freeze_encoders"),
        ({"train_text_encoder": True, "pair": "audio-text"}, "--train_text_encoder keeps the text tower trainable"),
        ({"train_text_encoder": True, "freeze_encoders": True}, "it needs --freeze_encoders and --pair audio-text"),
        ({"freeze_encoders": True, "feature_cache": "f", "grad_cache": True}, "--feature_cache and --grad_cache"),
        ({"grad_cache_chunk_size": 0}, "--grad_cache_chunk_size must be >= 1"),
        ({"best_metric": "T2A/R@1"}, "--best_metric must be DIRECTION/FIGURE with a direction of audio-video"),
        ({"best_metric": "A2V/R@2"}, "--best_metric must be"),
        ({"best_metric": "A2V/R@1", "selection": "last"}, "--best_metric picks an epoch on the validation split"),
        ({"best_metric": "A2V/R@1", "eval_split": "none"}, "it has no use with --selection last"),
        ({"validation_size": 0.0}, "--validation_size must be a share (< 1) or a number of stories > 0"),
        ({"selection": "best"}, "--selection must be one of ['validation', 'last']"),
    ],
)
def test_arguments_reject_bad_values_naming_the_flag(values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        RetrievalTrainingArguments(dataset="sos", output_dir="out", **values)


def test_arguments_parse_build_and_resolve_without_changing_themselves(monkeypatch):
    argv = "--dataset sos --output_dir out --pair audio-text --grad_cache --learning_rate 3e-4".split()
    parsed = parse_retrieval_args(argv)
    built = RetrievalTrainingArguments(
        dataset="sos", output_dir="out", pair="audio-text", grad_cache=True, learning_rate=3e-4
    )
    assert parsed == built and parse_retrieval_args(built.to_argv()) == built
    assert parsed.command.endswith(shlex.join(argv))
    # The defaults that depend on the run are computed, never written back: the paper's global batch of 256
    # (audio-text) over 3 processes, and R@1 of the pair's first direction.
    resolved = built.resolved(num_processes=3)
    assert (resolved.train_batch_size, resolved.selection, resolved.best_metric) == (85, "validation", "A2T/R@1")
    assert (built.train_batch_size, built.selection, built.best_metric) == (None, None, None) and built.command is None
    # Without a test split, the paper's protocol: no validation split, the last model.
    untested = replace(built, eval_split="none").resolved(num_processes=1)
    assert (untested.selection, untested.best_metric) == ("last", None)
    assert (
        resolved.command
        == built.launch_command()
        == f"accelerate launch train/retrieval.py {shlex.join(built.to_argv())}"
    )
    assert built.per_process_batch_size(1) == 256 and replace(built, train_batch_size=8).per_process_batch_size(3) == 8
    # --help shows every field as its flag with its help and default (wide enough that no help line wraps)
    monkeypatch.setenv("COLUMNS", "1000")
    options = re.split(r"\n(?=  -)", build_retrieval_parser().format_help())
    for item in fields(RetrievalTrainingArguments):
        if item.init:
            (option,) = [" ".join(text.split()) for text in options if text.startswith(f"  --{item.name} ")]
            default = "None" if item.default is MISSING else str(item.default)
            assert option.endswith(f"{item.metadata['help'].replace('%%', '%')} (default: {default})"), option
    with pytest.raises(SystemExit) as exit_info:
        parse_retrieval_args([*argv, "--no_such_flag", "1"])
    assert exit_info.value.code == 2


def test_model_selection_uses_a_validation_split_and_the_test_split_is_read_once_at_the_end(
    sos_training_dataset, tiny_retrieval_dir, tmp_path, monkeypatch
):
    """No selection on the test split: every epoch is evaluated on a validation split carved from the training
    stories by movie (the builder's rule), the best epoch by --best_metric is the saved model, and the test split is
    evaluated once, after the last training step, on that model. The evaluation and the collator are instrumented
    (they still run): which stories each evaluation reads, which stories are trained on, and when."""
    from datasets import load_dataset

    from sound_of_story.dataset_builder.build import split_by_movie
    from sound_of_story.training import retrieval

    out = tmp_path / "run"
    evaluated, trained_ids, batches = [], set(), []
    evaluate, collate = retrieval.evaluate_retrieval, retrieval.StoryCollator.__call__

    def recording_evaluate(model, processor, stories, *args, **kwargs):
        history = out / HISTORY_FILE
        recorded_steps = len(json.loads(history.read_text())) if history.exists() else 0
        evaluated.append((sorted(stories["id"]), len(batches), recorded_steps))
        return evaluate(model, processor, stories, *args, **kwargs)

    def recording_collate(self, items):
        trained_ids.update(row["id"] for _, row in items)
        batches.append(len(items))
        return collate(self, items)

    monkeypatch.setattr(retrieval, "evaluate_retrieval", recording_evaluate)
    monkeypatch.setattr(retrieval.StoryCollator, "__call__", recording_collate)
    result = _run(["--dataset", str(sos_training_dataset), "--init_from", str(tiny_retrieval_dir), "--output_dir",
                   str(out), "--train_batch_size", "2", "--num_train_epochs", "3", "--report_to", "none", "--seed", "3",
                   "--learning_rate", "1e-3", "--lr_warmup_steps", "1", "--checkpointing_steps", "100"])  # fmt: skip

    splits = load_dataset(str(sos_training_dataset))
    train, test = splits["train"], splits["test"]
    test_ids = sorted(test["id"])
    carved = split_by_movie(list(zip(train["id"], train["movie"])), RetrievalTrainingArguments.validation_size)
    validation_ids = sorted(i for i, part in carved.items() if part == "test")
    assert validation_ids and set(validation_ids) < set(train["id"])
    # Whole movies: no movie is both trained on and validated on.
    movie = dict(zip(train["id"], train["movie"]))
    assert {movie[i] for i in validation_ids}.isdisjoint(movie[i] for i in trained_ids)
    assert trained_ids == set(train["id"]) - set(validation_ids)
    # One validation per epoch (1 update each: 2 stories in batches of 2), then the test split once, at the end.
    assert [ids for ids, _, _ in evaluated] == [validation_ids] * 3 + [test_ids]
    assert [done for _, done, _ in evaluated] == [1, 2, 3, 3]  # batches trained on before each evaluation
    assert [recorded for _, _, recorded in evaluated] == [0, 0, 0, 3]  # the test: after the run's history is final
    assert result.global_step == 3 and set(result.figures) >= {"A2V/R@1", "V2A/R@1"}
    # The saved model is the selected epoch's: it equals best/, and the card says how it was chosen.
    selection = json.loads((out / "best" / "selection.json").read_text())
    assert selection["metric"] == "A2V/R@1" and 1 <= selection["step"] <= 3
    assert result.selected_step == selection["step"]
    _assert_same_weights(_weights(out), _weights(out / "best"))
    card = (out / "README.md").read_text()
    assert "split: test" in card and "validation split" in card and f"step {selection['step']}" in card
    assert "evaluated once" in card
