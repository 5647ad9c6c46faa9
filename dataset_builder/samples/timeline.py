"""A movie's timeline: its scenes, LSMDC clip boundaries, dialogue, words, and audio stems.

All random choices of movie ``k`` of a seed come from ``numpy.random.SeedSequence([seed, k])``,
drawn in a fixed order (scenes and their pictures, clip boundaries, characters, dialogue,
description, captions), so a movie does not depend on how many are generated.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from sound_of_story.audio import resample

from ..sample_options import SampleGenerationError, Style, check_sample_options
from .categories import CATEGORIES_BY_NAME, CATEGORY_NAMES, CONNECTORS, DIALOGUE, NAMES, VOICES
from .pictures import FPS, Scene, find_distinct_light
from .sound import SAMPLE_RATE, db_to_gain, rms

MIN_SCENE_S = 3.0
LSMDC_CLIP_RANGE_S = (3.0, 12.0)
# Levels (RMS, dBFS): dialogue sits about 10 dB over the background, as in a film mix.
BACKGROUND_DBFS = -30.0
SPEECH_DBFS = -20.0
PEAK_LIMIT = 0.95


@dataclasses.dataclass(frozen=True)
class DialogueLine:
    start_sample: int
    end_sample: int
    text: str
    speaker: str
    voice: str


@dataclasses.dataclass
class MovieTimeline:
    """A movie's plan and its audio stems; CMD clips and LSMDC runs are cut from it."""

    index: int
    seed: int
    num_frames: int
    scenes: list[Scene]
    clip_bounds: list[int]  # frame boundaries of LSMDC clips (CMD: [0, num_frames])
    characters: tuple[str, str]
    dialogue: list[DialogueLine]
    background: np.ndarray  # (2, num_samples) float64
    speech: np.ndarray  # (2, num_samples) float64
    description: str
    captions: list[str]
    mix_gain_db: float  # applied to both stems so that the mix peaks at PEAK_LIMIT at most

    @property
    def num_samples(self) -> int:
        return frames_to_samples(self.num_frames)


def frames_to_samples(frames: int) -> int:
    """Sample index of a frame boundary (exact integer arithmetic, no float drift)."""
    return frames * SAMPLE_RATE // FPS


def _split_frames(rng: np.random.Generator, total: int, count: int, minimum: int) -> list[int]:
    """Split ``total`` frames into ``count`` parts, each at least ``minimum``."""
    weights = rng.uniform(1.0, 3.0, size=count)
    spare = total - count * minimum
    extra = np.floor(spare * weights / weights.sum()).astype(int)
    extra[-1] += spare - extra.sum()
    return [minimum + int(e) for e in extra]


