"""Resuming from a checkpoint folder runs none of its code: a downloaded checkpoint may hold pickles whose loading
calls anything. The EMA weights are saved as safetensors (`save_pretrained`), never as accelerate's custom pickle;
every file accelerate would unpickle is checked to load with `torch.load(weights_only=True)` first; anything else
pickled is refused naming the file, before accelerate's `load_state` touches it; a resumed EMA run still equals an
uninterrupted one bit for bit."""

from __future__ import annotations

import importlib.util
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from training_fixtures import (  # noqa: F401
    reset_accelerate,
    script,
    sos_training_dataset,
    tiny_retrieval_dir,
    tiny_sosgen_dir,
)

from sound_of_story.training.checkpointing import HISTORY_FILE
from sound_of_story.training.sosgen import parse_sosgen_args, train_sosgen

FAST = ["--gradient_accumulation_steps", "1", "--report_to", "none", "--learning_rate", "1e-3", "--lr_warmup_steps",
        "0", "--seed", "2", "--validation_split", "none", "--checkpointing_steps", "1"]  # fmt: skip


class Planted:
    """A pickle whose loading creates `marker` (any callable would do: `open` stands for arbitrary code)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _gen_main():
    spec = importlib.util.spec_from_file_location("train_gen_safety", script("gen.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _common(dataset: Path, pipeline: Path) -> list[str]:
    return ["--dataset", str(dataset), "--pretrained_model", str(pipeline / "text"), "--use_ema", *FAST]


@pytest.fixture(scope="module")
def ema_run(sos_training_dataset, tiny_sosgen_dir, tmp_path_factory) -> Path:  # noqa: F811
    """A --use_ema run stopped after one step: OUT/checkpoint-1."""
    out = tmp_path_factory.mktemp("ema") / "part"
    reset_accelerate()
    train_sosgen(parse_sosgen_args([*_common(sos_training_dataset, tiny_sosgen_dir), "--output_dir", str(out),
                                    "--max_train_steps", "1"]))  # fmt: skip
    return out


def test_ema_checkpoint_holds_safetensors_and_no_custom_pickle(ema_run):
    checkpoint = ema_run / "checkpoint-1"
    names = sorted(p.relative_to(checkpoint).as_posix() for p in checkpoint.rglob("*") if p.is_file())
    assert not [n for n in names if n.startswith("custom_checkpoint")], names
    assert "unet_ema/diffusion_pytorch_model.safetensors" in names and "unet_ema/config.json" in names
    ema_config = json.loads((checkpoint / "unet_ema" / "config.json").read_text())
    assert ema_config["optimization_step"] == 1 and ema_config["decay"] == 0.9999


def _torch_pickle(path: Path, marker: Path) -> None:
    torch.save(Planted(marker), path)


def _raw_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(Planted(marker)))


# (file planted in checkpoint-1, how it is written, what the error says)
PLANTED = [
    ("custom_checkpoint_0.pkl", _torch_pickle, "full pickle load"),  # accelerate: torch.load(weights_only=False)
    ("random_states_0.pkl", _torch_pickle, "weights_only=True"),  # accelerate would skip it silently
    ("optimizer.bin", _torch_pickle, "weights_only=True"),
    ("scheduler.bin", _raw_pickle, "not a torch.save archive"),
    ("unet_ema/diffusion_pytorch_model.bin", _torch_pickle, "a pickle"),
    ("extra/notes.pt", _raw_pickle, "a pickle"),
    ("state.dat", _raw_pickle, "a pickle"),  # a pickle by its content, whatever its name
]


@pytest.mark.parametrize("name, write, message", PLANTED, ids=[p[0] for p in PLANTED])
def test_a_planted_pickle_is_refused_before_it_runs(
    ema_run,
    sos_training_dataset,
    tiny_sosgen_dir,
    tmp_path,
    capsys,
    name,
    write,
    message,  # noqa: F811
):
    out = tmp_path / "run"
    shutil.copytree(ema_run, out)
    planted, marker = out / "checkpoint-1" / name, tmp_path / "code-ran"
    planted.parent.mkdir(parents=True, exist_ok=True)
    write(planted, marker)
    reset_accelerate()
    code = _gen_main()([*_common(sos_training_dataset, tiny_sosgen_dir), "--output_dir", str(out),
                        "--max_train_steps", "2", "--resume_from_checkpoint", "latest"])  # fmt: skip
    err = capsys.readouterr().err
    assert not marker.exists(), "the planted pickle ran"
    assert code == 2, err
    assert name in err and message in err and "Traceback" not in err, err
    assert not (out / "checkpoint-2").exists()  # refused before any training


def test_resumed_ema_run_equals_an_uninterrupted_one(ema_run, sos_training_dataset, tiny_sosgen_dir, tmp_path):  # noqa: F811
    from sound_of_story.pipelines import SoSgenPipeline

    common = _common(sos_training_dataset, tiny_sosgen_dir)
    reset_accelerate()
    train_sosgen(parse_sosgen_args([*common, "--output_dir", str(tmp_path / "full"), "--max_train_steps", "3"]))
    part = tmp_path / "part"
    shutil.copytree(ema_run, part)
    reset_accelerate()
    train_sosgen(parse_sosgen_args([*common, "--output_dir", str(part), "--max_train_steps", "3",
                                    "--resume_from_checkpoint", "latest"]))  # fmt: skip
    # The saved UNet holds the EMA weights; the EMA state of the last checkpoint equals too.
    full, resumed = (SoSgenPipeline.from_pretrained(tmp_path / run).unet.state_dict() for run in ("full", "part"))
    assert full.keys() == resumed.keys() and all(torch.equal(full[k], resumed[k]) for k in full)
    base = SoSgenPipeline.from_pretrained(tiny_sosgen_dir / "text").unet.state_dict()
    assert any(not torch.equal(full[k], base[k]) for k in full)
    from safetensors.torch import load_file

    emas = [load_file(tmp_path / run / "checkpoint-3" / "unet_ema" / "diffusion_pytorch_model.safetensors") for run in ("full", "part")]  # fmt: skip
    assert all(torch.equal(emas[0][k], emas[1][k]) for k in emas[0])
    losses = [[h["loss"] for h in json.loads((tmp_path / run / HISTORY_FILE).read_text())] for run in ("full", "part")]
    assert losses[0] == losses[1] and len(losses[0]) == 3


def test_a_planted_feature_cache_file_is_refused_before_it_runs(
    sos_training_dataset,
    tiny_retrieval_dir,
    tmp_path,
    capsys,
    monkeypatch,  # noqa: F811
):
    """The frozen-encoder cache is read with torch.load(weights_only=True) passed explicitly: even where torch's
    default is turned off (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 overrides an implicit default only), a pickle planted in
    the cache folder does not run, and the run stops naming the file."""
    from sound_of_story.training.retrieval import parse_retrieval_args, train_retrieval

    cache = tmp_path / "features"
    argv = ["--dataset", str(sos_training_dataset), "--init_from", str(tiny_retrieval_dir), "--train_batch_size", "4",
            "--max_train_steps", "1", "--eval_split", "none", "--report_to", "none",
            "--freeze_encoders", "--feature_cache", str(cache)]  # fmt: skip
    reset_accelerate()
    train_retrieval(parse_retrieval_args([*argv, "--output_dir", str(tmp_path / "a")]))
    (stored,) = cache.glob("features-*.pt")
    marker = tmp_path / "code-ran"
    _torch_pickle(stored, marker)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    spec = importlib.util.spec_from_file_location("train_retrieval_safety", script("retrieval.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reset_accelerate()
    code = module.main([*argv, "--output_dir", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert not marker.exists(), "the planted pickle ran"
    assert code == 2 and stored.name in err and "weights_only=True" in err and "Traceback" not in err, err
