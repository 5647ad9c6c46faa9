"""Fixtures of the training tests (tests/test_train_*.py import them): one small SoS dataset built from sample
clips, and tiny random retrieval models and SoSgen pipelines saved to folders, each made once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TRAIN_SEED = 3
# Six 10 s CMD-style clips, two per movie; the test split is one movie (2 stories), training the other 4.
NUM_CLIPS = 6
CLIP_SECONDS = 10.0
TEST_STORIES = 2

REPO = Path(__file__).resolve().parents[1]
_made: dict[str, Path] = {}


def reset_accelerate() -> None:
    """Each in-process training run builds its own Accelerator; accelerate keeps its state in process-wide singletons."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def script(name: str) -> Path:
    return REPO / "train" / name


def accelerate_launch(num_processes: int) -> list[str]:
    """`accelerate launch` of `num_processes` CPU processes (gloo). accelerate 1.15's `--cpu --num_processes N` starts
    ONE process unless an mpirun hostfile is configured, so the processes are started by the torchrun launcher
    (`--multi_gpu`) and kept on the CPU by ACCELERATE_USE_CPU=1 (`launch_env`)."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
    ]


def launch_env() -> dict[str, str]:
    return {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}


def _once(name: str, make, tmp_path_factory) -> Path:
    if name not in _made:
        _made[name] = make(tmp_path_factory.mktemp(name))
    return _made[name]


@pytest.fixture(scope="session")
def sos_training_dataset(tmp_path_factory) -> Path:
    """A built SoS folder (stories and generation configs) from sample clips."""

    def make(root: Path) -> Path:
        from sound_of_story.dataset_builder.build import build_dataset
        from sound_of_story.dataset_builder.samples import generate_samples

        generate_samples(
            root / "clips", num_clips=NUM_CLIPS, seed=TRAIN_SEED, duration_s=CLIP_SECONDS, style="cmd", progress=False
        )
        build_dataset(root / "clips" / "manifest.jsonl", root / "sos", test_size=TEST_STORIES, progress=False)
        return root / "sos"

    return _once("sos_training_dataset", make, tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_retrieval_dir(tmp_path_factory) -> Path:
    """A tiny random SoSRetrievalModel and its processor, saved (what --init_from takes)."""

    def make(root: Path) -> Path:
        import torch

        from sound_of_story.modeling import SoSRetrievalModel
        from sound_of_story.modeling.tiny_random import tiny_retrieval_config, tiny_retrieval_processor

        torch.manual_seed(0)
        SoSRetrievalModel(tiny_retrieval_config(audio_token_pooling="frequency")).save_pretrained(root)
        tiny_retrieval_processor().save_pretrained(root)
        return root

    return _once("tiny_retrieval_dir", make, tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_retrieval_dir_float64(tmp_path_factory, tiny_retrieval_dir) -> Path:
    """The tiny retrieval model of `tiny_retrieval_dir` in float64 (the same weights, widened), with its processor:
    training it runs in float64, whose rounding is small enough to bound (`FLOAT64_ROUNDOFF`)."""

    def make(root: Path) -> Path:
        import torch

        from sound_of_story.modeling import SoSRetrievalModel, SoSRetrievalProcessor

        SoSRetrievalModel.from_pretrained(tiny_retrieval_dir).to(torch.float64).save_pretrained(root)
        SoSRetrievalProcessor.from_pretrained(tiny_retrieval_dir).save_pretrained(root)
        return root

    return _once("tiny_retrieval_dir_float64", make, tmp_path_factory)


# Rounding bounds of the float64 tests. u = 2^-53 is float64's unit roundoff. A float64 sum of n terms is off by at
# most n u times the sum of the terms' magnitudes (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed.,
# eq. 4.4). In the tiny retrieval model a feature or a gradient comes out of a chain of such sums with fewer than
# 10^4 terms in all (the longest single sum, a weight gradient over 4 stories x 514 AST tokens, has 2056), so its
# error is below 10^4 u of its terms' magnitudes, which are of the order of the largest gradient for 4 stories.
FLOAT64_ROUNDOFF = 2.0**-53
SUM_TERMS = 10_000


def similarity_rounding_bound(temperature: float) -> float:
    """The relative rounding error bound of the multi-grained similarity (and of the gradients through it) in float64.

    A softmax pooling `sum_k softmax(c / T)_k c_k` of cosines c in [-1, 1] moves by at most (1 + 2 / T) times the
    largest change of the c's (its derivative in c_k is `softmax_k (1 + (c_k - pooled) / T)`); the similarity nests
    two such poolings, so a relative error `SUM_TERMS u` of the features becomes at most (1 + 2 / T)^2 times it.
    """
    return (1 + 2 / temperature) ** 2 * SUM_TERMS * FLOAT64_ROUNDOFF


@pytest.fixture(scope="session")
def tiny_sosgen_dir(tmp_path_factory) -> Path:
    """A tiny random SoSgenPipeline saved (what --pretrained_model takes), and next to it `image_encoder/`: a tiny
    CLIP vision model with its image processor (what --image_encoder takes)."""

    def make(root: Path) -> Path:
        from sound_of_story.pipelines.tiny_random import tiny_components, tiny_frame_components, tiny_sosgen

        components = tiny_components()
        tiny_sosgen(components).save_pretrained(root / "text")
        frames = tiny_frame_components(components)
        frames["image_encoder"].save_pretrained(root / "image_encoder")
        frames["feature_extractor"].save_pretrained(root / "image_encoder")
        return root

    return _once("tiny_sosgen_dir", make, tmp_path_factory)
