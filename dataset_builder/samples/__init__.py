"""Deterministic movie-like sample clips with known ground truth.

The clips are the embedded default input of the demo and the fixture of every test. Each
clip is an ``.mp4`` (H.264 video, AAC stereo 44.1 kHz audio) made of 3 to 8 scenes with
hard cuts at known frames. Every scene belongs to a category (rain, sea, ...) that fixes
both its picture (palette, texture, camera motion) and its synthesised background sound.
Dialogue is spoken by espeak-ng and mixed centre-panned (equal in left and right), as film
dialogue is. Next to each clip the generator writes:

* ``<id>.json``: cut times, scenes and their categories, dialogue spans and text, the
  description (CMD style) or caption (LSMDC style);
* ``<id>.background.wav`` and ``<id>.speech.wav``: the clean background stem and the speech
  stem (stereo, 16-bit, 44.1 kHz). The clip's audio is their sum before AAC encoding;
* ``manifest.jsonl`` in the output folder, one row per clip, in the dataset builder's
  input format.

All randomness of movie ``k`` comes from ``numpy.random.SeedSequence([seed, k])``, so a clip
does not depend on how many clips are generated, and the same seed gives byte-identical
files (fixed encoder settings, one encoder thread, no timestamps in the containers).

The parts: ``sound`` (background sound per category), ``categories`` (the scene categories
and the words of the stories), ``pictures`` (textures, light, the distinct-shot search,
frames), ``timeline`` (scenes, clip boundaries, dialogue, stems), ``rendering`` (files).
The options, their bounds and the error live in ``..sample_options``, which the command
line imports without this package.
"""

from ..sample_options import MAX_DURATION_S, MIN_DURATION_S, STYLES, SampleGenerationError, Style
from .categories import CATEGORIES, CATEGORIES_BY_NAME, CATEGORY_NAMES, NAMES, SceneCategory
from .pictures import FPS, HEIGHT, WIDTH, Scene
from .rendering import GENERATOR_VERSION, generate_samples
from .sound import SAMPLE_RATE
from .timeline import (
    BACKGROUND_DBFS,
    MIN_SCENE_S,
    SPEECH_DBFS,
    DialogueLine,
    MovieTimeline,
    frames_to_samples,
    plan_cuts,
    plan_movie,
)

__all__ = [
    "BACKGROUND_DBFS",
    "CATEGORIES",
    "CATEGORIES_BY_NAME",
    "CATEGORY_NAMES",
    "FPS",
    "GENERATOR_VERSION",
    "HEIGHT",
    "MAX_DURATION_S",
    "MIN_DURATION_S",
    "MIN_SCENE_S",
    "NAMES",
    "SAMPLE_RATE",
    "SPEECH_DBFS",
    "STYLES",
    "WIDTH",
    "DialogueLine",
    "MovieTimeline",
    "SampleGenerationError",
    "Scene",
    "SceneCategory",
    "Style",
    "frames_to_samples",
    "generate_samples",
    "plan_cuts",
    "plan_movie",
]
