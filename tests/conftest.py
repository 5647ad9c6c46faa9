"""Shared fixtures. Tests never reach a hub and never read an earlier cache."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

# Before anything imports huggingface_hub / datasets / transformers: offline, and a cache
# of our own that starts empty (also when pytest is run directly, not via `make test`).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="sos-test-hf-home-")
atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)

# The tests test the checkout they live in, here and in every subprocess they start (the CLI, accelerate
# launch, Ray workers), whichever clone last ran .ci/bootstrap.sh: the venv is shared between clones and its
# editable install points at that one. A folder holding a `sound_of_story` link to this checkout goes first on
# sys.path and PYTHONPATH (the editable install's finder comes after the path).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PACKAGE_PATH = tempfile.mkdtemp(prefix="sos-test-package-")
os.symlink(REPO_ROOT, os.path.join(_PACKAGE_PATH, "sound_of_story"), target_is_directory=True)
atexit.register(shutil.rmtree, _PACKAGE_PATH, ignore_errors=True)  # removes the link, never what it points to
sys.path.insert(0, _PACKAGE_PATH)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PATH, os.environ.get("PYTHONPATH")) if p)
assert "sound_of_story" not in sys.modules, "conftest must run before anything imports sound_of_story"

import json  # noqa: E402 - the environment above must be set before these imports
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from sound_of_story.dataset_builder.samples import generate_samples  # noqa: E402

SEED = 7
CMD_CLIPS = 2
CMD_DURATION = 24.0
LSMDC_CLIPS = 5
LSMDC_DURATION = 30.0


def load_records(paths: list[Path]) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


@pytest.fixture(scope="session")
def cmd_samples(tmp_path_factory) -> tuple[Path, list[dict]]:
    """Two CMD-style clips (seed 7, 24 s), made once per test session."""
    out = tmp_path_factory.mktemp("cmd_samples")
    paths = generate_samples(out, num_clips=CMD_CLIPS, seed=SEED, duration_s=CMD_DURATION, style="cmd", progress=False)
    return out, load_records(paths)


@pytest.fixture(scope="session")
def lsmdc_samples(tmp_path_factory) -> tuple[Path, list[dict]]:
    """Five LSMDC-style clips cut from 30 s movies (seed 7)."""
    out = tmp_path_factory.mktemp("lsmdc_samples")
    paths = generate_samples(
        out, num_clips=LSMDC_CLIPS, seed=SEED, duration_s=LSMDC_DURATION, style="lsmdc", progress=False
    )
    return out, load_records(paths)


def assert_remote_code_reproduces(
    model_dir: Path, batch: dict, expected, tmp_path: Path, output: str = "logits_per_audio_video"
) -> None:
    """``AutoModel.from_pretrained(model_dir, trust_remote_code=True)`` in a fresh interpreter that never
    imports this package gives exactly ``expected`` logits (the forward's ``output``) for ``batch``."""
    import subprocess
    import sys
    import textwrap

    import torch

    torch.save({"batch": batch, "expected": expected}, tmp_path / "io.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(model_dir)!r}, trust_remote_code=True).eval()
        io = torch.load({str(tmp_path / "io.pt")!r})
        with torch.no_grad():
            logits = model(**io["batch"]).{output}
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert not any(name.startswith("sound_of_story") for name in sys.modules), "imported the package"
        print(float((logits - io["expected"]).abs().max()))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.strip().splitlines()[-1]) == 0.0