def _plan_scenes(rng: np.random.Generator, num_frames: int) -> list[Scene]:
    """3 to 8 scenes tiling the movie, each of another category than the one before, and a distinct picture."""
    min_frames = int(MIN_SCENE_S * FPS)
    count = int(rng.integers(3, min(8, num_frames // min_frames) + 1))
    lengths = _split_frames(rng, num_frames, count, min_frames)
    scenes: list[Scene] = []
    start, previous, before = 0, None, None
    for length in lengths:
        choices = [c for c in CATEGORY_NAMES if previous is None or c != previous]
        category = choices[int(rng.integers(len(choices)))]
        seed = int(rng.integers(2**31))
        light = find_distinct_light(rng, category, seed, before)
        scenes.append(
            Scene(category, start, start + length, seed, light.light_seed, light.light_against, light.light_share)
        )
        start += length
        previous, before = category, light.hashes
    return scenes


def _plan_lsmdc_clips(rng: np.random.Generator, num_frames: int) -> list[int]:
    """Frame boundaries of consecutive LSMDC clips, each LSMDC_CLIP_RANGE_S long, covering the movie."""
    lo, hi = (int(s * FPS) for s in LSMDC_CLIP_RANGE_S)
    lengths: list[int] = []
    while sum(lengths) < num_frames:
        lengths.append(int(rng.integers(lo, hi + 1)))
    lengths[-1] = num_frames - sum(lengths[:-1])
    if lengths[-1] < lo and len(lengths) > 1:  # a last clip too short: join it to the one before, or borrow from it
        if lengths[-2] + lengths[-1] <= hi:
            last = lengths.pop()
            lengths[-1] += last
        else:
            lengths[-2] -= lo - lengths[-1]
            lengths[-1] = lo
    return [0, *np.cumsum(lengths).tolist()]


def _movie_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def _plan_cuts(rng: np.random.Generator, num_frames: int, style: Style) -> tuple[list[Scene], list[int]]:
    scenes = _plan_scenes(rng, num_frames)
    clip_bounds = _plan_lsmdc_clips(rng, num_frames) if style == "lsmdc" else [0, num_frames]
    return scenes, clip_bounds


def plan_cuts(seed: int, index: int, duration_s: float, style: Style) -> tuple[list[Scene], list[int]]:
    """The scenes (with their pictures) and clip boundaries of movie ``index``: the first part of
    :func:`plan_movie`, without the dialogue and the audio, and the same as there."""
    check_sample_options(1, duration_s, style)
    return _plan_cuts(_movie_rng(seed, index), round(duration_s * FPS), style)


def _espeak(text: str, voice: str, pitch: int, speed: int) -> np.ndarray:
    """Speak ``text`` with espeak-ng; mono float64 at SAMPLE_RATE, silence trimmed."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SampleGenerationError(
            "espeak-ng is not installed (Debian: apt-get install espeak-ng); `make demo` or `make test` installs it"
        )
    with tempfile.TemporaryDirectory(prefix="sos-espeak-") as tmp:
        wav_path = Path(tmp) / "line.wav"
        result = subprocess.run(
            [exe, "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(wav_path), text],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0 or not wav_path.exists():
            raise SampleGenerationError(f"espeak-ng failed for voice {voice!r}: {result.stderr.strip()}")
        with wave.open(str(wav_path)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
    audio = resample(pcm, rate, SAMPLE_RATE, method="polyphase")  # polyphase: a seed's clips stay byte-identical
    voiced = np.flatnonzero(np.abs(audio) > 1e-3)
    if voiced.size == 0:
        raise SampleGenerationError(f"espeak-ng produced silence for {text!r}")
    # Trimmed at a -60 dBFS threshold: the span is tight and the step at its ends inaudible.
    return audio[voiced[0] : voiced[-1] + 1]


def _plan_dialogue(
    rng: np.random.Generator, clip_bounds: list[int], characters: tuple[str, str]
) -> list[tuple[DialogueLine, np.ndarray]]:
    """Lines of dialogue inside each clip (never across an LSMDC clip boundary)."""
    voices = [VOICES[i] for i in rng.choice(len(VOICES), size=2, replace=False)]
    speeds = rng.integers(140, 176, size=2)
    lines: list[tuple[DialogueLine, np.ndarray]] = []
    turn = 0
    for lo, hi in zip(clip_bounds[:-1], clip_bounds[1:]):
        seg_start, seg_end = frames_to_samples(lo), frames_to_samples(hi)
        t = seg_start + int(rng.uniform(0.5, 2.5) * SAMPLE_RATE)
        while True:
            text = DIALOGUE[int(rng.integers(len(DIALOGUE)))]
            voice, pitch = voices[turn % 2]
            audio = _espeak(text, voice, pitch, int(speeds[turn % 2]))
            gain = db_to_gain(SPEECH_DBFS + rng.uniform(-2, 2)) / rms(audio)
            if t + audio.size > seg_end - int(0.3 * SAMPLE_RATE):
                break
            lines.append((DialogueLine(t, t + audio.size, text, characters[turn % 2], voice), audio * gain))
            t += audio.size + int(rng.uniform(1.5, 5.0) * SAMPLE_RATE)
            turn += 1
    return lines


def _describe(rng: np.random.Generator, scenes: list[Scene], characters: tuple[str, str]) -> str:
    """A CMD-style description: one sentence per scene, in story order, with connectors."""
    a, b = characters
    sentences = []
    for i, scene in enumerate(scenes):
        sentence = CATEGORIES_BY_NAME[scene.category].descriptions[int(rng.integers(3))].format(a=a, b=b)
        if i > 0:
            connector = "Finally" if i == len(scenes) - 1 else CONNECTORS[int(rng.integers(len(CONNECTORS)))]
            if not sentence.startswith((a, b)):  # keep capitals of names only
                sentence = sentence[0].lower() + sentence[1:]
            sentence = f"{connector}, {sentence}"
        sentences.append(sentence)
    return " ".join(sentences)


def _caption(rng: np.random.Generator, scenes: list[Scene], lo: int, hi: int) -> str:
    """LSMDC-style caption of the scene that fills most of frames [lo, hi)."""
    overlap = [(min(hi, s.end_frame) - max(lo, s.start_frame), s) for s in scenes]
    scene = max(overlap, key=lambda o: o[0])[1]
    return CATEGORIES_BY_NAME[scene.category].captions[int(rng.integers(3))]


def plan_movie(seed: int, index: int, duration_s: float, style: Style) -> MovieTimeline:
    """Plan movie ``index`` of a seed and synthesise its audio stems (no files written)."""
    check_sample_options(1, duration_s, style)
    rng = _movie_rng(seed, index)
    num_frames = round(duration_s * FPS)
    scenes, clip_bounds = _plan_cuts(rng, num_frames, style)
    characters = tuple(NAMES[i] for i in rng.choice(len(NAMES), size=2, replace=False))
    placed = _plan_dialogue(rng, clip_bounds, characters)
    description = _describe(rng, scenes, characters)
    captions = [_caption(rng, scenes, lo, hi) for lo, hi in zip(clip_bounds[:-1], clip_bounds[1:])]

    n = frames_to_samples(num_frames)
    background = np.zeros((2, n))
    fade = int(0.005 * SAMPLE_RATE)
    for scene in scenes:
        s0, s1 = frames_to_samples(scene.start_frame), frames_to_samples(scene.end_frame)
        scene_rng = np.random.default_rng(scene.seed)
        part = CATEGORIES_BY_NAME[scene.category].synth(scene_rng, s1 - s0) * db_to_gain(
            BACKGROUND_DBFS + scene_rng.uniform(-3, 3)
        )
        ramp = np.linspace(0.0, 1.0, fade)
        part[:, :fade] *= ramp
        part[:, -fade:] *= ramp[::-1]
        background[:, s0:s1] = part
    speech = np.zeros((2, n))
    for line, audio in placed:
        speech[:, line.start_sample : line.end_sample] = audio  # centre-panned: same in L and R
    gain = min(1.0, PEAK_LIMIT / max(float(np.max(np.abs(background + speech))), 1e-12))
    background *= gain
    speech *= gain
    return MovieTimeline(
        index,
        seed,
        num_frames,
        scenes,
        clip_bounds,
        characters,
        [line for line, _ in placed],
        background,
        speech,
        description,
        captions,
        20 * math.log10(gain),
    )
