"""The README tour's reduced demo run, made once per test session and shared by test_demo.py and test_readme_tour.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CLI = Path(sys.executable).with_name("sound-of-story")
# The tour's command, as the README writes it (run in a fresh folder).
DEMO_COMMAND = "sound-of-story demo --out demo_quick --minutes 1 --quiet"
_RUNS: dict[str, tuple[Path, subprocess.CompletedProcess]] = {}


def run_quick_demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``DEMO_COMMAND`` in a fresh folder (once per session): that folder and the finished process."""
    if "run" not in _RUNS:
        cwd = tmp_path_factory.mktemp("tour")
        argv = [str(CLI), *DEMO_COMMAND.split()[1:]]
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=1200)
        _RUNS["run"] = (cwd, result)
    return _RUNS["run"]
