"""Each training default says whose choice it is, and the paper is credited only with what it says (section 4.1.2:
batch 128/256, 100 epochs, random crops, 40 frames, 77 tokens; section 4.2.2: batch 1, 16 accumulation steps, lr
1e-6, cosine, the step counts, Riffusion as the base). X-CLIP's learning rates, weight decay and warm-up come from
X-CLIP's release; the checkpoints, the optimiser's betas and epsilon and the 10.24 s window are this package's (or
diffusers', AST's) choices; the paper names CLIP, AST, Riffusion and CLAP but no checkpoint."""

from __future__ import annotations

from dataclasses import fields

import pytest
from training_fixtures import REPO

from sound_of_story.training.arguments import RetrievalTrainingArguments, SoSgenTrainingArguments


def _help(cls, name: str) -> str:
    (item,) = [f for f in fields(cls) if f.name == name]
    return item.metadata["help"]


R, G = RetrievalTrainingArguments, SoSgenTrainingArguments


@pytest.mark.parametrize(
    "cls, name, says",
    [
        (R, "train_batch_size", "the paper's global batch"),
        (R, "num_train_epochs", "section 4.1.2"),
        (R, "learning_rate", "X-CLIP's release"),
        (R, "encoder_learning_rate", "X-CLIP's release"),
        (R, "weight_decay", "X-CLIP's release"),
        (R, "lr_warmup_steps", "X-CLIP's release"),
        (R, "adam_beta2", "X-CLIP's BertAdam: 0.98"),
        (R, "adam_epsilon", "X-CLIP's BertAdam: 1e-6"),
        (R, "clip_model", "this package's choice"),
        (R, "audio_model", "this package's choice"),
        (R, "init_from", "Microsoft's CLAP"),
        (G, "learning_rate", "section 4.2.2"),
        (G, "train_batch_size", "section 4.2.2"),
        (G, "gradient_accumulation_steps", "section 4.2.2"),
        (G, "lr_warmup_steps", "the SoSgen paper states none"),
        (G, "weight_decay", "diffusers' training examples"),
        (G, "image_encoder", "this package's choice"),
        (G, "pretrained_model", "section 4.2.2"),
        (G, "ema_decay", "diffusers'"),
    ],
)
def test_each_default_says_whose_choice_it_is(cls, name, says):
    assert says in _help(cls, name), _help(cls, name)


def test_the_docs_credit_the_paper_with_what_it_says():
    text = " ".join((REPO / "docs" / "training.md").read_text().split())
    # the training window's length is AST's input, not the paper's (which says "random cropping", no length)
    assert "random 10.24 s training window" not in text
    assert "10.24 s (AST's input: 1024 frames of 10 ms; the paper gives no length)" in text
    # the retrieval optimiser: the paper gives batch and epochs only
    assert "X-CLIP's release (its run scripts' `--lr 1e-4 --coef_lr 1e-3`" in text
    for claim in ("temperature 0.01", "at most 10 fps", "10 fps"):
        assert claim not in text
