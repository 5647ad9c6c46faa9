"""train/retrieval.py trains the Table 2 baselines end to end: Wav2CLIP (audio-video) and CLAP (audio-text).

Each runs the package's training loop on a built SoS folder from a tiny random baseline saved in code, and is
checked by value: the loss on the same stories falls, the saved model loads as its own class, the parts the
paper trains change and the others do not, and the saved model scores the held-out stories with the
evaluation code.
"""

from __future__ import annotations

import json

import pytest
import torch
from evaluation_fixtures import tiny_retrieval_models  # noqa: F401
from training_fixtures import reset_accelerate, sos_training_dataset  # noqa: F401

from sound_of_story.modeling import ClapRetrievalBaseline, Wav2CLIPBaselineModel
from sound_of_story.training.checkpointing import HISTORY_FILE
from sound_of_story.training.retrieval import parse_retrieval_args, train_retrieval


def _train(argv: list[str]):
    reset_accelerate()
    return train_retrieval(parse_retrieval_args(argv))


def _changed(before: torch.nn.Module, after: torch.nn.Module) -> set[str]:
    old, new = before.state_dict(), after.state_dict()
    assert old.keys() == new.keys()
    return {k for k in old if not torch.equal(old[k], new[k])}


@pytest.mark.parametrize(
    "kind, pair, model_class, directions",
    [
        ("wav2clip", "audio-video", Wav2CLIPBaselineModel, ("A2V/R@1", "V2A/R@1")),
        ("clap", "audio-text", ClapRetrievalBaseline, ("A2T/R@1", "T2A/R@1")),
    ],
)
def test_baseline_trains_saves_and_evaluates(
    kind, pair, model_class, directions, sos_training_dataset, tiny_retrieval_models, tmp_path
):
    start = tiny_retrieval_models[kind]
    out = tmp_path / kind
    result = _train(
        [
            "--model", kind, "--pair", pair, "--dataset", str(sos_training_dataset), "--init_from", str(start),
            "--output_dir", str(out), "--train_batch_size", "4", "--max_train_steps", "8",
            "--learning_rate", "1e-2", "--encoder_learning_rate", "1e-3", "--lr_warmup_steps", "0",
            "--report_to", "none", "--seed", "0",
        ]
    )  # fmt: skip
    losses = [h["loss"] for h in json.loads((out / HISTORY_FILE).read_text())]
    assert len(losses) == 8 and all(torch.isfinite(torch.tensor(losses)))
    # the same few stories every epoch: the contrastive loss must come down
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2, losses

    trained = model_class.from_pretrained(out)
    changed = _changed(model_class.from_pretrained(start), trained)
    assert changed, "training changed no weight"
    tops = {k.split(".")[0] for k in changed}
    if kind == "wav2clip":
        # fine-tuned as the paper does (section 5.1: "from their pretrained weights"): the audio encoder and CLIP's
        # image side move; CLIP's text tower, which audio-video retrieval never uses, is frozen
        assert {"audio_encoder", "audio_projection"} <= tops, tops
        assert any(k.startswith("clip.vision_model.") for k in changed), tops
        assert not any(k.startswith(("clip.text_model.", "clip.text_projection.")) for k in changed), tops
    else:
        # CLAP: every tower and projection of the audio-text model is fine-tuned
        assert any(k.startswith("audio_model.") for k in changed) and any(k.startswith("text_model.") for k in changed)

    # the per-epoch evaluation of the held-out stories, in both directions, with figures in range
    assert set(result.figures) >= set(directions)
    assert all(0.0 <= result.figures[d] <= 100.0 for d in directions)
    card = (out / "README.md").read_text()
    assert f"--model {kind}" in card and directions[0] in card


def test_wav2clip_starts_from_its_released_checkpoint_file(sos_training_dataset, tmp_path):
    """--model wav2clip_original without --init_from: the audio encoder starts from a checkpoint file in Wav2CLIP's
    released format (a flat state dict), CLIP from --clip_model; the audio side trains at the encoder rate and CLIP
    stays frozen (Wav2CLIP's design), and the card names the checkpoint."""
    from transformers import CLIPImageProcessor, CLIPModel

    from sound_of_story.modeling import Wav2CLIPOriginalConfig, Wav2CLIPOriginalModel
    from sound_of_story.modeling.tiny_random import TINY_IMAGE_SIZE, tiny_clip_config_dict, tiny_clip_tokenizer

    clip_config = tiny_clip_config_dict()
    clip_config["projection_dim"] = 512  # the released audio side maps into a 512-d space
    torch.manual_seed(0)
    clip_dir = tmp_path / "clip"
    CLIPModel(Wav2CLIPOriginalConfig(clip_config=clip_config).clip_config).save_pretrained(clip_dir)
    tiny_clip_tokenizer().save_pretrained(clip_dir)
    size = {"shortest_edge": TINY_IMAGE_SIZE}
    CLIPImageProcessor(size=size, crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}).save_pretrained(
        clip_dir
    )
    released = Wav2CLIPOriginalModel(Wav2CLIPOriginalConfig(clip_config=clip_config)).original_state_dict()
    checkpoint = tmp_path / "Wav2CLIP.pt"
    torch.save(released, checkpoint)

    out = tmp_path / "wav2clip-original"
    _train(
        [
            "--model", "wav2clip_original", "--pair", "audio-video", "--dataset", str(sos_training_dataset),
            "--original_checkpoint", str(checkpoint), "--clip_model", str(clip_dir), "--output_dir", str(out),
            "--train_batch_size", "4", "--max_train_steps", "2", "--learning_rate", "1e-2",
            "--encoder_learning_rate", "1e-3", "--lr_warmup_steps", "0", "--report_to", "none", "--seed", "0",
        ]
    )  # fmt: skip
    trained = Wav2CLIPOriginalModel.from_pretrained(out)
    start = trained.original_state_dict()
    assert start.keys() == released.keys()
    moved = {k for k in released if not torch.equal(released[k], start[k]) and released[k].is_floating_point()}
    assert any(k.startswith("audio_encoder.") for k in moved) and any(k.startswith("audio_transform.") for k in moved)
    clip = CLIPModel.from_pretrained(clip_dir).state_dict()
    assert all(torch.equal(v, trained.clip.state_dict()[k]) for k, v in clip.items())  # CLIP stays frozen
    card = (out / "README.md").read_text()
    assert "wav2clip_original" in card and "Wav2CLIP.pt" in card and str(tmp_path) not in card


def test_original_format_baselines_are_checked_against_their_pair():
    from sound_of_story.training.arguments import RetrievalTrainingArguments

    for model, pair in (("msclap", "audio-video"), ("wav2clip_original", "audio-text")):
        with pytest.raises(ValueError, match=f"--model {model}"):
            RetrievalTrainingArguments(dataset="d", output_dir="o", model=model, pair=pair)
    with pytest.raises(ValueError, match="--original_checkpoint"):
        RetrievalTrainingArguments(dataset="d", output_dir="o", model="sos", original_checkpoint="x.pt")
