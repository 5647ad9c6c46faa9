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
