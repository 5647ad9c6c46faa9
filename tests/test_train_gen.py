"""train/gen.py and sound_of_story.training.sosgen on tiny random pipelines and a dataset built from sample clips:
two processes end to end with validation and card, resume, the ControlNet modes, LoRA, bad input."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import shlex
import subprocess

import numpy as np
import pytest
import torch
from training_fixtures import (  # noqa: F401
    REPO,
    accelerate_launch,
    launch_env,
    reset_accelerate,
    script,
    sos_training_dataset,
    tiny_sosgen_dir,
)

from sound_of_story.core import model_ids
from sound_of_story.training.arguments import SoSgenTrainingArguments
from sound_of_story.training.checkpointing import HISTORY_FILE
from sound_of_story.training.sosgen import parse_sosgen_args, train_sosgen

FAST = [
    "--gradient_accumulation_steps",
    "1",
    "--report_to",
    "none",
    "--learning_rate",
    "1e-3",
    "--lr_warmup_steps",
    "0",
    "--seed",
    "2",
]


def _run(argv: list[str]):
    reset_accelerate()
    return train_sosgen(parse_sosgen_args(argv))


def _state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_text_mode_under_two_processes_writes_a_loadable_pipeline_with_validation_and_card(
    sos_training_dataset, tiny_sosgen_dir, tmp_path
):
    from sound_of_story.pipelines import SoSgenPipeline

    out = tmp_path / "out"
    cmd = [*accelerate_launch(2), str(script("gen.py")), "--dataset", str(sos_training_dataset), "--pretrained_model", str(tiny_sosgen_dir / "text"),
           "--output_dir", str(out), "--max_train_steps", "2", "--checkpointing_steps", "1", "--checkpoints_total_limit", "1",
           "--num_validation_samples", "1", "--validation_inference_steps", "2", "--validation_fad_checkpoint", "random", "--snr_gamma", "5",
           "--use_ema", *FAST]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=launch_env())
    assert done.returncode == 0, done.stderr[-4000:]
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-2"]
    assert len(json.loads((out / HISTORY_FILE).read_text())) == 2
    trained = SoSgenPipeline.from_pretrained(out)
    base = SoSgenPipeline.from_pretrained(tiny_sosgen_dir / "text")
    assert _max_difference(_state(trained.text_encoder), _state(base.text_encoder)) > 0  # eq. 12 trains both
    assert (out / "validation" / "step-2" / "00.wav").stat().st_size > 1000
    card = (out / "README.md").read_text()
    assert "library_name: diffusers" in card and "type: fad" in card
    # A validation figure, labelled as one: 1 clip of the held-out split, 2 denoising steps, random VGGish weights.
    assert "validation FAD (VGGish, random weights): 1 clip of split 'test', 2 denoising steps" in card
    assert "not a test figure" in card and "Not the paper's schedule" in card


def test_resume_matches_an_uninterrupted_run(sos_training_dataset, tiny_sosgen_dir, tmp_path):
    from sound_of_story.pipelines import SoSgenPipeline

    common = ["--dataset", str(sos_training_dataset), "--pretrained_model", str(tiny_sosgen_dir / "text"), "--validation_split", "none",
              "--checkpointing_steps", "1", *FAST]  # fmt: skip
    _run([*common, "--output_dir", str(tmp_path / "full"), "--max_train_steps", "3"])
    _run([*common, "--output_dir", str(tmp_path / "part"), "--max_train_steps", "1"])
    resumed = _run(
        [
            *common,
            "--output_dir",
            str(tmp_path / "part"),
            "--max_train_steps",
            "3",
            "--resume_from_checkpoint",
            "latest",
        ]
    )
    assert resumed.global_step == 3 and len(resumed.losses) == 3
    full, part = SoSgenPipeline.from_pretrained(tmp_path / "full"), SoSgenPipeline.from_pretrained(tmp_path / "part")
    assert _max_difference(_state(full.unet), _state(part.unet)) == 0.0
    # The losses match step for step (the recorded learning rate of step 1 is the stopped run's own schedule's).
    losses = [[h["loss"] for h in json.loads((tmp_path / run / HISTORY_FILE).read_text())] for run in ("full", "part")]
    assert losses[0] == losses[1] and len(losses[0]) == 3


def test_image_mode_trains_a_new_controlnet_on_the_frozen_text_model(sos_training_dataset, tiny_sosgen_dir, tmp_path):
    from sound_of_story.pipelines import SoSgenControlNetPipeline, SoSgenPipeline

    out = tmp_path / "image"
    _run(["--mode", "image", "--dataset", str(sos_training_dataset), "--pretrained_model", str(tiny_sosgen_dir / "text"),
          "--image_encoder", str(tiny_sosgen_dir / "image_encoder"), "--output_dir", str(out), "--max_train_steps", "1",
          "--validation_split", "none", *FAST])  # fmt: skip
    trained = SoSgenControlNetPipeline.from_pretrained(out)
    base = SoSgenPipeline.from_pretrained(tiny_sosgen_dir / "text")
    assert trained.config.image_only is True
    assert _max_difference(_state(trained.unet), _state(base.unet)) == 0.0  # frozen (eq. 13)
    assert trained.controlnet.encoder_hid_proj is not None  # the frame projection (12 -> 8 wide)
    fresh = SoSgenControlNetPipeline.from_pretrained(out).controlnet
    assert _max_difference(_state(trained.controlnet), _state(fresh)) == 0.0


def test_lora_adapters_load_with_load_lora_weights(sos_training_dataset, tiny_sosgen_dir, tmp_path):
    from sound_of_story.pipelines import SoSgenPipeline

    out = tmp_path / "lora"
    _run(["--use_lora", "--dataset", str(sos_training_dataset), "--pretrained_model", str(tiny_sosgen_dir / "text"), "--output_dir", str(out),
          "--max_train_steps", "1", "--validation_split", "none", *FAST])  # fmt: skip
    assert (out / "pytorch_lora_weights.safetensors").exists()
    pipe = SoSgenPipeline.from_pretrained(tiny_sosgen_dir / "text")
    sample, t, context = (
        torch.randn(1, 4, 4, 16, generator=torch.Generator().manual_seed(0)),
        torch.tensor([10]),
        torch.randn(1, 16, 8),
    )
    before = pipe.unet(sample, t, encoder_hidden_states=context).sample
    pipe.load_lora_weights(out)
    after = pipe.unet(sample, t, encoder_hidden_states=context).sample
    assert float((after - before).abs().max()) > 0


def test_bad_input_exits_with_code_2_and_a_message(sos_training_dataset, tiny_sosgen_dir, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("train_gen", script("gen.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    no_unet = tmp_path / "no_unet"
    no_unet.mkdir()
    (no_unet / "model_index.json").write_text(
        json.dumps({"_class_name": "SoSgenPipeline", "vae": ["diffusers", "AutoencoderKL"]})
    )
    base = ["--dataset", str(sos_training_dataset), "--output_dir", str(tmp_path / "out"), "--report_to", "none",
            "--no_validation_fad"]  # fmt: skip
    text = ["--pretrained_model", str(tiny_sosgen_dir / "text")]
    cases = {
        "has no unet/ folder": ["--mode", "controlnet", "--pretrained_model", str(no_unet)],
        "no split 'dev'": [*text, "--validation_split", "dev"],
        "does not exist": [*text, "--resume_from_checkpoint", str(tmp_path / "checkpoint-3")],
        "no model_index.json": ["--pretrained_model", str(tmp_path)],
    }
    for message, argv in cases.items():
        assert module.main([*base, *argv]) == 2, message
        err = capsys.readouterr().err
        assert "error:" in err and message in err and "Traceback" not in err, err
    with pytest.raises(SystemExit) as exit_info:
        module.main([*base, *text, "--mode", "sound"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    "values, message",
    [
        ({"gradient_accumulation_steps": 0}, "--gradient_accumulation_steps must be >= 1, got 0"),
        ({"mode": "audio"}, "--mode must be one of ['text', 'controlnet', 'image'], got 'audio'"),
        ({"mixed_precision": "fp8"}, "--mixed_precision must be one of"),
        ({"use_lora": True, "mode": "image"}, "--use_lora is implemented for --mode text"),
        ({"use_lora": True, "use_ema": True}, "--use_lora and --use_ema do not combine"),
        ({"validation_steps": 0}, "--validation_steps must be >= 1"),
        ({"num_validation_samples": 0}, "--num_validation_samples must be >= 1"),
        ({"snr_gamma": 0.0}, "--snr_gamma must be > 0"),
        ({"proportion_empty_prompts": 1.5}, "--proportion_empty_prompts must be in [0, 1], got 1.5"),
    ],
)
def test_arguments_reject_bad_values_naming_the_flag(values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        SoSgenTrainingArguments(dataset="sos", output_dir="out", **values)


def test_empty_prompts_replace_the_stated_share_of_texts_and_leave_the_windows_unchanged():
    """`--proportion_empty_prompts`: the draw is per example and reproducible, and it does not move the window."""
    from sound_of_story.pipelines.tiny_random import SPECTROGRAM, tiny_tokenizer
    from sound_of_story.training.sosgen import SliceCollator

    rate = 8000
    rows = [
        (i, {"audio": {"array": np.sin(np.arange(3 * rate) * (i + 1) / 50.0), "sampling_rate": rate}, "text": f"scene {i}"})
        for i in range(400)
    ]  # fmt: skip
    tokenizer = tiny_tokenizer()
    empty = tokenizer([""], max_length=16, padding="max_length", return_tensors="pt").input_ids[0]

    def collate(share: float):
        return SliceCollator(SPECTROGRAM, 128, tokenizer, "text", seed=3, empty_prompt_share=share)(rows)

    never, some, again = collate(0.0), collate(0.3), collate(0.3)
    dropped = (some["input_ids"] == empty).all(dim=1)
    assert not (never["input_ids"] == empty).all(dim=1).any()
    assert 0.25 < dropped.float().mean() < 0.35  # 400 draws at 0.3: standard error 0.023
    assert torch.equal(some["input_ids"], again["input_ids"])
    assert torch.equal(some["input_ids"][~dropped], never["input_ids"][~dropped])
    assert torch.equal(some["window_start"], never["window_start"])
    assert torch.equal(collate(1.0)["input_ids"], empty.expand(400, -1))


def test_arguments_built_in_python_equal_the_parsed_command_line():
    argv = ["--mode", "controlnet", "--dataset", "sos", "--output_dir", "out", "--use_ema", "--snr_gamma", "5"]
    built = SoSgenTrainingArguments(mode="controlnet", dataset="sos", output_dir="out", use_ema=True, snr_gamma=5.0)
    assert parse_sosgen_args(argv) == built and parse_sosgen_args(built.to_argv()) == built
    # the paper's section 4.2.2 defaults
    assert (built.train_batch_size, built.gradient_accumulation_steps, built.learning_rate) == (1, 16, 1e-6)
    assert (
        built.held_out_split == "test"
        and SoSgenTrainingArguments(dataset="sos", output_dir="out", validation_split="none").held_out_split is None
    )


@pytest.mark.parametrize(
    "fad_flags, message",
    [([], "no VGGish checkpoint given"), (["--validation_fad_checkpoint", "missing/vggish.pth"], "does not exist")],
)
def test_the_validation_fad_checkpoint_is_resolved_before_the_first_step(
    sos_training_dataset, tiny_sosgen_dir, tmp_path, capsys, fad_flags, message
):
    """Validation with FAD needs torchvggish's checkpoint: a run that cannot have it stops before any training work
    (no checkpoint, history or validation output), with the same message as at validation, exit 2. With
    --no_validation_fad, 'random' or no validation split, none is needed."""
    spec = importlib.util.spec_from_file_location("train_gen_fad", script("gen.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "out"
    argv = ["--dataset", str(sos_training_dataset), "--pretrained_model", str(tiny_sosgen_dir / "text"),
            "--output_dir", str(out), "--max_train_steps", "2", "--checkpointing_steps", "1", "--validation_steps", "1",
            "--num_validation_samples", "1", "--validation_inference_steps", "1", *FAST]  # fmt: skip
    reset_accelerate()
    assert module.main([*argv, *fad_flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "vggish-10086976.pth" in err and "Traceback" not in err, err
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())
    reset_accelerate()
    assert module.main([*argv, "--no_validation_fad", "--max_train_steps", "1"]) == 0
    assert (out / "validation" / "step-1" / "00.wav").exists()


@pytest.mark.parametrize(
    "mode, reading, updates",
    [("text", "passes", 25_375), ("controlnet", "passes", 32_813), ("image", "passes", 32_813),
     ("text", "updates", 406_000), ("image", "updates", 525_000)],
)  # fmt: skip
def test_paper_schedule_sets_the_papers_steps_of_each_mode(mode, reading, updates):
    """Section 4.2.2: SoSgen_text 406,000 steps, SoSgen_text+image 525,000 more, SoSgen_image 525,000, at batch 1,
    16 accumulation steps, lr 1e-6, cosine. 'passes' reads a step as a forward/backward pass (16 to an update),
    'updates' as an optimizer update; --max_train_steps counts updates."""
    args = parse_sosgen_args(["--mode", mode, "--dataset", "sos", "--output_dir", "out", "--paper_schedule", reading])
    resolved = args.resolved()
    assert (resolved.max_train_steps, resolved.lr_warmup_steps) == (updates, 0)
    assert (resolved.train_batch_size, resolved.gradient_accumulation_steps) == (1, 16)
    assert (resolved.learning_rate, resolved.lr_scheduler) == (1e-6, "cosine")
    assert (args.max_train_steps, args.lr_warmup_steps) == (None, None)  # computed, not written back
    assert parse_sosgen_args(resolved.to_argv()) == resolved
    text = resolved.schedule_description(updates, 1)
    paper_steps = {"text": "406,000", "controlnet": "525,000", "image": "525,000"}[mode]
    assert f"its {paper_steps} steps read as" in text and f"{updates:,} optimizer updates" in text
    assert ("forward/backward passes" in text) == (reading == "passes")


@pytest.mark.parametrize(
    "flags, message",
    [(["--max_train_steps", "10"], "--paper_schedule sets --max_train_steps (25375 for --mode text)"),
     (["--learning_rate", "1e-4"], "--paper_schedule is the paper's learning rate too (1e-06)"),
     (["--gradient_accumulation_steps", "1"], "--gradient_accumulation_steps 1 is not"),
     (["--lr_warmup_steps", "5"], "--paper_schedule trains without warm-up")],
)  # fmt: skip
def test_paper_schedule_refuses_flags_that_change_it(flags, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_sosgen_args(["--dataset", "sos", "--output_dir", "out", "--paper_schedule", "passes", *flags])


def test_the_card_states_the_schedule_and_labels_the_validation_fad(
    sos_training_dataset, tiny_sosgen_dir, tmp_path, monkeypatch
):
    """A --paper_schedule run (the paper's steps shrunk to 32 passes, i.e. 2 updates of 16, so that it runs here):
    its card says which schedule it trained with and how the paper's steps were read, and its FAD entry is a
    validation figure with its split, clips and denoising steps."""
    from sound_of_story.training import arguments

    monkeypatch.setitem(arguments.PAPER_SOSGEN_STEPS, "text", 32)
    out = tmp_path / "paper"
    result = _run(["--dataset", str(sos_training_dataset), "--pretrained_model", str(tiny_sosgen_dir / "text"),
                   "--output_dir", str(out), "--paper_schedule", "passes", "--report_to", "none", "--seed", "2",
                   "--checkpointing_steps", "100", "--validation_steps", "100", "--num_validation_samples", "2",
                   "--validation_inference_steps", "1", "--validation_fad_checkpoint", "random"])  # fmt: skip
    assert result.global_step == 2
    history = json.loads((out / HISTORY_FILE).read_text())
    # lr 1e-6, cosine over 2 updates, no warm-up: the rate recorded after the first update is half the initial one
    assert [h["lr"] for h in history] == pytest.approx([1e-6 * (1 + math.cos(math.pi / 2)) / 2, 0.0], abs=1e-15)
    card = (out / "README.md").read_text()
    assert (
        "Schedule: the paper's SoSgen_text schedule (section 4.2.2), its 32 steps read as forward/backward passes of "
        "one example, 16 to an update" in card
    )
    assert "2 optimizer updates, each of 16 accumulated batches of 1 on 1 process(es) (32 examples)" in card
    assert "learning rate 1e-06, cosine schedule, 0 warm-up steps" in card
    # The clips the FAD compared: 2 asked for, as many as the held-out split holds.
    from datasets import load_dataset

    clips = min(2, len(load_dataset(str(sos_training_dataset), "generation", split="test")))
    label = f"validation FAD (VGGish, random weights): {clips} clip{'s' if clips > 1 else ''} of split 'test'"
    assert f"{label}, 1 denoising step" in " ".join(card.replace("''", "'").split())
    assert "split: test" in card and "name: Validation during training" in card


def _documented_gen_commands() -> list[list[str]]:
    """The `accelerate launch train/gen.py ...` commands of docs/training.md, continuation lines joined."""
    text = (REPO / "docs" / "training.md").read_text().replace("\\\n", " ")
    return [shlex.split(line)[3:] for line in text.splitlines() if line.startswith("accelerate launch train/gen.py")]


def test_the_documented_recipe_starts_each_generator_where_the_paper_does():
    """Section 4.2.2 and Figure 5: SoSgen_text is fine-tuned from Riffusion, SoSgen_text+image continues from
    SoSgen_text (its model frozen), SoSgen_image starts from the Riffusion checkpoint, not from SoSgen_text."""
    recipes = {}
    for argv in _documented_gen_commands():
        if "..." not in argv:
            args = parse_sosgen_args(argv)
            recipes.setdefault(args.mode, args)
    assert set(recipes) == {"text", "controlnet", "image"}
    assert recipes["text"].pretrained_model == model_ids.RIFFUSION
    assert recipes["controlnet"].pretrained_model == recipes["text"].output_dir
    assert recipes["image"].pretrained_model == model_ids.RIFFUSION
    assert all(args.paper_schedule == "passes" for args in recipes.values())
