"""The README tour's demo and web-app examples, run as written (the README section comes from readme_parts/demo.md)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from demo_fixtures import DEMO_COMMAND, run_quick_demo

BIN = Path(sys.executable).parent
README = Path(__file__).resolve().parents[1] / "README.md"
REPORT_COMMAND = (
    "python -c \"import json; t = json.load(open('demo_quick/report.json'))['table2']; "
    "print(t['trained']['A2V']['R@1'], t['random']['A2V']['R@1'])\""
)
SPACE_COMMAND = "sound-of-story space --demo-dir demo_quick --port 7860"
PYTHON_BLOCK = """from sound_of_story.app.space import SoundOfStoryApp, SpaceSettings

app = SoundOfStoryApp(SpaceSettings.from_demo("demo_quick"))
(rate, audio), spectrogram, note = app.generate("rain on a tin roof", None, "", 5.0, 10, 0)
print(rate, audio.shape, note)
"""


@pytest.fixture(scope="module")
def tour(tmp_path_factory) -> Path:
    cwd, result = run_quick_demo(tmp_path_factory)
    assert result.returncode == 0, result.stderr[-4000:]
    return cwd


def _environment() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_readme_holds_the_examples_as_tested():
    text = README.read_text()
    for example in (DEMO_COMMAND, REPORT_COMMAND, SPACE_COMMAND, PYTHON_BLOCK.strip()):
        assert example in text, f"README.md lacks the tested example {example!r}"


def test_report_command_prints_the_trained_and_random_a2v_r1(tour):
    result = subprocess.run(
        REPORT_COMMAND, shell=True, cwd=tour, env=_environment(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    table2 = json.loads((tour / "demo_quick" / "report.json").read_text())["table2"]
    assert result.stdout.strip() == f"{table2['trained']['A2V']['R@1']} {table2['random']['A2V']['R@1']}"


def test_python_block_generates_with_the_demos_sosgen(tour):
    result = subprocess.run(
        [sys.executable, "-c", PYTHON_BLOCK], cwd=tour, env=_environment(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rate, length, note = result.stdout.strip().splitlines()[-1].split(" ", 2)
    assert rate == "16000" and length == "(80000,)" and note.startswith("SoSgenPipeline")


def test_space_command_serves_the_demos_models(tour):
    with socket.socket() as s:  # the README's port when it is free, else any (the command is otherwise as written)
        port = 7860 if s.connect_ex(("127.0.0.1", 7860)) else 0
    if port == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    argv = SPACE_COMMAND.replace("--port 7860", f"--port {port}").split()
    server = subprocess.Popen(
        [str(BIN / argv[0]), *argv[1:]],
        cwd=tour,
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, page = time.monotonic() + 240, ""
        while time.monotonic() < deadline and server.poll() is None:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
                break
            except OSError:
                time.sleep(1)
        assert server.poll() is None, server.stdout.read()[-3000:]
        assert "Sound of Story" in page or "gradio" in page.lower()
        config = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=10).read())
        labels = {c.get("props", {}).get("label") for c in config["components"]}
        assert {"Description", "Generated sound", "Closest sounds", "One sound per scene"} <= labels
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert np.isfinite(port)
