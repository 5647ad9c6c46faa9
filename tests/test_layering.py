"""The layering of ARCHITECTURE.md, enforced: which part may import which.

Read from the source with ``ast`` (nothing is imported), so a forbidden import fails here even
when it sits inside a function. Imports inside a part are relative; across parts absolute.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "sound_of_story"

# part -> the parts it may import. The ground floor (core: atomic files, hashes, the help formatter, the default
# checkpoint ids) imports nothing of ours; audio and cards stand on it; the four middle parts import only the
# bottom; training, evaluation and recommendation sit on those; app (command line, demo, web app) and the train/
# scripts on top.
BOTTOM = {"core", "audio", "cards"}
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "audio": {"core"},
    "cards": {"core"},
    "dataset_builder": BOTTOM,
    "modeling": BOTTOM,
    "pipelines": BOTTOM,
    "metrics": BOTTOM,
    "evaluation": BOTTOM | {"dataset_builder", "modeling", "pipelines", "metrics"},
    "recommendation": BOTTOM | {"dataset_builder", "modeling", "metrics", "evaluation"},
    "training": BOTTOM | {"dataset_builder", "modeling", "pipelines", "metrics", "evaluation"},
    "app": BOTTOM
    | {"dataset_builder", "modeling", "pipelines", "metrics", "evaluation", "recommendation", "training"},
}
# Crossings between middle parts that the table does not allow (none: the spectrogram converter that the builder
# and the pipelines share lives in audio/).
EXCEPTIONS: set[tuple[str, str]] = set()
# Files that also run outside the package import it absolutely: evaluate.load copies the metric
# scripts elsewhere, and a Hugging Face Space runs app/space.py as a script.
STANDALONE_SCRIPTS = {"metrics/fad/fad.py", "metrics/sos_retrieval/sos_retrieval.py", "app/space.py"}
SCRIPTS = {"train": ALLOWED["app"] | {"app"}, "benchmarks": set(ALLOWED)}


def _python_files(folder: Path):
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path, part: str | None, repo: Path):
    """(line, imported module relative to ``sound_of_story``, written relative?) for every import of ours."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package_parts = [part, *path.relative_to(repo / part).parent.parts] if part else []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    yield node.lineno, alias.name[len(PACKAGE) + 1 :], False
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                    yield node.lineno, node.module[len(PACKAGE) + 1 :], False
            elif part is not None:
                full = [PACKAGE, *package_parts]
                if node.level > len(full):
                    yield node.lineno, "<beyond the namespace>", True
                    continue
                base = full[: len(full) - node.level + 1]
                target = ".".join(base[1:] + ([node.module] if node.module else []))
                yield node.lineno, target, True


def _violations(folder: str, allowed: set[str], own_part: str | None, repo: Path = REPO):
    found = []
    for path in _python_files(repo / folder):
        for line, module, relative in _imports(path, own_part, repo):
            where = f"{path.relative_to(repo)}:{line}"
            target_part = module.split(".")[0]
            if module == "<beyond the namespace>" or not target_part:
                found.append(f"{where} imports outside the package")
            elif target_part == own_part:
                if not relative and str(path.relative_to(repo)) not in STANDALONE_SCRIPTS:
                    found.append(
                        f"{where} imports its own part absolutely (sound_of_story.{module}); use a relative import"
                    )
            elif target_part not in allowed and not any(
                module.startswith(exc) for p, exc in EXCEPTIONS if p == own_part
            ):
                found.append(f"{where}: {folder} may not import sound_of_story.{module}")
    return found


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_part_imports_only_what_the_layering_allows(part):
    assert (REPO / part / "__init__.py").is_file(), f"{part}/ is a part of the package (pyproject's package-dir)"
    assert _violations(part, ALLOWED[part], part) == []


@pytest.mark.parametrize("folder", sorted(SCRIPTS))
def test_scripts_import_the_package_not_each_other(folder):
    if not (REPO / folder).is_dir():
        pytest.fail(f"{folder}/ is missing")
    assert _violations(folder, SCRIPTS[folder], None) == []


