"""What a recommendation returns: a ranked clip, and the clip chosen for one scene of a story; and `printable`,
how clip ids and paths (which come from library file names or a downloaded index) are shown."""

from __future__ import annotations

import dataclasses
import unicodedata


def _acts_on_display(char: str) -> bool:
    category = unicodedata.category(char)
    return category.startswith("C") or category in ("Zl", "Zp")


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every character a terminal or a browser could act on written as an escape (``\\x1b``,
    ``\\u202e``): control and format characters (Unicode categories C*: escape sequences, bidirectional
    overrides, zero-width characters) and line or paragraph separators. Other text is unchanged."""
    return "".join(_escape(char) if _acts_on_display(char) else char for char in str(text))


@dataclasses.dataclass
class Recommendation:
    """One recommended clip: its rank (1 = best), id, path, the stage-2 score (the model's similarity: the
    multi-grained one for SoS, the global cosine for a baseline) and the stage-1 global inner product
    (``coarse_score``)."""

    rank: int
    clip_id: str
    path: str
    score: float
    coarse_score: float
    row: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class SceneRecommendation:
    """The clip chosen for one scene."""

    start: float
    end: float | None
    frame_times: list[float]
    recommendation: Recommendation

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "frame_times": self.frame_times, **self.recommendation.to_dict()}


__all__ = ["Recommendation", "SceneRecommendation", "printable"]
