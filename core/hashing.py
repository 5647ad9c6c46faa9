"""Content hashes: of files, of JSON-able settings, and of a model's weights (its fingerprint).

Cache keys and checksums across the package come from these functions, so two parts never disagree on what
"the same file" or "the same model" means.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from typing import Any

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks (constant memory for any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def bytes_sha256(data: bytes) -> str:
    """SHA-256 (hex) of ``data``."""
    return hashlib.sha256(data).hexdigest()


def json_sha256(value: Any, *, ensure_ascii: bool = True) -> str:
    """SHA-256 (hex) of ``value`` as key-sorted JSON (values JSON cannot hold are written with ``str``).

    ``ensure_ascii`` is ``json.dumps``'s: stored checksums keep the form they were written with.
    """
    text = json.dumps(value, sort_keys=True, ensure_ascii=ensure_ascii, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def update_with_tensors(digest: Any, tensors: Iterable[tuple[str, Any]]) -> None:
    """Feed named torch tensors to ``digest``, sorted by name: name, dtype, shape and the exact bytes of each."""
    import torch

    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())  # bit-exact for every dtype


# Configuration keys that say how a model was saved, not what it computes (a model and its saved-and-loaded copy
# differ in them; the weights' dtype is hashed with the weights).
_VOLATILE_CONFIG_KEYS = ("transformers_version", "auto_map", "architectures", "dtype", "torch_dtype")


def model_fingerprint(model: Any, *, include: Callable[[str], bool] | None = None) -> str:
    """SHA-256 (hex) of what a model computes: its configuration and every weight and buffer.

    Two checkpoints with equal settings and weights have equal fingerprints whatever their names, folders or
    the library version that saved them. ``include(name) -> bool`` restricts the tensors to part of the state dict
    (for example the frozen encoders). A module without a ``config`` is fingerprinted by its class and tensors.
    """
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        settings = {
            k: v for k, v in config.to_dict().items() if not k.startswith("_") and k not in _VOLATILE_CONFIG_KEYS
        }
    else:
        settings = {"class": type(model).__name__}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    update_with_tensors(digest, ((n, t) for n, t in model.state_dict().items() if include is None or include(n)))
    return digest.hexdigest()


__all__ = ["bytes_sha256", "file_sha256", "json_sha256", "model_fingerprint", "update_with_tensors"]
