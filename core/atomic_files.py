"""Write files so that a reader (or a resumed run) never sees a half-written one.

Every user-visible file of the package is written through :func:`atomic_path`: the content goes to a new
temporary file in the target's folder, whose name cannot be guessed and which is created exclusively (a file or
symlink planted under that name makes the creation fail instead of being followed); it is flushed to disk
(``fsync``) and only then renamed onto the target. The rename replaces the target's directory entry: a symlink
planted at the target is replaced, never written through. On an error the temporary file is removed and the
target is left as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

# Temporary files start with this prefix (hidden, and recognisable by the clean-up of an interrupted run).
PARTIAL_PREFIX = ".partial-"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # a platform without directory handles: the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new, empty temporary file next to ``path``; move it onto ``path`` only on success.

    The temporary name keeps the suffix of ``path`` so that tools choosing a format from the extension (ffmpeg,
    soundfile, PIL, ``numpy.save``) still do the right thing; the caller writes it by name (and may replace it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f"{PARTIAL_PREFIX}{path.stem}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        move_file_atomic(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def move_file_atomic(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move a finished file (written under a temporary name in the target's file system, as a library's
    ``save_pretrained`` writes into a staging folder) onto ``target`` in one step, flushed to disk first."""
    source, target = Path(source), Path(target)
    _fsync_file(source)
    os.replace(source, target)
    _fsync_dir(target.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, data: Any, *, indent: int | None = 2) -> None:
    """Write ``data`` as key-sorted JSON (byte-stable for equal data), pretty unless ``indent=None``."""
    text = json.dumps(data, indent=indent, sort_keys=True, ensure_ascii=False)
    write_text_atomic(path, text + "\n")


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write one key-sorted JSON object per line."""
    write_text_atomic(path, "".join(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n" for row in rows))


__all__ = [
    "PARTIAL_PREFIX",
    "atomic_path",
    "move_file_atomic",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_jsonl_atomic",
    "write_text_atomic",
]
