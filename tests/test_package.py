"""The distribution: one namespace, every subpackage importable, the console script, wheels, declared ranges and pins."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

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


# ------------------------------------------------------------------------------ declared ranges and the pins
def _declared_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    return [Requirement(r) for r in project["dependencies"] + [r for extra in extras for r in extra]]


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not NAME==VERSION"
            assert canonicalize_name(name) not in pins, f"constraints.txt pins {name} twice"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_constraints_pin_every_declared_dependency_inside_its_range():
    pins = _pins()
    assert "sound-of-story" not in pins
    for requirement in _declared_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"constraints.txt does not pin {requirement.name}, which pyproject.toml declares"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {requirement}"
        )


def test_constraints_pin_the_build_and_install_tools_the_bootstrap_uses():
    # pip, setuptools and wheel are installed into the venv from the pins; uv's version is read from them
    assert {"pip", "setuptools", "wheel", "uv", "build"} <= _pins().keys()
    build_requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    setuptools = next(Requirement(r) for r in build_requires if r.startswith("setuptools"))
    assert setuptools.specifier.contains(_pins()["setuptools"])  # the editable install builds without isolation


def test_torch_range_stops_where_the_torchaudio_range_does():
    # torchaudio loads only with the torch minor it was built for and declares no torch dependency itself
    specs = {canonicalize_name(r.name): r.specifier for r in _declared_requirements()}
    torchaudio = _pins()["torchaudio"]
    torch_minor = Version(f"{torchaudio.major}.{torchaudio.minor}")
    assert specs["torch"].contains(torch_minor) and specs["torch"].contains(_pins()["torch"])
    assert not specs["torch"].contains(Version(f"{torchaudio.major}.{torchaudio.minor + 1}"))


def test_every_upper_bound_and_exact_pin_states_its_reason():
    """pyproject's policy: an upper bound (or ==) only where a known release breaks, with the reason beside it."""
    lines = (REPO / "pyproject.toml").read_text().splitlines()
    start = lines.index("dependencies = [")
    end = lines.index("[project.scripts]")
    for number in range(start, end):
        line = lines[number]
        quoted = line.split("#", 1)[0]
        if '"' in quoted and any(op in quoted for op in ("<", "==", "~=")):
            above = lines[number - 1].strip()
            assert "#" in line or above.startswith("#"), f"pyproject.toml:{number + 1}: {line.strip()} gives no reason"


def test_requires_python_and_classifiers_name_the_same_versions():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requires_python = SpecifierSet(project["requires-python"])
    admitted = {f"3.{minor}" for minor in range(6, 30) if requires_python.contains(Version(f"3.{minor}"))}
    classified = {
        c.rsplit(" :: ", 1)[1] for c in project["classifiers"] if c.startswith("Programming Language :: Python :: 3.")
    }
    assert admitted == classified
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in admitted


def test_compare_constraints_reports_unpinned_and_different_versions(tmp_path):
    from importlib.metadata import distributions

    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in distributions()}
    pins = {name: version for name, version in installed.items() if name not in ("numpy", "sound-of-story")}
    pins["torch"] = "0.0.1"
    pins["not-installed-anywhere"] = "1.0"  # another platform's pin: fine
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# header\n" + "".join(f"{n}=={v}\n" for n, v in pins.items()))
    script = REPO / ".ci" / "compare_constraints.py"
    cmd = [sys.executable, str(script), str(constraints), "--ignore", "sound-of-story"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"numpy=={installed['numpy']} is installed but not pinned in {constraints}",
        f"torch=={installed['torch']} is installed but {constraints} pins 0.0.1",
    ]
    constraints.write_text("numpy>=2\n")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "expected NAME==VERSION, got 'numpy>=2'" in result.stderr