def test_every_part_is_installed():
    """pyproject's package-dir maps exactly the parts this test knows, so a new part gets a rule."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    mapped = {name.split(".", 1)[1] for name in project["tool"]["setuptools"]["package-dir"]}
    assert mapped == set(ALLOWED)


def test_the_checker_catches_forbidden_and_absolute_imports(tmp_path):
    """The rule is not vacuous: metrics importing modeling, or itself absolutely, is reported."""
    (tmp_path / "metrics" / "fad").mkdir(parents=True)
    (tmp_path / "metrics" / "fad" / "bad.py").write_text(
        "from sound_of_story.modeling import SoSRetrievalModel\n"
        "from ...pipelines import SoSgenPipeline\n"
        "from ..retrieval import recall_at_k\n"
        "import sound_of_story.metrics.retrieval\n"
    )
    found = _violations("metrics", ALLOWED["metrics"], "metrics", repo=tmp_path)
    assert len(found) == 3, found
    assert "may not import sound_of_story.modeling" in found[0]
    assert "may not import sound_of_story.pipelines" in found[1]
    assert "absolutely" in found[2]


def test_the_repository_stands_alone():
    """Nothing reads the shared folder beside a developer's clone: a user's clone has none."""
    offenders = []
    for folder in [*ALLOWED, "tests", "train", "benchmarks", ".ci"]:
        for path in sorted((REPO / folder).rglob("*")):
            if path.is_file() and path.suffix in {".py", ".sh", ".toml", ""} and path != Path(__file__).resolve():
                if "../shared" in path.read_text(errors="replace"):
                    offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


# The package resamples only through sound_of_story.audio.resample (issue 15: one resampling
# function); these are the library resamplers it wraps. benchmarks/ may time them directly.
LIBRARY_RESAMPLERS = {
    "scipy.signal": {"resample_poly", "resample"},
    "resampy": {"resample"},
    "torchaudio.functional": {"resample"},
    "torchaudio.transforms": {"Resample"},
}


def _library_resampler_uses(path: Path):
    """(line, what) for every reference to a library resampler in ``path``, through any import alias."""
    tree = ast.parse(path.read_text(), filename=str(path))
    aliases = {}  # local name -> the module it stands for, e.g. F -> torchaudio.functional
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:  # `import a.b` binds a; `import a.b as c` binds c to a.b
                module = alias.name if alias.asname else alias.name.split(".")[0]
                aliases[alias.asname or module] = module
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if alias.name in LIBRARY_RESAMPLERS.get(node.module, ()):
                    yield node.lineno, f"from {node.module} import {alias.name}"
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def dotted(node) -> str | None:
        if isinstance(node, ast.Name):
            return aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            module = dotted(node.value)
            if node.attr in LIBRARY_RESAMPLERS.get(module or "", ()):
                yield node.lineno, f"{module}.{node.attr}"


def _resampling_outside_audio(repo: Path = REPO):
    found = []
    for part in sorted(set(ALLOWED) - {"audio"}) + ["train"]:
        for path in _python_files(repo / part):
            found += [f"{path.relative_to(repo)}:{line} calls {what}" for line, what in _library_resampler_uses(path)]
    return found


def test_only_audio_calls_a_library_resampler():
    """Every part resamples with sound_of_story.audio.resample (its methods cover numpy and torch)."""
    assert _resampling_outside_audio() == []


def test_the_resampler_check_sees_through_aliases(tmp_path):
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "bad.py").write_text(
        "import resampy\n"
        "import scipy.signal\n"
        "import torchaudio\n"
        "import torchaudio.functional as F\n"
        "from scipy import signal\n"
        "from scipy.signal import resample_poly\n"
        "from torchaudio.transforms import Resample\n"
        "a = resampy.resample(x, 2, 1)\n"
        "b = scipy.signal.resample_poly(x, 1, 2)\n"
        "c = signal.resample_poly(x, 1, 2)\n"
        "d = F.resample(x, 2, 1)\n"
        "e = torchaudio.functional.resample(x, 2, 1)\n"
        "f = torchaudio.transforms.Resample(2, 1)\n"
        "g = signal.stft(x)\n"
    )
    found = _resampling_outside_audio(tmp_path)
    assert [f.split(" calls ")[0].rsplit(":", 1)[1] for f in found] == ["6", "7", "8", "9", "10", "11", "12", "13"], (
        found
    )
