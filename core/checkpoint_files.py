"""Checkpoint files given as a local path or an ``http(s)://`` URL (weights that are not on the Hub: the
separator's, the baselines' releases).

A URL is downloaded once into torch hub's checkpoint folder (``torch.hub.get_dir()/checkpoints``), the folder that
``torch.hub.load_state_dict_from_url`` uses, so a file another tool fetched before is found there; the download goes
to a temporary file that is renamed when whole. (``modeling/original_checkpoints.py`` keeps its own copy of this
function: the model files that import it are copied next to saved weights as remote code, which may not import this
package.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .hashing import file_sha256


def is_url(source: Any) -> bool:
    """Whether ``source`` is an ``http(s)://`` URL (anything else is a local path)."""
    return isinstance(source, str) and urlparse(source).scheme in ("http", "https")


def checkpoint_file(
    source: str | os.PathLike,
    *,
    what: str = "checkpoint",
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
) -> Path:
    """The local file of ``source``: the path itself, or a URL's download in torch hub's checkpoint folder.

    Args:
        what: what the file is, for messages ("bytesep checkpoint").
        sha256, size: when given, the file must have this SHA-256 / this many bytes (a partial or different file
            is refused; delete it to download it again).

    Raises:
        FileNotFoundError: no such local file, or the download failed.
        ValueError: the file's size or SHA-256 differs.
    """
    if is_url(source):
        import torch

        url = str(source)
        path = Path(torch.hub.get_dir()) / "checkpoints" / (os.path.basename(urlparse(url).path) or "checkpoint")
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                torch.hub.download_url_to_file(url, str(path), progress=progress)
            except OSError as error:
                raise FileNotFoundError(f"cannot download the {what} {url}: {error}") from None
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{what} {str(source)!r} does not exist")
    if size is not None and path.stat().st_size != size:
        raise ValueError(
            f"{what} {path} has {path.stat().st_size} bytes, the expected file has {size}: a partial or different file "
            "(delete it to download it again)"
        )
    if sha256 is not None and (actual := file_sha256(path)) != sha256.lower():
        raise ValueError(
            f"{what} {str(source)!r} ({path}) has SHA-256 {actual}, expected {sha256}: a different or damaged file "
            "(delete it to download it again)"
        )
    return path


__all__ = ["checkpoint_file", "is_url"]
