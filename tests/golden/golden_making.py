"""What the scripts that make golden files in this repository share (``make_original_baseline_goldens.py``,
``make_dataset_goldens.py``): the checkout importable as the package, the environment a ``meta.json`` records, the
relative error it reports, and the fingerprint of the random checkpoint the originals ran on.

The scripts run in a throwaway venv beside the project's (their docstrings say how), with this folder first on
``sys.path``, so they import this module before the package is importable.
"""

from __future__ import annotations

import atexit
import json
import platform
import shutil
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).resolve().parent
TESTS = GOLDEN.parent


def import_checkout() -> None:
    """Put ``tests/`` and this checkout, as the package ``sound_of_story`` (by a link, as tests/conftest.py does),
    first on ``sys.path``. The link's folder is removed at exit (the link, never what it points to)."""
    sys.path.insert(0, str(TESTS))
    link = Path(tempfile.mkdtemp(prefix="sos-golden-package-"))
    (link / "sound_of_story").symlink_to(TESTS.parent, target_is_directory=True)
    atexit.register(shutil.rmtree, link, ignore_errors=True)
    sys.path.insert(0, str(link))


def environment(*names: str) -> dict:
    """Python, torch's thread count and the version of each named distribution (``?`` when none is installed by
    that name)."""
    import torch

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except Exception:  # noqa: BLE001 - a distribution named otherwise
            found[name] = "?"
    return {"python": platform.python_version(), "threads": torch.get_num_threads(), **found}


def relative_error(value, reference) -> float:
    """max |value - reference| over max |reference| (one scale per array), in float64."""
    value, reference = np.asarray(value, np.float64), np.asarray(reference, np.float64)
    return float(np.abs(value - reference).max() / np.abs(reference).max())


def write_fingerprint(folder: Path, checkpoint: dict) -> None:
    """``folder/checkpoint_fingerprint.json``: each tensor's fingerprint (``original_baselines.tensor_fingerprint``),
    which the tests compare with the checkpoint they rebuild from the seed."""
    from original_baselines import tensor_fingerprint

    folder.mkdir(exist_ok=True)
    (folder / "checkpoint_fingerprint.json").write_text(
        json.dumps({k: tensor_fingerprint(v) for k, v in checkpoint.items()}, indent=1) + "\n"
    )
