"""What a recommendation returns: a ranked clip, and the clip chosen for one scene of a story."""

from __future__ import annotations

import dataclasses


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


__all__ = ["Recommendation", "SceneRecommendation"]
