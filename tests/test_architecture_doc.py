"""ARCHITECTURE.md stays true to the tree: every module of the package is described, every file it names exists.

Read as text (nothing is imported). A module counts as described when its file name stands in its part's
paragraph of "Modules, part by part" (``**core/**`` up to the next part's heading).
"""

from __future__ import annotations

import re
from pathlib import Path

from test_layering import ALLOWED

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "ARCHITECTURE.md"
PARTS = sorted(ALLOWED) + ["train"]


def _part_paragraphs(text: str) -> dict[str, str]:
    section = text.split("## Modules, part by part", 1)[1].split("\n## ", 1)[0]
    pieces = re.split(r"^\*\*([\w-]+)/\*\*", section, flags=re.MULTILINE)
    return dict(zip(pieces[1::2], pieces[2::2], strict=True))


def _undescribed_modules(text: str, repo: Path = REPO) -> list[str]:
    paragraphs = _part_paragraphs(text)
    missing = []
    for part in PARTS:
        for path in sorted((repo / part).rglob("*.py")):
            if path.name == "__init__.py" or "__pycache__" in path.parts:
                continue
            if f"`{path.name}`" not in paragraphs.get(part, "") and f"{path.name}`" not in paragraphs.get(part, ""):
                missing.append(str(path.relative_to(repo)))
    return missing


def _named_files_missing(text: str, repo: Path = REPO) -> list[str]:
    """Python files and tests/ paths the page names that are in neither the repository root nor a part."""
    named = set(re.findall(r"(?<![\w<>/.-])((?:[\w-]+/)+[\w-]+\.py)\b", text))
    named |= set(re.findall(r"(?<![\w/.-])(tests/[\w./-]+)", text))
    return sorted(
        name
        for name in named
        if not (repo / name.rstrip("/.")).exists() and not any((repo / part / name).exists() for part in PARTS)
    )


def test_every_module_of_the_package_is_described():
    assert _undescribed_modules(DOC.read_text()) == []


def test_every_file_the_page_names_exists():
    assert _named_files_missing(DOC.read_text()) == []


def test_the_checks_see_a_missing_module_and_a_stale_path(tmp_path):
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "hashing.py").write_text("")
    (tmp_path / "core" / "new_floor.py").write_text("")
    page = "## Modules, part by part\n\n**core/**\n- `hashing.py`: hashes; see `core/gone.py` and tests/golden/none\n"
    assert _undescribed_modules(page, repo=tmp_path) == ["core/new_floor.py"]
    assert _named_files_missing(page, repo=tmp_path) == ["core/gone.py", "tests/golden/none"]
