"""Reading checkpoint files in the original baselines' own formats (Wav2CLIP's release, msclap's weights).

A checkpoint is given as a local path, an ``http(s)://`` URL or an already loaded mapping. A URL is
downloaded once into torch hub's checkpoint folder (``torch.hub.get_dir()/checkpoints``), the folder that
``torch.hub.load_state_dict_from_url`` uses, so a file that ``wav2clip.get_model()`` fetched before is found
there. Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only, never code.

Self-contained (torch and the standard library only): the model files that import it are copied next to
saved weights as remote code.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

CheckpointSource = str | os.PathLike | Mapping


def is_url(source: Any) -> bool:
    return isinstance(source, str) and urlparse(source).scheme in ("http", "https")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_file(source: str | os.PathLike, *, sha256: str | None = None, progress: bool = True) -> Path:
    """The local file of ``source``: the path itself, or a URL's download in torch hub's checkpoint folder.

    Args:
        source: a local path or an ``http(s)://`` URL.
        sha256: when given, the file's SHA-256 must equal it (checked after a download, and on a local file).
        progress: show the download's progress bar.

    Raises:
        FileNotFoundError: no such local file, or the download failed.
        ValueError: the file's SHA-256 differs from ``sha256``.
    """
    if is_url(source):
        url = str(source)
        name = os.path.basename(urlparse(url).path) or "checkpoint"
        path = Path(torch.hub.get_dir()) / "checkpoints" / name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                # Writes to a temporary file in the folder and renames it when complete.
                torch.hub.download_url_to_file(url, str(path), progress=progress)
            except OSError as error:
                raise FileNotFoundError(f"cannot download the checkpoint {url}: {error}") from None
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint file {str(source)!r} does not exist")
    if sha256 is not None and (actual := _sha256(path)) != sha256.lower():
        raise ValueError(
            f"checkpoint {str(source)!r} ({path}) has SHA-256 {actual}, expected {sha256}: a different or damaged "
            "file (delete it to download it again)"
        )
    return path


def read_checkpoint(
    source: CheckpointSource, *, sha256: str | None = None, weights_only: bool = True, progress: bool = True
) -> dict[str, Any]:
    """The object ``torch.load`` reads from a checkpoint path or URL, on the CPU (a mapping is returned as it is).

    ``weights_only=False`` unpickles arbitrary objects, which can run code: only for a file from a source you trust
    whose pickle holds more than tensors and containers.

    Raises:
        FileNotFoundError: see :func:`checkpoint_file`.
        ValueError: the file is not a torch checkpoint, holds objects ``weights_only`` refuses, or is not a mapping.
    """
    if isinstance(source, Mapping):
        return dict(source)
    path = checkpoint_file(source, sha256=sha256, progress=progress)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or EOFError for foreign files
        hint = (
            " (it holds objects besides tensors: pass weights_only=False only if you trust the file)"
            if weights_only and "weights_only" in str(error).lower()
            else ""
        )
        raise ValueError(f"cannot read checkpoint {str(source)!r} with torch.load{hint}: {error}") from None
    if not isinstance(loaded, Mapping):
        raise ValueError(f"checkpoint {str(source)!r} holds a {type(loaded).__name__}, not a state dict")
    return dict(loaded)


def split_prefix(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The entries of ``state_dict`` under ``prefix`` (``"audio_encoder."``), with the prefix removed."""
    return {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}


def load_exactly(module: torch.nn.Module, state_dict: Mapping[str, Any], what: str) -> None:
    """``module.load_state_dict(state_dict)`` that names every missing and unexpected key of ``what`` on failure.

    Raises:
        ValueError: keys or shapes differ from the module's.
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = sorted(
        f"{key}: {tuple(state_dict[key].shape)} instead of {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state_dict and tuple(state_dict[key].shape) != tuple(value.shape)
    )
    if missing or unexpected or shapes:
        parts = [
            f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''}" if missing else "",
            f"unexpected {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}" if unexpected else "",
            f"other shapes {shapes[:8]}" if shapes else "",
        ]
        raise ValueError(f"{what} does not fit the model: " + "; ".join(p for p in parts if p))
    module.load_state_dict(dict(state_dict), strict=True)


__all__ = ["CheckpointSource", "checkpoint_file", "is_url", "load_exactly", "read_checkpoint", "split_prefix"]
