"""The ground floor every part stands on; it imports no other part of the package.

- :mod:`.atomic_files`: :func:`atomic_path` and the ``write_*_atomic`` helpers, the one way a file is written.
- :mod:`.hashing`: :func:`file_sha256`, :func:`bytes_sha256`, :func:`json_sha256`, :func:`model_fingerprint`.
- :mod:`.help_formatter`: the argparse :class:`HelpFormatter` of every command and training script.
- :mod:`.model_ids`: the Hub ids of the checkpoints the package starts from by default.
- :mod:`.checkpoint_files`: :func:`checkpoint_file`, a checkpoint given as a path or a URL (downloaded once).
"""

from . import model_ids
from .atomic_files import atomic_path, write_bytes_atomic, write_json_atomic, write_jsonl_atomic, write_text_atomic
from .hashing import bytes_sha256, file_sha256, json_sha256, model_fingerprint, update_with_tensors
from .help_formatter import HelpFormatter

__all__ = [
    "HelpFormatter",
    "atomic_path",
    "bytes_sha256",
    "file_sha256",
    "json_sha256",
    "model_fingerprint",
    "model_ids",
    "update_with_tensors",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_jsonl_atomic",
    "write_text_atomic",
]
