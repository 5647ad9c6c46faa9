"""On-disk cache of per-clip embeddings, keyed by the clip's content hash and the embedder.

Layout: ``<directory>/<embedder fingerprint[:16]>/<content sha256>.npy`` (float32). The
fingerprint covers the embedder's weights, its options and the preprocessing version, so a
different checkpoint or option never reads stale embeddings; renaming or moving a file keeps
its cache entry, editing it does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sound_of_story.core.atomic_files import atomic_path


class EmbeddingCache:
    """Embeddings stored as ``.npy`` files under ``directory``; safe for concurrent writers."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()

    def path(self, embedder_fingerprint: str, clip_hash: str) -> Path:
        return self.directory / embedder_fingerprint[:16] / f"{clip_hash}.npy"

    def get(self, embedder_fingerprint: str, clip_hash: str) -> np.ndarray | None:
        """The stored embeddings, or ``None`` on a miss (a corrupt entry counts as a miss)."""
        path = self.path(embedder_fingerprint, clip_hash)
        try:
            return np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except ValueError:  # truncated or foreign file: recompute and overwrite
            return None

    def put(self, embedder_fingerprint: str, clip_hash: str, embeddings: np.ndarray) -> None:
        with atomic_path(self.path(embedder_fingerprint, clip_hash)) as tmp:  # a reader never sees half an entry
            np.save(tmp, np.asarray(embeddings, dtype=np.float32), allow_pickle=False)
