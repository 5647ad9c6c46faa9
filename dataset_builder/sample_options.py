"""What the command line needs to know about the sample-clip generator without importing it.

``sound_of_story.dataset_builder.samples`` imports scipy.signal, imagehash and PIL (about two
seconds); ``sound-of-story --help`` and every other subcommand should not pay for that. This
module holds the generator's options, their bounds and its error, and imports nothing.
"""

from __future__ import annotations

from typing import Literal, get_args

Style = Literal["cmd", "lsmdc"]
STYLES: tuple[Style, ...] = get_args(Style)
MIN_DURATION_S = 10.0  # three scenes of at least 3 s, and room for dialogue
MAX_DURATION_S = 150.0  # a CMD key clip is about 150 s
DEFAULT_DURATION_S = 40.0
DEFAULT_NUM_CLIPS = 4


class SampleGenerationError(RuntimeError):
    """An external tool (ffmpeg, espeak-ng) failed while making a sample clip."""


def check_sample_options(num_clips: int, duration_s: float, style: str, first_movie: int = 0) -> None:
    """Raise ``ValueError`` naming the option when a generator argument is out of range."""
    if not isinstance(first_movie, int) or isinstance(first_movie, bool) or first_movie < 0:
        raise ValueError(f"first_movie must be a non-negative integer, got {first_movie!r}")
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    if not isinstance(num_clips, int) or num_clips < 1:
        raise ValueError(f"num_clips must be a positive integer, got {num_clips!r}")
    if not (MIN_DURATION_S <= duration_s <= MAX_DURATION_S):
        raise ValueError(
            f"duration must be between {MIN_DURATION_S:g} and {MAX_DURATION_S:g} seconds (a CMD key clip is about 150 s), got {duration_s:g}"
        )
