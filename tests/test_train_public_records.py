"""What the training scripts and the model cards publish: no secret value (a Hub token given with --hub_token, any
flag or setting named like a token, password or key) and no absolute local path or user name, in the card, the
tracker's configuration or any file under --output_dir; and the push still authenticates with the token."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from unittest import mock

import pytest
from huggingface_hub import EvalResult, ModelCard
from training_fixtures import reset_accelerate, sos_training_dataset, tiny_retrieval_dir  # noqa: F401

from sound_of_story.cards import build_model_card
from sound_of_story.cards.public import (
    LOCAL_PLACEHOLDER,
    SECRET_PLACEHOLDER,
    is_secret_name,
    public_command,
    public_path,
    public_settings,
)
from sound_of_story.training.arguments import RetrievalTrainingArguments, training_settings
from sound_of_story.training.retrieval import parse_retrieval_args, train_retrieval

TOKEN = "hf_" + "Q7" * 17  # the shape of a Hugging Face access token, 34 characters after "hf_"


@pytest.mark.parametrize(
    "name, secret",
    [("hub_token", True), ("hub-token", True), ("token", True), ("--api_key", True), ("wandb-api-key", True),
     ("password", True), ("db_passwd", True), ("client_secret", True), ("HF_AUTH_TOKEN", True), ("hubtoken", True),
     ("credentials", True), ("private_key", True), ("max_train_steps", False), ("tokenizer", False),
     ("num_tokens", False), ("key_frames", False), ("monkey_patch", False), ("dataset", False)],
)  # fmt: skip
def test_secret_names(name, secret):
    assert is_secret_name(name) is secret


@pytest.mark.parametrize(
    "words",
    [["--hub_token", TOKEN], [f"--hub_token={TOKEN}"], ["--hub-token", TOKEN], [f"--hub-token={TOKEN}"],
     ["--token", TOKEN], ["--api_key", "s3cr3t-value"], ["--wandb-api-key=s3cr3t-value"], ["--password", "s3cr3t-value"],
     ["--unrelated", TOKEN], [f"--unrelated=x{TOKEN}"], [TOKEN]],
)  # fmt: skip
def test_command_masks_secret_values_in_every_form(words):
    command = public_command(["train/retrieval.py", "--seed", "3", *words, "--max_train_steps", "2"])
    assert TOKEN not in command and "s3cr3t" not in command
    assert SECRET_PLACEHOLDER in command
    assert shlex.split(command)[:3] == ["train/retrieval.py", "--seed", "3"]
    assert shlex.split(command)[-2:] == ["--max_train_steps", "2"]


def test_command_and_settings_make_local_paths_public(tmp_path, monkeypatch):
    home = tmp_path / "home" / "alice"
    work = home / "work"
    work.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    outside = "/srv/alice-data/sos"
    command = public_command(
        ["/opt/sos/train/retrieval.py", "--dataset", outside, f"--init_from={home}/models/tiny", "--output_dir",
         str(work / "runs" / "av"), "--feature_cache", "~/cache/features", "--clip_model", "openai/clip-vit-base-patch32",
         "--eval_cache_dir", "relative/cache"],
    )  # fmt: skip
    assert shlex.split(command) == [
        f"{LOCAL_PLACEHOLDER}/retrieval.py", "--dataset", f"{LOCAL_PLACEHOLDER}/sos",
        f"--init_from={LOCAL_PLACEHOLDER}/tiny", "--output_dir", "runs/av", "--feature_cache",
        f"{LOCAL_PLACEHOLDER}/features", "--clip_model", "openai/clip-vit-base-patch32", "--eval_cache_dir", "relative/cache",
    ]  # fmt: skip
    assert "alice" not in command
    # From a folder that holds the home folders, a relative path would start with the user's name.
    assert public_path(str(home / "data" / "sos"), cwd=tmp_path / "home") == f"{LOCAL_PLACEHOLDER}/sos"
    assert public_path(str(home), cwd="/") == LOCAL_PLACEHOLDER
    assert public_path("C:\\Users\\alice\\sos") == f"{LOCAL_PLACEHOLDER}/sos"
    settings = public_settings({"dataset": outside, "hub_token": TOKEN, "nested": {"api_key": "k", "paths": [outside]},
                                "learning_rate": 1e-4, "command": f"train.py --token {TOKEN} --dataset {outside}"})  # fmt: skip
    assert settings == {
        "dataset": f"{LOCAL_PLACEHOLDER}/sos", "hub_token": SECRET_PLACEHOLDER,
        "nested": {"api_key": SECRET_PLACEHOLDER, "paths": [f"{LOCAL_PLACEHOLDER}/sos"]}, "learning_rate": 1e-4,
        "command": f"train.py --token '{SECRET_PLACEHOLDER}' --dataset '{LOCAL_PLACEHOLDER}/sos'",
    }  # fmt: skip


def test_every_card_masks_what_its_caller_passes(tmp_path):
    """The card builder masks by itself: a caller that passes a raw command, settings, local base models, a local
    dataset or evaluation results naming it publishes none of them."""
    local_model, local_data = tmp_path / "alice" / "tiny", tmp_path / "alice" / "sos"
    local_model.mkdir(parents=True)
    local_data.mkdir()
    card = build_model_card(
        library_name="transformers", base_models=[str(local_model), "openai/clip-vit-base-patch32"],
        dataset=str(local_data), command=f"accelerate launch train/retrieval.py --hub_token {TOKEN} --dataset {local_data}",
        training_settings={"hub_token": TOKEN, "dataset": str(local_data)}, model_name="m",
        description=f"trained with token {TOKEN}",
        eval_results=[EvalResult(task_type="audio-retrieval", dataset_type=str(local_data), dataset_name=str(local_data),
                                 metric_type="r1", metric_value=1.0)],
    )  # fmt: skip
    card.save(tmp_path / "README.md")
    text = (tmp_path / "README.md").read_text()
    assert TOKEN not in text and str(tmp_path) not in text and "alice" not in text, text
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.base_model == ["openai/clip-vit-base-patch32"]  # the YAML names Hub ids only
    assert loaded.data.datasets is None
    assert loaded.data.eval_results[0].dataset_name == f"{LOCAL_PLACEHOLDER}/sos"
    assert f"`{LOCAL_PLACEHOLDER}/tiny (a local folder)`" in text


def test_argument_abbreviations_and_python_built_arguments_keep_the_token_out():
    # argparse takes --hub_tok for --hub_token: its value is still a secret
    parsed = parse_retrieval_args(["--dataset", "sos", "--output_dir", "out", "--hub_tok", TOKEN])
    assert parsed.hub_token == TOKEN and TOKEN not in parsed.command
    built = RetrievalTrainingArguments(dataset="sos", output_dir="out", hub_token=TOKEN)
    assert TOKEN not in built.launch_command()
    settings = training_settings(built)
    assert "hub_token" not in settings and TOKEN not in repr(settings)
    assert "HF_TOKEN" in RetrievalTrainingArguments.__dataclass_fields__["hub_token"].metadata["help"]


def test_a_pushed_run_publishes_no_token_and_no_local_path(sos_training_dataset, tiny_retrieval_dir, tmp_path):
    """`train/retrieval.py ... --hub_token hf_... --push_to_hub` with the tensorboard tracker: the token authenticates
    the upload and appears in no file of --output_dir (card, hparams.yml, tensorboard events, history) nor in the
    uploaded card; the card names no absolute local path."""
    out = tmp_path / "run"
    argv = ["--dataset", str(sos_training_dataset), "--init_from", str(tiny_retrieval_dir), "--output_dir", str(out),
            "--train_batch_size", "2", "--max_train_steps", "1", "--eval_split", "none",
            "--report_to", "tensorboard", "--push_to_hub", "--hub_model_id", "user/sos-run", f"--hub_token={TOKEN}"]  # fmt: skip
    seen = {}

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        seen["token"] = self.token
        seen["card"] = (Path(folder_path) / "README.md").read_text()
        return "url"

    reset_accelerate()
    with (
        mock.patch("huggingface_hub.HfApi.create_repo", return_value=mock.Mock(repo_id="user/sos-run")),
        mock.patch("huggingface_hub.HfApi.upload_folder", upload_folder),
    ):
        train_retrieval(parse_retrieval_args(argv))
    assert seen["token"] == TOKEN  # the flag still authenticates the upload
    written = [path for path in out.rglob("*") if path.is_file()]
    assert any(path.name == "hparams.yml" for path in written)
    for path in written:
        assert TOKEN.encode() not in path.read_bytes(), path
    for card in (seen["card"], (out / "README.md").read_text()):
        assert TOKEN not in card and SECRET_PLACEHOLDER in card
        for local in (tmp_path, sos_training_dataset, tiny_retrieval_dir):
            assert str(local) not in card
        assert "pytest-of-" not in card  # the user's name, in pytest's temporary folder
    hparams = next(path for path in written if path.name == "hparams.yml").read_text()
    assert str(sos_training_dataset) not in hparams and os.path.basename(sos_training_dataset) in hparams
