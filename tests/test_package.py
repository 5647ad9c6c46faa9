"""The distribution: one namespace, every subpackage importable, the console script, wheels."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = (
    "audio",
    "cards",
    "dataset_builder",
    "modeling",
    "pipelines",
    "metrics",
    "training",
    "evaluation",
    "recommendation",
    "app",
)
CLI = Path(sys.executable).with_name("sound-of-story")


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_subpackage_imports_from_its_top_level_folder(name):
    module = importlib.import_module(f"sound_of_story.{name}")
    assert Path(module.__file__).resolve() == REPO / name / "__init__.py"
    assert module.__doc__  # each says what it is


def test_no_generic_top_level_names_are_installed():
    # ARCHITECTURE.md: only the `sound_of_story` namespace, never `modeling`, `metrics`, ...
    code = f"import importlib.util, sys; sys.path.remove(''); print([n for n in {SUBPACKAGES!r} if importlib.util.find_spec(n)])"
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_environment_is_offline_with_private_hf_home():
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    home = Path(os.environ["HF_HOME"])
    assert home.is_dir() and not (home / "hub").exists()
    assert Path.home() / ".cache" / "huggingface" != home


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=120)


def test_console_script_help_lists_subcommands():
    result = _run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert "usage: sound-of-story" in result.stdout
    for sub in ("samples", "demo"):
        assert sub in result.stdout


@pytest.mark.parametrize(
    "sub,options",
    [("samples", ("--out", "--num-clips", "--seed", "--duration", "--style")), ("demo", ("--out", "--seed"))],
)
def test_every_subcommand_has_help(sub, options):
    result = _run_cli(sub, "--help")
    assert result.returncode == 0, result.stderr
    for option in options:
        assert option in result.stdout


def test_version_matches_distribution_metadata():
    from importlib.metadata import version

    result = _run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"sound-of-story {version('sound-of-story')}"


@pytest.mark.parametrize(
    "args,needle",
    [
        (("--duration", "5"), "duration must be between 10 and 150 seconds"),
        (("--duration", "151"), "duration must be between 10 and 150 seconds"),
        (("--num-clips", "0"), "num_clips must be a positive integer"),
        (("--style", "youtube"), "invalid choice: 'youtube'"),
    ],
)
def test_samples_rejects_bad_arguments_with_a_clear_message(tmp_path, args, needle):
    result = _run_cli("samples", "--out", str(tmp_path / "out"), *args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_regular_wheel_install_layout(tmp_path):
    """A regular (non-editable) install: build the wheel, check it, import from its files."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("sound_of_story-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
        zf.extractall(tmp_path / "site")
    for name in SUBPACKAGES:
        assert f"sound_of_story/{name}/__init__.py" in names
    assert "sound_of_story/dataset_builder/samples/__init__.py" in names and "sound_of_story/app/cli.py" in names
    # the evaluate modules ship with their module cards
    for module in (
        "metrics/fad/fad.py",
        "metrics/fad/README.md",
        "metrics/sos_retrieval/sos_retrieval.py",
        "metrics/sos_retrieval/README.md",
    ):
        assert f"sound_of_story/{module}" in names
    assert not any(
        n.startswith(("tests/", "train/", "benchmarks/", "modeling/", "sound_of_story/__init__.py")) for n in names
    )
    assert "sound-of-story = sound_of_story.app.cli:main" in entry_points
    # Import from the unpacked wheel, with the editable install's finder taken out of the way.
    code = (
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__module__.lower()];"
        f"sys.path.insert(0, {str(tmp_path / 'site')!r});"
        "import sound_of_story.app.cli as c, sound_of_story.dataset_builder.samples as s; print(c.__file__); print(s.__file__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    lines = out.stdout.split()
    assert all(line.startswith(str(tmp_path / "site")) for line in lines), out.stdout
