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

# part -> the parts it may import. The bottom (audio, cards) imports nothing of ours; the four
# core parts import only the bottom; training, evaluation and recommendation sit on the core;
# app (command line, demo, web app) and the train/ scripts on top.
BOTTOM = {"audio", "cards"}
ALLOWED: dict[str, set[str]] = {
    "audio": set(),
    "cards": set(),
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
# The one crossing between core parts: the builder stores each slice's spectrogram image, and
# the pipelines own the single audio <-> image converter (one converter, not two).
EXCEPTIONS = {("dataset_builder", "pipelines.spectrogram")}
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
