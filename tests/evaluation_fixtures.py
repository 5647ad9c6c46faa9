"""Fixtures of the evaluation tests (tests/test_evaluate_*.py import them): one SoS dataset built from the
session's sample clips, and tiny random retrieval models saved to folders, each made once per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# Stories of the session's sample clips (2 CMD + LSMDC runs joined into 6 s stories) get three movie labels,
# so that the split by movie leaves several stories on each side.
LSMDC_STORY_SECONDS = 6.0
NUM_MOVIES = 3

_made: dict[str, Path] = {}


def _once(name: str, make, tmp_path_factory) -> Path:
    if name not in _made:
        _made[name] = make(tmp_path_factory.mktemp(name))
    return _made[name]


@pytest.fixture(scope="session")
def sos_eval_dataset(cmd_samples, lsmdc_samples, tmp_path_factory) -> Path:
    """A built SoS folder (stories and generation configs) from conftest's CMD and LSMDC sample clips."""

    def make(root: Path) -> Path:
        from sound_of_story.dataset_builder.build import build_dataset

        rows = []
        for folder, _ in (cmd_samples, lsmdc_samples):
            for line in (folder / "manifest.jsonl").read_text().splitlines():
                row = json.loads(line)
                row["video"] = str(folder / row["video"])
                row["movie"] = f"movie_{len(rows) % NUM_MOVIES}"
                rows.append(row)
        manifest = root / "manifest.jsonl"
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        build_dataset(manifest, root / "sos", test_size=0.5, lsmdc_target_s=LSMDC_STORY_SECONDS, progress=False)
        return root / "sos"

    return _once("sos_eval_dataset", make, tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_retrieval_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random SoS, Wav2CLIP-baseline and CLAP models, each saved with its processor."""

    def make(root: Path) -> Path:
        import torch
        from transformers import ClapFeatureExtractor

        from sound_of_story.modeling import (
            ClapBaselineProcessor,
            ClapRetrievalBaseline,
            SoSRetrievalModel,
            Wav2CLIPBaselineModel,
        )
        from sound_of_story.modeling.tiny_random import (
            tiny_clap_config,
            tiny_clip_tokenizer,
            tiny_retrieval_config,
            tiny_retrieval_processor,
            tiny_wav2clip_config,
        )

        torch.manual_seed(0)
        SoSRetrievalModel(tiny_retrieval_config()).save_pretrained(root / "sos")
        tiny_retrieval_processor().save_pretrained(root / "sos")
        Wav2CLIPBaselineModel(tiny_wav2clip_config()).save_pretrained(root / "wav2clip")
        tiny_retrieval_processor().save_pretrained(root / "wav2clip")
        ClapRetrievalBaseline(tiny_clap_config()).save_pretrained(root / "clap")
        ClapBaselineProcessor(
            feature_extractor=ClapFeatureExtractor(), tokenizer=tiny_clip_tokenizer()
        ).save_pretrained(root / "clap")
        return root

    root = _once("tiny_retrieval_models", make, tmp_path_factory)
    return {kind: root / kind for kind in ("sos", "wav2clip", "clap")}
