"""Slices for generation: a story's audio cut into pieces of at most 15 s at key-frame times.

Units are the spans between consecutive kept-frame times, plus the head (before the first
frame) and the tail (after the last). Units are accumulated in order until the next one would
push the slice past ``max_seconds``; then the slice is closed and the next one starts with
that unit. A unit longer than ``max_seconds`` is never split: it becomes a slice of its own,
flagged ``long`` (``keep_long=False`` drops those).

All arithmetic is on sample indices (frame times are rounded to the nearest sample once), so
there is no float drift: a slice of exactly ``max_seconds`` is allowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Slice:
    start: int  # sample index, inclusive
    end: int  # sample index, exclusive
    long: bool  # a single unit longer than the maximum

    def seconds(self, sample_rate: int) -> tuple[float, float]:
        return self.start / sample_rate, self.end / sample_rate


def unit_bounds(num_samples: int, sample_rate: int, frame_times: Sequence[float]) -> list[int]:
    """Sorted, unique sample boundaries: 0, every frame time inside (0, end), and the end.

    Frame times at or past the end (or before 0) are ignored; duplicates collapse.
    """
    inner = {round(float(t) * sample_rate) for t in frame_times}
    return [0, *sorted(b for b in inner if 0 < b < num_samples), num_samples] if num_samples > 0 else [0]


def slice_story(
    num_samples: int, sample_rate: int, frame_times: Sequence[float], max_seconds: float = 15.0, keep_long: bool = True
) -> list[Slice]:
    """The generation slices of a story of ``num_samples`` samples (see the module docstring)."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    limit = round(max_seconds * sample_rate)
    bounds = unit_bounds(num_samples, sample_rate, frame_times)
    slices: list[Slice] = []
    start = end = 0
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b - a > limit:  # a unit too long for any slice: close the current one, keep it alone
            if end > start:
                slices.append(Slice(start, end, False))
            slices.append(Slice(a, b, True))
            start = end = b
        elif b - start > limit:
            slices.append(Slice(start, end, False))
            start, end = a, b
        else:
            end = b
    if end > start:
        slices.append(Slice(start, end, False))
    return [s for s in slices if keep_long or not s.long]
