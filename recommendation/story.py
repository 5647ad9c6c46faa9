"""Story mode: one background sound per scene, switching only at scene cuts.

A story's key frames (one per shot, from the key-frame step) mark its scene cuts: each key frame
opens a scene that lasts until the next one. Without repeats, clips are assigned to scenes by the
Hungarian algorithm over the stage-2 scores, which maximises the story's total similarity with no
clip used twice.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from .results import Recommendation, SceneRecommendation

# Score of a (scene, clip) pair outside the scene's candidates: never chosen while a real pair exists.
NOT_A_CANDIDATE = -1e6


@dataclasses.dataclass
class SceneSpan:
    """Seconds [start, end) of a scene (end None: to the end of the story) and the indices of its frames."""

    start: float
    end: float | None
    frame_indices: list[int]


def scene_spans(frame_times: Sequence[float], duration: float | None = None) -> list[SceneSpan]:
    """Scenes of a story from its key-frame times: a new scene at each distinct time (the first from 0 s).

    Frames at equal times belong to one scene. ``duration`` (if known) ends the last scene.
    """
    times = [float(t) for t in frame_times]
    if not times:
        raise ValueError("the story has no frames (frame times are empty)")
    if not all(math.isfinite(t) and t >= 0 for t in times):
        raise ValueError(f"frame times must be finite and >= 0 seconds, got {times}")
    distinct = sorted(set(times))
    if duration is not None and not duration > distinct[-1]:
        raise ValueError(f"duration {duration} s must be later than the last frame time {distinct[-1]} s")
    spans = []
    for i, start in enumerate(distinct):
        end = distinct[i + 1] if i + 1 < len(distinct) else duration
        spans.append(SceneSpan(0.0 if i == 0 else start, end, [j for j, t in enumerate(times) if t == start]))
    return spans


def assign_scenes(
    spans: list[SceneSpan],
    ranked: list[list[Recommendation]],
    allow_repeats: bool,
    frame_times: Sequence[float] | None = None,
) -> list[SceneRecommendation]:
    """Pick one clip per scene from each scene's ranked candidates: its best, or (no repeats) the
    assignment of distinct clips with the largest total score."""

    def scene(s: int, choice: Recommendation) -> SceneRecommendation:
        times = [float(frame_times[i]) for i in spans[s].frame_indices] if frame_times is not None else []
        return SceneRecommendation(spans[s].start, spans[s].end, times, choice)

    if allow_repeats:
        return [scene(s, candidates[0]) for s, candidates in enumerate(ranked)]
    clips = sorted({rec.row for candidates in ranked for rec in candidates})
    column = {row: c for c, row in enumerate(clips)}
    scores = np.full((len(spans), len(clips)), NOT_A_CANDIDATE)
    for s, candidates in enumerate(ranked):
        for rec in candidates:
            scores[s, column[rec.row]] = rec.score
    scene_rows, clip_columns = linear_sum_assignment(scores, maximize=True)
    if (scores[scene_rows, clip_columns] == NOT_A_CANDIDATE).any():
        raise ValueError(
            "not enough distinct candidates to give every scene its own clip: raise rerank or allow repeats"
        )
    by_row = {s: {rec.row: rec for rec in candidates} for s, candidates in enumerate(ranked)}
    return [scene(s, by_row[s][clips[c]]) for s, c in zip(scene_rows, clip_columns)]


__all__ = ["SceneSpan", "assign_scenes", "scene_spans"]
