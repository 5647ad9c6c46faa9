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
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Callable, Iterable, Sequence

import imagehash
import numpy as np
import soundfile as sf
from PIL import Image
from scipy import signal
from tqdm.auto import tqdm

from .atomic_files import atomic_path, write_json_atomic, write_jsonl_atomic
from .key_frames import HASHES, similarity

SAMPLE_RATE = 44_100
FPS = 24
WIDTH, HEIGHT = 320, 180
MIN_DURATION_S = 10.0
MAX_DURATION_S = 150.0  # a CMD key clip is about 150 s
MIN_SCENE_S = 3.0
LSMDC_CLIP_RANGE_S = (3.0, 12.0)
GENERATOR_VERSION = 1
STYLES = ("cmd", "lsmdc")
CUT_HASHES = ("dhash",)
CUT_MAX_SIMILARITY = 0.375  # between consecutive shots, for every hash in CUT_HASHES
CANVAS_MARGIN = 24  # pixels of picture around the frame, room for the camera to move
MAX_PAN_PX = 10  # camera travel per scene: small against the 9x8 hash grid (~35 px cells)

# Levels (RMS, dBFS): dialogue sits about 10 dB over the background, as in a film mix.
BACKGROUND_DBFS = -30.0
SPEECH_DBFS = -20.0
PEAK_LIMIT = 0.95


class SampleGenerationError(RuntimeError):
    """An external tool (ffmpeg, espeak-ng) failed while making a sample clip."""


# ----------------------------------------------------------------------------------------
# Small signal helpers
# ----------------------------------------------------------------------------------------


def _db(x: float) -> float:
    return 10.0 ** (x / 20.0)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def _unit_rms(x: np.ndarray) -> np.ndarray:
    r = _rms(x)
    return x / r if r > 0 else x


def _colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1] if n > 1 else 1.0
    spectrum *= freqs ** (-exponent / 2.0)
    return _unit_rms(np.fft.irfft(spectrum, n))


def _filter(x: np.ndarray, btype: str, cutoff, order: int = 4) -> np.ndarray:
    sos = signal.butter(order, cutoff, btype=btype, fs=SAMPLE_RATE, output="sos")
    return signal.sosfilt(sos, x, axis=-1)


def _pan(mono: np.ndarray, position) -> np.ndarray:
    """Constant-power pan; ``position`` in [-1 (left), 1 (right)], scalar or per sample."""
    angle = (np.asarray(position, dtype=np.float64) + 1.0) * (math.pi / 4.0)
    return np.stack([mono * np.cos(angle), mono * np.sin(angle)])


def _stereo_bed(rng: np.random.Generator, n: int, make: Callable[[], np.ndarray], common: float = 0.25) -> np.ndarray:
    """A wide stereo bed: mostly independent left/right noise with a small shared part."""
    shared = make()
    left = math.sqrt(1 - common) * make() + math.sqrt(common) * shared
    right = math.sqrt(1 - common) * make() + math.sqrt(common) * shared
    return np.stack([left, right])


def _add(out: np.ndarray, event: np.ndarray, start: int) -> None:
    """Add a (2, m) event into ``out`` at sample ``start``, cropped to the buffer."""
    end = min(out.shape[1], start + event.shape[1])
    if start < end:
        out[:, start:end] += event[:, : end - start]


def _times(n: int) -> np.ndarray:
    return np.arange(n) / SAMPLE_RATE


def _sweep(f_start: float, f_end: float, n: int) -> np.ndarray:
    freq = np.linspace(f_start, f_end, n)
    return np.sin(2 * math.pi * np.cumsum(freq) / SAMPLE_RATE)


def _midi(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _pluck(freq: float, dur: float, brightness: float = 1.0) -> np.ndarray:
    t = _times(int(dur * SAMPLE_RATE))
    tone = sum(np.sin(2 * math.pi * freq * k * t) * np.exp(-t * (3 + 2.5 * k / brightness)) / k for k in range(1, 7))
    return tone * np.minimum(1.0, t * 400)  # 2.5 ms attack, no click


def _kick(dur: float = 0.3) -> np.ndarray:
    t = _times(int(dur * SAMPLE_RATE))
    freq = 48 + 80 * np.exp(-t * 30)
    return np.sin(2 * math.pi * np.cumsum(freq) / SAMPLE_RATE) * np.exp(-t * 11)


# ----------------------------------------------------------------------------------------
# Background sound per category. Each returns a (2, n) float64 array of unit RMS.
# ----------------------------------------------------------------------------------------


def _synth_rain(rng, n):
    bed = _stereo_bed(rng, n, lambda: _filter(rng.standard_normal(n), "band", [900, 9000]))
    bed *= 1 + 0.15 * _filter(rng.standard_normal(n), "low", 8)[None]
    out = _unit_rms(bed)
    drops = np.zeros((2, n))
    for start in np.sort(rng.integers(0, n, size=int(25 * n / SAMPLE_RATE))):
        m = int(0.02 * SAMPLE_RATE)
        t = _times(m)
        drop = np.sin(2 * math.pi * rng.uniform(2500, 6000) * t) * np.exp(-t * 300) * rng.uniform(0.5, 2)
        _add(drops, _pan(drop, rng.uniform(-0.9, 0.9)), int(start))
    return _unit_rms(out + 0.4 * _unit_rms(drops))


def _synth_sea(rng, n):
    bed = _stereo_bed(rng, n, lambda: _filter(_colored_noise(rng, n, 1.5), "low", 1400))
    t = _times(n)
    period = rng.uniform(6.0, 9.0)
    phase = rng.uniform(0, 2 * math.pi)
    swell_l = 0.25 + (0.5 + 0.5 * np.sin(2 * math.pi * t / period + phase)) ** 2
    swell_r = 0.25 + (0.5 + 0.5 * np.sin(2 * math.pi * t / period + phase + 0.9)) ** 2
    return _unit_rms(bed * np.stack([swell_l, swell_r]))


def _synth_forest_birds(rng, n):
    out = 0.35 * _unit_rms(_stereo_bed(rng, n, lambda: _filter(_colored_noise(rng, n, 1.0), "band", [200, 3000])))
    birds = np.zeros((2, n))
    t0 = rng.uniform(0, 0.8)
    while t0 * SAMPLE_RATE < n:
        pos = rng.choice([-0.8, -0.5, 0.5, 0.8])
        base = rng.uniform(2500, 4500)
        for k in range(int(rng.integers(3, 7))):
            m = int(rng.uniform(0.06, 0.16) * SAMPLE_RATE)
            chirp = _sweep(base * rng.uniform(1.1, 1.4), base * rng.uniform(0.8, 0.95), m)
            chirp = (chirp + 0.3 * _sweep(2 * base, 1.7 * base, m)) * np.sin(np.linspace(0, math.pi, m)) ** 2
            _add(birds, _pan(chirp, pos), int((t0 + 0.2 * k) * SAMPLE_RATE))
        t0 += rng.uniform(1.0, 2.2)
    return _unit_rms(out + _unit_rms(birds))


def _synth_city_traffic(rng, n):
    out = 0.6 * _unit_rms(_stereo_bed(rng, n, lambda: _filter(_colored_noise(rng, n, 2.0), "low", 700)))
    cars = np.zeros((2, n))
    t0 = rng.uniform(0, 2)
    while t0 * SAMPLE_RATE < n:
        dur = rng.uniform(3.5, 6.0)
        m = int(dur * SAMPLE_RATE)
        t = _times(m)
        f0 = rng.uniform(60, 110) * (1 - 0.06 * np.tanh((t - dur / 2) / 0.6))  # Doppler
        phase = 2 * math.pi * np.cumsum(f0) / SAMPLE_RATE
        engine = sum(np.sin(k * phase) / k for k in range(1, 9)) + 0.3 * _filter(rng.standard_normal(m), "band", [300, 2500])
        engine *= np.exp(-(((t - dur / 2) / (dur / 5)) ** 2))
        direction = rng.choice([-1.0, 1.0])
        _add(cars, _pan(engine, direction * np.linspace(-0.9, 0.9, m)), int(t0 * SAMPLE_RATE))
        if rng.random() < 0.25:  # an occasional horn
            hm = int(0.45 * SAMPLE_RATE)
            ht = _times(hm)
            horn = (np.sign(np.sin(2 * math.pi * 400 * ht)) + np.sign(np.sin(2 * math.pi * 500 * ht))) * 0.15
            _add(cars, _pan(_filter(horn, "low", 3000) * np.minimum(1, ht * 50), rng.uniform(-0.8, 0.8)), int((t0 + dur / 2) * SAMPLE_RATE))
        t0 += rng.uniform(2.0, 4.5)
    return _unit_rms(out + _unit_rms(cars))


def _synth_fire(rng, n):
    roar = _stereo_bed(rng, n, lambda: _filter(rng.standard_normal(n), "low", 350))
    roar *= 0.7 + 0.3 * _unit_rms(_filter(rng.standard_normal(n), "low", 2))[None]
    crackle = np.zeros((2, n))
    for start in rng.integers(0, n, size=int(18 * n / SAMPLE_RATE)):
        m = int(rng.uniform(0.003, 0.012) * SAMPLE_RATE)
        burst = rng.standard_normal(m) * np.exp(-np.arange(m) / (m / 4)) * rng.exponential(1.0)
        _add(crackle, _pan(burst, rng.uniform(-0.9, 0.9)), int(start))
    crackle = _filter(crackle, "high", 1500)
    return _unit_rms(_unit_rms(roar) + 0.8 * _unit_rms(crackle))


def _synth_engine(rng, n):
    t = _times(n)
    f0 = rng.uniform(38, 55) * (1 + 0.05 * np.sin(2 * math.pi * t / rng.uniform(3, 6)))
    phase = 2 * math.pi * np.cumsum(f0) / SAMPLE_RATE
    hum = sum(np.sin(k * phase + rng.uniform(0, 6.28)) * (0.8**k) for k in range(1, 12))
    hum *= 1 + 0.35 * np.sin(2 * phase)  # firing pulses
    mech = _filter(rng.standard_normal(n), "band", [1000, 3200])
    delay = int(0.0025 * SAMPLE_RATE)  # inter-channel delay gives width without a centred image
    left = hum + 0.3 * mech
    right = np.concatenate([np.zeros(delay), left[:-delay]]) + 0.3 * _filter(rng.standard_normal(n), "band", [1000, 3200])
    return _unit_rms(np.stack([left, right]) + 0.3 * _stereo_bed(rng, n, lambda: _filter(rng.standard_normal(n), "low", 400)))


def _synth_church_bells(rng, n):
    out = 0.2 * _unit_rms(_stereo_bed(rng, n, lambda: _filter(_colored_noise(rng, n, 1.0), "band", [100, 2000])))
    bells = np.zeros((2, n))
    f0 = rng.uniform(220, 420)
    ratios = (0.5, 1.0, 1.183, 1.506, 2.0, 2.514, 2.662, 3.011)
    interval = rng.uniform(1.8, 2.8)
    pos = rng.choice([-0.6, 0.6])
    strike = rng.uniform(0, 1)
    while strike * SAMPLE_RATE < n:
        m = int(3.5 * SAMPLE_RATE)
        t = _times(m)
        tone = sum(np.sin(2 * math.pi * f0 * r * t) * np.exp(-t * (0.8 + 0.7 * i)) / (1 + 0.3 * i) for i, r in enumerate(ratios))
        tone *= np.minimum(1.0, t * 500)
        _add(bells, _pan(tone, pos), int(strike * SAMPLE_RATE))
        # a quieter, delayed reflection on the other side gives the bells width
        _add(bells, _pan(0.4 * tone, -pos), int((strike + 0.045) * SAMPLE_RATE))
        strike += interval
    return _unit_rms(out + _unit_rms(bells))


def _synth_festive_music(rng, n):
    out = np.zeros((2, n))
    bpm = rng.uniform(108, 132)
    beat = 60.0 / bpm
    key = int(rng.integers(55, 65))
    progression = ((0, 4, 7), (5, 9, 12), (7, 11, 14), (0, 4, 7))
    melody_steps = rng.choice([0, 2, 4, 5, 7, 9, 12], size=64)
    i = 0
    while i * beat * SAMPLE_RATE < n:
        start = int(i * beat * SAMPLE_RATE)
        chord = progression[(i // 4) % 4]
        for note in chord:
            _add(out, _pan(0.25 * _pluck(_midi(key + note), beat * 0.95), -0.6), start)
        _add(out, _pan(0.35 * _pluck(_midi(key + 12 + melody_steps[i % 64]), beat * 0.5, 2.0), 0.6), start)
        if i % 2 == 0:
            _add(out, _pan(0.5 * _kick(), rng.choice([-0.3, 0.3])), start)
        hm = int(0.04 * SAMPLE_RATE)
        hat = _filter(rng.standard_normal(hm), "high", 6000) * np.exp(-np.arange(hm) / (hm / 5)) * 0.25
        _add(out, _pan(hat, 0.75), start + int(beat / 2 * SAMPLE_RATE))
        i += 1
    return _unit_rms(out)


def _synth_tense_music(rng, n):
    t = _times(n)
    root = _midi(int(rng.integers(33, 40)))
    drone_l = sum(np.sin(2 * math.pi * root * k * t) / k for k in range(1, 8))
    drone_r = sum(np.sin(2 * math.pi * root * 2 ** (1 / 12) * k * t) / k for k in range(1, 8))
    drone = np.stack([drone_l + 0.3 * drone_r, drone_r + 0.3 * drone_l]) * (0.7 + 0.3 * np.sin(2 * math.pi * t / 7))
    tremolo = np.sin(2 * math.pi * root * 16 * t) * (0.5 + 0.5 * np.sin(2 * math.pi * 7.5 * t))
    out = _unit_rms(drone) + 0.4 * _unit_rms(_pan(tremolo, 0.7))
    pulse = np.zeros((2, n))
    beat = 60.0 / rng.uniform(58, 72)
    k = 0
    while k * beat * SAMPLE_RATE < n:
        for offset, gain in ((0.0, 1.0), (0.22, 0.7)):
            _add(pulse, _pan(gain * _kick(0.25), -0.4), int((k * beat + offset) * SAMPLE_RATE))
        k += 1
    return _unit_rms(out + 0.8 * _unit_rms(pulse))


def _synth_night_crickets(rng, n):
    out = 0.3 * _unit_rms(_stereo_bed(rng, n, lambda: _filter(_colored_noise(rng, n, 1.0), "band", [80, 1500])))
    crickets = np.zeros((2, n))
    for _ in range(int(rng.integers(2, 4))):
        carrier = rng.uniform(3800, 5200)
        rate = rng.uniform(1.8, 3.2)
        pos = rng.uniform(-0.9, 0.9)
        if abs(pos) < 0.3:
            pos = math.copysign(0.5, pos)
        pm = int(0.018 * SAMPLE_RATE)
        pt = _times(pm)
        pulse_wave = np.sin(2 * math.pi * carrier * pt) * np.sin(np.linspace(0, math.pi, pm)) ** 2
        t0 = rng.uniform(0, 0.5)
        while t0 * SAMPLE_RATE < n:
            for p in range(3):
                _add(crickets, _pan(pulse_wave, pos), int((t0 + p * 0.03) * SAMPLE_RATE))
            t0 += 1.0 / rate
    return _unit_rms(out + _unit_rms(crickets))


def _synth_wind(rng, n):
    def gust() -> np.ndarray:
        noise = rng.standard_normal(n)
        low = _filter(noise, "band", [150, 600])
        high = _filter(noise, "band", [600, 2200])
        mix = 0.5 + 0.5 * np.tanh(_unit_rms(_filter(rng.standard_normal(n), "low", 0.3)))
        return low * (1 - mix) + high * mix * 0.8

    bed = _stereo_bed(rng, n, gust, common=0.1)
    return _unit_rms(bed * (0.6 + 0.4 * np.abs(_unit_rms(_filter(rng.standard_normal(n), "low", 0.25))))[None])


# ----------------------------------------------------------------------------------------
# Pictures per category: a scalar field mapped through a palette, seen by a moving camera.
# ----------------------------------------------------------------------------------------


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: tuple[int, int]) -> np.ndarray:
    """Low-frequency random field in [0, 1]: a small random grid upsampled bicubically."""
    grid = rng.random(cells).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BICUBIC)
    field = np.asarray(img, dtype=np.float64)
    field -= field.min()
    return field / max(field.max(), 1e-9)


def _texture(kind: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    y /= h
    x /= w
    base = _smooth_field(rng, h, w, (int(rng.integers(3, 6)), int(rng.integers(4, 8))))
    if kind == "streaks":  # rain: vertical streaks over a vertical gradient
        streaks = np.asarray(Image.fromarray(rng.random((h // 16, w)).astype(np.float32), mode="F").resize((w, h), Image.Resampling.BILINEAR))
        field = 0.5 * y + 0.3 * streaks + 0.2 * base
    elif kind == "bands":  # sea: horizontal swell bands below a horizon
        horizon = rng.uniform(0.3, 0.45)
        waves = 0.5 + 0.5 * np.sin(2 * math.pi * (y * rng.uniform(6, 10) + 0.1 * np.sin(2 * math.pi * x * rng.uniform(1, 3))))
        field = np.where(y < horizon, 0.15 + 0.2 * y, 0.45 + 0.4 * waves * (y - horizon)) + 0.15 * base
    elif kind == "blobs":  # forest: foliage blobs and trunks
        trunks = (np.sin(2 * math.pi * x * rng.uniform(4, 8) + rng.uniform(0, 6)) > 0.85).astype(float)
        field = 0.7 * _smooth_field(rng, h, w, (8, 14)) + 0.3 * base - 0.4 * trunks
    elif kind == "grid":  # city: building blocks with lit windows
        blocks = np.floor(x * rng.integers(5, 9)) % 2
        windows = ((np.sin(2 * math.pi * x * 40) > 0.3) & (np.sin(2 * math.pi * y * 25) > 0.3)).astype(float)
        field = 0.3 * blocks + 0.3 * windows * (y > 0.25) + 0.4 * base * (1 - y)
    elif kind == "flames":  # fire: bright at the bottom, flickering tongues
        tongues = _smooth_field(rng, h, w, (4, 16))
        field = np.clip((1 - y) * 0.2 + y * 0.6 + 0.5 * tongues * y, 0, None)
    elif kind == "diagonal":  # engine: metal with diagonal ridges
        field = 0.5 + 0.3 * np.sin(2 * math.pi * (x + y) * rng.uniform(4, 7)) + 0.2 * base
    elif kind == "arches":  # church: stone arches
        columns = np.abs(np.sin(math.pi * x * rng.integers(3, 6)))
        field = 0.4 * columns * (y > 0.3) + 0.35 * (1 - y) + 0.25 * base
    elif kind == "dots":  # festive: confetti and lights
        dots = np.zeros((h, w))
        for cy, cx, r in zip(rng.random(60) * h, rng.random(60) * w, rng.uniform(2, 7, 60)):
            dots[(np.hypot(y * h - cy, x * w - cx) < r)] = rng.random()
        field = 0.5 * base + 0.5 * dots
    elif kind == "vignette":  # tense: a dark room with one light
        cy, cx = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
        field = np.clip(1 - 1.6 * np.hypot(y - cy, (x - cx) * 1.7), 0, 1) * 0.8 + 0.2 * base
    elif kind == "stars":  # night: dark sky, stars, a moon
        stars = (rng.random((h, w)) > 0.995).astype(float)
        moon = (np.hypot(y - rng.uniform(0.15, 0.4), (x - rng.uniform(0.2, 0.8)) * w / h) < 0.08).astype(float)
        field = 0.1 + 0.2 * base * y + 0.7 * np.maximum(stars, moon)
    elif kind == "sweeps":  # wind: grass bent in waves
        field = 0.5 + 0.3 * np.sin(2 * math.pi * (x * rng.uniform(8, 14) + 2 * y + 0.4 * base)) * (y > 0.4) + 0.2 * base
    else:  # pragma: no cover - the table below names only the kinds above
        raise ValueError(f"unknown texture kind {kind!r}")
    field -= field.min()
    return field / max(field.max(), 1e-9)


def _apply_palette(field: np.ndarray, palette: Sequence[tuple[int, int, int]]) -> np.ndarray:
    stops = np.linspace(0.0, 1.0, len(palette))
    colours = np.asarray(palette, dtype=np.float64)
    return np.stack([np.interp(field, stops, colours[:, c]) for c in range(3)], axis=-1)


# ----------------------------------------------------------------------------------------
# The scene categories
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SceneCategory:
    """One kind of scene: how it looks, how it sounds, how people describe it."""

    name: str
    texture: str
    palette: tuple[tuple[int, int, int], ...]
    synth: Callable[[np.random.Generator, int], np.ndarray]
    descriptions: tuple[str, ...]  # CMD style: full sentences with {a} and {b} as characters
    captions: tuple[str, ...]  # LSMDC style: short, SOMEONE for the character
    flicker: float = 0.02  # frame-to-frame brightness jitter


CATEGORIES: tuple[SceneCategory, ...] = (
    SceneCategory(
        "rain", "streaks", ((20, 28, 45), (70, 90, 120), (170, 185, 200)), _synth_rain,
        ("{a} waits under an awning as heavy rain hammers the empty street.",
         "Rain pours down on {a} and {b}, who argue without looking at each other.",
         "Soaked by the storm, {a} walks home alone through the rain."),
        ("SOMEONE stands in the pouring rain.", "Rain streams down the window as SOMEONE watches.", "SOMEONE runs through the rain."),
    ),
    SceneCategory(
        "sea", "bands", ((10, 30, 60), (30, 90, 140), (200, 220, 230)), _synth_sea,
        ("{a} and {b} sit on the shore while waves roll in from the sea.",
         "On the deck of a small boat, {a} stares at the open sea.",
         "The waves crash against the rocks as {a} finally tells {b} the truth."),
        ("SOMEONE gazes out at the sea.", "Waves wash over the beach where SOMEONE walks.", "SOMEONE stands at the water's edge."),
    ),
    SceneCategory(
        "forest_birds", "blobs", ((20, 40, 15), (60, 110, 40), (170, 200, 110)), _synth_forest_birds,
        ("{a} leads {b} along a forest path while birds sing overhead.",
         "Deep in the woods, {a} stops to listen to the birds.",
         "Birdsong fills the forest as {a} and {b} make camp."),
        ("SOMEONE walks through the sunlit forest.", "Birds flutter in the trees above SOMEONE.", "SOMEONE pushes through the undergrowth."),
    ),
    SceneCategory(
        "city_traffic", "grid", ((35, 35, 40), (110, 110, 115), (235, 200, 90)), _synth_city_traffic,
        ("{a} crosses a busy street, dodging the traffic to catch up with {b}.",
         "Cars rush past as {a} and {b} talk on a crowded city corner.",
         "Stuck in traffic, {a} loses patience and honks at the cars ahead."),
        ("SOMEONE hails a cab on the busy street.", "Traffic streams past SOMEONE.", "SOMEONE weaves between the cars."),
    ),
    SceneCategory(
        "fire", "flames", ((10, 5, 5), (180, 40, 10), (250, 200, 60)), _synth_fire,
        ("{a} and {b} huddle around a crackling fire to keep warm.",
         "The house is on fire, and {a} rushes back inside to find {b}.",
         "By the fireplace, {a} burns the old letters one by one."),
        ("SOMEONE feeds the crackling fire.", "Flames light up SOMEONE's face.", "SOMEONE stares into the fire."),
        flicker=0.04,
    ),
    SceneCategory(
        "engine", "diagonal", ((30, 32, 35), (120, 125, 130), (220, 140, 60)), _synth_engine,
        ("{a} starts the old truck, and the engine roars to life.",
         "In the engine room, {a} shouts over the noise of the machines at {b}.",
         "{a} drives through the night with the engine droning on."),
        ("SOMEONE revs the engine.", "SOMEONE works under the hood of the car.", "The engine rumbles as SOMEONE drives."),
    ),
    SceneCategory(
        "church_bells", "arches", ((60, 50, 40), (170, 150, 120), (240, 220, 160)), _synth_church_bells,
        ("Church bells ring out over the square as {a} arrives for the wedding.",
         "{a} and {b} meet in front of the old church while its bells toll.",
         "The bells toll for the funeral, and {a} stands apart from the mourners."),
        ("SOMEONE looks up at the bell tower.", "Bells ring as SOMEONE enters the church.", "SOMEONE crosses the square by the church."),
    ),
    SceneCategory(
        "festive_music", "dots", ((80, 20, 90), (230, 80, 60), (250, 230, 90)), _synth_festive_music,
        ("At a lively party, {a} pulls {b} onto the dance floor as the band plays.",
         "Music and laughter fill the hall while {a} raises a toast.",
         "{a} dances alone at the festival, happier than in years."),
        ("SOMEONE dances to the music.", "The band plays as SOMEONE claps along.", "SOMEONE joins the celebration."),
        flicker=0.05,
    ),
    SceneCategory(
        "tense_music", "vignette", ((5, 5, 8), (90, 15, 20), (200, 170, 150)), _synth_tense_music,
        ("Tension rises as {a} creeps down a dark corridor, unaware that {b} is watching.",
         "{a} holds a gun on {b} while ominous music builds.",
         "In a dim room, {a} opens the envelope with shaking hands."),
        ("SOMEONE edges along the dark hallway.", "SOMEONE freezes, listening.", "SOMEONE slowly opens the door."),
    ),
    SceneCategory(
        "night_crickets", "stars", ((5, 8, 25), (30, 40, 80), (240, 240, 210)), _synth_night_crickets,
        ("Late at night, {a} and {b} lie in the grass while crickets chirp around them.",
         "Crickets sing in the dark as {a} sneaks out of the house.",
         "Under the stars, {a} waits for {b}, who never comes."),
        ("SOMEONE lies awake under the stars.", "Crickets chirp as SOMEONE steps outside.", "SOMEONE walks across the moonlit field."),
    ),
    SceneCategory(
        "wind", "sweeps", ((90, 80, 40), (170, 160, 90), (235, 225, 170)), _synth_wind,
        ("A cold wind sweeps across the plains as {a} rides toward the ranch.",
         "{a} and {b} struggle against the wind on the hilltop.",
         "The wind howls around the lonely farmhouse where {a} waits."),
        ("SOMEONE squints into the wind.", "Wind bends the grass around SOMEONE.", "SOMEONE pulls a coat tight against the wind."),
    ),
)
CATEGORY_NAMES = tuple(c.name for c in CATEGORIES)
_BY_NAME = {c.name: c for c in CATEGORIES}

NAMES = ("Anna", "Marcus", "Lena", "Victor", "Rosa", "Sam", "Clara", "Jonah", "Mira", "Theo", "Ines", "Walter")
DIALOGUE = (
    "We have to leave before it gets dark.",
    "I told you this would happen.",
    "Do you remember the last time we were here?",
    "Nobody is coming to help us.",
    "Keep your voice down, they can hear us.",
    "I never wanted any of this.",
    "Where were you last night?",
    "It is not too late to go back.",
    "Tell me the truth, just this once.",
    "I found the letter in your coat.",
    "We can still make it if we hurry.",
    "You should not have come here.",
    "Everything is going to be fine.",
    "Look at me. I am not afraid of you.",
    "How long have you known?",
    "Let's just get out of here.",
    "I waited for you all day.",
    "This was my father's house.",
    "Promise me you will come back.",
    "Something is wrong. I can feel it.",
    "Give me the keys.",
    "Why did you lie to me?",
    "I think we are being followed.",
    "Happy birthday, my dear friend.",
)
CONNECTORS = ("Then", "Later", "Soon after", "Meanwhile", "After that", "Before long")
VOICES = (("en-us+m3", 45), ("en-gb+f3", 65), ("en-us+f2", 60), ("en+m1", 40), ("en-gb-x-rp+m5", 50), ("en-us+f4", 70))


# ----------------------------------------------------------------------------------------
# Planning a movie timeline (all random choices happen here, in a fixed order)
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Scene:
    category: str
    start_frame: int
    end_frame: int
    seed: int  # texture, sound and camera motion
    light_seed: int  # the pattern of light and shade over the picture
    light_against: int | None  # the previous shot's dhash bits (64-bit int), which this light inverts


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


def _scene_hashes(picture: np.ndarray) -> dict[str, imagehash.ImageHash]:
    """Perceptual hashes of a canvas as the camera first sees it (its centre)."""
    m = CANVAS_MARGIN
    view = Image.fromarray(np.clip(picture[m : m + HEIGHT, m : m + WIDTH], 0, 255).astype(np.uint8))
    return {name: HASHES[name](view) for name in CUT_HASHES}


def _plan_scenes(rng: np.random.Generator, num_frames: int) -> list[Scene]:
    min_frames = int(MIN_SCENE_S * FPS)
    count = int(rng.integers(3, min(8, num_frames // min_frames) + 1))
    lengths = _split_frames(rng, num_frames, count, min_frames)
    scenes: list[Scene] = []
    start, previous, before = 0, None, None
    for length in lengths:
        choices = [c for c in CATEGORY_NAMES if previous is None or c != previous]
        category = choices[int(rng.integers(len(choices)))]
        seed = int(rng.integers(2**31))
        texture = _texture_canvas(category, seed)
        against = int(str(before["dhash"]), 16) if before is not None else None
        # A hard cut shows a clearly different shot. Unrelated pictures sit at hash similarity
        # ~0.5, right at the key-frame threshold, so chance alone would hide cuts: the light of
        # a shot brightens where the previous shot's dhash saw darkening and vice versa, and it
        # is redrawn until the default fingerprint (dhash) is far from the previous shot's.
        for _ in range(200):
            light_seed = int(rng.integers(2**31))
            hashes = _scene_hashes(texture * _light(light_seed, against)[..., None])
            if before is None or all(similarity(hashes[h], before[h]) <= CUT_MAX_SIMILARITY for h in CUT_HASHES):
                break
        else:
            raise SampleGenerationError(f"found no picture for a {category} scene distinct from the previous shot")
        scenes.append(Scene(category, start, start + length, seed, light_seed, against))
        start += length
        previous, before = category, hashes
    return scenes


def _plan_lsmdc_clips(rng: np.random.Generator, num_frames: int) -> list[int]:
    lo, hi = (int(s * FPS) for s in LSMDC_CLIP_RANGE_S)
    lengths: list[int] = []
    while sum(lengths) < num_frames:
        lengths.append(int(rng.integers(lo, hi + 1)))
    lengths[-1] = num_frames - sum(lengths[:-1])
    if lengths[-1] < lo and len(lengths) > 1:
        if lengths[-2] + lengths[-1] <= hi:
            lengths[-2] += lengths.pop()
        else:
            lengths[-2] -= lo - lengths[-1]
            lengths[-1] = lo
    return [0, *np.cumsum(lengths).tolist()]


def _espeak(text: str, voice: str, pitch: int, speed: int) -> np.ndarray:
    """Speak ``text`` with espeak-ng; mono float64 at SAMPLE_RATE, silence trimmed."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SampleGenerationError("espeak-ng is not installed (Debian: apt-get install espeak-ng); `make demo` or `make test` installs it")
    with tempfile.TemporaryDirectory(prefix="sos-espeak-") as tmp:
        wav_path = Path(tmp) / "line.wav"
        result = subprocess.run([exe, "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(wav_path), text], capture_output=True, text=True)
        if result.returncode != 0 or not wav_path.exists():
            raise SampleGenerationError(f"espeak-ng failed for voice {voice!r}: {result.stderr.strip()}")
        with wave.open(str(wav_path)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
    audio = signal.resample_poly(pcm, SAMPLE_RATE, rate)
    voiced = np.flatnonzero(np.abs(audio) > 1e-3)
    if voiced.size == 0:
        raise SampleGenerationError(f"espeak-ng produced silence for {text!r}")
    # Trimmed at a -60 dBFS threshold: the span is tight and the step at its ends inaudible.
    return audio[voiced[0] : voiced[-1] + 1]


def _plan_dialogue(rng: np.random.Generator, clip_bounds: list[int], characters: tuple[str, str]) -> list[tuple[DialogueLine, np.ndarray]]:
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
            gain = _db(SPEECH_DBFS + rng.uniform(-2, 2)) / _rms(audio)
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
        sentence = _BY_NAME[scene.category].descriptions[int(rng.integers(3))].format(a=a, b=b)
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
    return _BY_NAME[scene.category].captions[int(rng.integers(3))]


def plan_movie(seed: int, index: int, duration_s: float, style: str) -> MovieTimeline:
    """Plan movie ``index`` of a seed and synthesise its audio stems (no files written)."""
    _check_args(1, duration_s, style)
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    num_frames = round(duration_s * FPS)
    scenes = _plan_scenes(rng, num_frames)
    clip_bounds = _plan_lsmdc_clips(rng, num_frames) if style == "lsmdc" else [0, num_frames]
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
        part = _BY_NAME[scene.category].synth(scene_rng, s1 - s0) * _db(BACKGROUND_DBFS + scene_rng.uniform(-3, 3))
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
    return MovieTimeline(index, seed, num_frames, scenes, clip_bounds, characters, [line for line, _ in placed], background, speech, description, captions, 20 * math.log10(gain))


# ----------------------------------------------------------------------------------------
# Rendering and writing
# ----------------------------------------------------------------------------------------


def _texture_canvas(category: str, seed: int) -> np.ndarray:
    """The scene's picture before lighting: its category's texture through its palette."""
    spec = _BY_NAME[category]
    rng = np.random.default_rng([seed, 1])
    field = _texture(spec.texture, rng, HEIGHT + 2 * CANVAS_MARGIN, WIDTH + 2 * CANVAS_MARGIN)
    return _apply_palette(field, spec.palette)


def _light(light_seed: int, against: int | None = None) -> np.ndarray:
    """Broad light and shade over the canvas, in [0.1, 1].

    Without ``against``: a random smooth pattern. With it (a 64-bit dhash of the previous
    shot): on dhash's 9 x 8 grid of the view, each step to the right goes down where that
    hash's bit says "brighter to the right" and up where it says "darker", by random amounts.
    """
    rng = np.random.default_rng([light_seed, 5])
    if against is None:
        grid = rng.random((8, 9))
    else:
        bits = np.array([(against >> (63 - i)) & 1 for i in range(64)], dtype=float).reshape(8, 8)
        steps = np.where(bits > 0, -1.0, 1.0) * rng.uniform(0.4, 1.0, size=(8, 8))
        grid = np.concatenate([rng.uniform(0, 1, size=(8, 1)), steps], axis=1).cumsum(axis=1)
    grid = (grid - grid.min()) / max(grid.max() - grid.min(), 1e-9)
    view = np.asarray(Image.fromarray(grid.astype(np.float32), mode="F").resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR))
    light = np.pad(view, CANVAS_MARGIN, mode="edge")
    return 0.1 + 0.9 * np.clip(light, 0.0, 1.0)


def _scene_canvas(scene: Scene) -> np.ndarray:
    return _texture_canvas(scene.category, scene.seed) * _light(scene.light_seed, scene.light_against)[..., None]


def _iter_frames(timeline: MovieTimeline, lo: int, hi: int) -> Iterable[np.ndarray]:
    """RGB uint8 frames [lo, hi) of the movie; frame k looks the same whichever clip asks."""
    margin = CANVAS_MARGIN
    for scene in timeline.scenes:
        start, end = max(lo, scene.start_frame), min(hi, scene.end_frame)
        if start >= end:
            continue
        canvas = _scene_canvas(scene)
        motion = np.random.default_rng([scene.seed, 2])
        length = scene.end_frame - scene.start_frame
        direction = motion.uniform(0, 2 * math.pi)
        travel = min(motion.uniform(1.0, 3.0) * length / FPS, MAX_PAN_PX)  # slow pan, in pixels
        flicker = _BY_NAME[scene.category].flicker
        for k in range(start, end):
            progress = (k - scene.start_frame) / max(length - 1, 1) - 0.5
            dx = int(round(margin + travel * progress * math.cos(direction)))
            dy = int(round(margin + travel * progress * math.sin(direction)))
            frame_rng = np.random.default_rng([scene.seed, 3, k])
            frame = canvas[dy : dy + HEIGHT, dx : dx + WIDTH] * (1 + flicker * frame_rng.standard_normal())
            frame = frame + frame_rng.normal(0.0, 3.0, size=frame.shape)  # film grain
            yield np.clip(frame, 0, 255).astype(np.uint8)


def _ffmpeg_exe() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise SampleGenerationError("ffmpeg is not installed (Debian: apt-get install ffmpeg); `make demo` or `make test` installs it")
    return exe


def _encode_mp4(path: Path, frames: Iterable[np.ndarray], audio: np.ndarray) -> None:
    """H.264 + AAC, with settings fixed so equal input gives byte-identical files."""
    with tempfile.TemporaryDirectory(prefix="sos-encode-") as tmp:
        wav = Path(tmp) / "mix.wav"
        sf.write(wav, audio.T.astype(np.float32), SAMPLE_RATE, subtype="FLOAT")
        log = Path(tmp) / "ffmpeg.log"
        with atomic_path(path) as out, open(log, "wb") as err:
            cmd = [
                _ffmpeg_exe(), "-nostdin", "-y", "-hide_banner", "-loglevel", "error",
                "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "-",
                "-i", str(wav),
                "-map", "0:v:0", "-map", "1:a:0",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-g", str(2 * FPS), "-threads", "1",
                "-c:a", "aac", "-b:a", "192k", "-ar", str(SAMPLE_RATE), "-ac", "2",
                "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
                "-f", "mp4", str(out),
            ]  # fmt: skip
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=err)
            try:
                for frame in frames:
                    proc.stdin.write(frame.tobytes())
                proc.stdin.close()
            except BrokenPipeError:
                pass
            if proc.wait() != 0:
                raise SampleGenerationError(f"ffmpeg failed writing {path}: {log.read_text(errors='replace').strip()}")


def _write_wav(path: Path, audio: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        sf.write(tmp, audio.T, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def _clip_record(timeline: MovieTimeline, clip_id: str, lo: int, hi: int, style: str, clip_index: int, movie: str, text_key: str, text: str) -> dict:
    s_lo = frames_to_samples(lo)
    scenes = []
    for scene in timeline.scenes:
        a, b = max(lo, scene.start_frame), min(hi, scene.end_frame)
        if a < b:
            scenes.append({"category": scene.category, "start_frame": a - lo, "end_frame": b - lo, "start": (a - lo) / FPS, "end": (b - lo) / FPS})
    dialogue = [
        {
            "start_sample": line.start_sample - s_lo, "end_sample": line.end_sample - s_lo,
            "start": (line.start_sample - s_lo) / SAMPLE_RATE, "end": (line.end_sample - s_lo) / SAMPLE_RATE,
            "text": line.text, "speaker": line.speaker, "voice": line.voice,
        }  # fmt: skip
        for line in timeline.dialogue
        if frames_to_samples(lo) <= line.start_sample < frames_to_samples(hi)
    ]
    return {
        "id": clip_id,
        "style": style,
        "movie": movie,
        "clip_index": clip_index,
        "movie_start_frame": lo,
        "movie_start": lo / FPS,
        "num_frames": hi - lo,
        "fps": FPS,
        "duration": (hi - lo) / FPS,
        "num_samples": frames_to_samples(hi) - s_lo,
        "mix_gain_db": timeline.mix_gain_db,
        "sample_rate": SAMPLE_RATE,
        "width": WIDTH,
        "height": HEIGHT,
        "scenes": scenes,
        "cuts": [s["start"] for s in scenes[1:]],
        "cut_frames": [s["start_frame"] for s in scenes[1:]],
        "dialogue": dialogue,
        text_key: text,
        "files": {"video": f"{clip_id}.mp4", "background": f"{clip_id}.background.wav", "speech": f"{clip_id}.speech.wav"},
        "generator": {"name": "sound_of_story.dataset_builder.samples", "version": GENERATOR_VERSION, "seed": timeline.seed, "movie_index": timeline.index},
    }


def _write_clip(out_dir: Path, timeline: MovieTimeline, record: dict, lo: int, hi: int) -> None:
    s0, s1 = frames_to_samples(lo), frames_to_samples(hi)
    bg, sp = timeline.background[:, s0:s1], timeline.speech[:, s0:s1]
    files = record["files"]
    _write_wav(out_dir / files["background"], bg)
    _write_wav(out_dir / files["speech"], sp)
    _encode_mp4(out_dir / files["video"], _iter_frames(timeline, lo, hi), bg + sp)
    write_json_atomic(out_dir / f"{record['id']}.json", record)  # last: a clip with a JSON is complete


def _check_args(num_clips: int, duration_s: float, style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    if not isinstance(num_clips, int) or num_clips < 1:
        raise ValueError(f"num_clips must be a positive integer, got {num_clips!r}")
    if not (MIN_DURATION_S <= duration_s <= MAX_DURATION_S):
        raise ValueError(f"duration must be between {MIN_DURATION_S:g} and {MAX_DURATION_S:g} seconds (a CMD key clip is about 150 s), got {duration_s:g}")


def generate_samples(out_dir: str | Path, num_clips: int = 4, seed: int = 0, duration_s: float = 40.0, style: str = "cmd", progress: bool = True) -> list[Path]:
    """Write ``num_clips`` sample clips with ground truth into ``out_dir``.

    ``style="cmd"``: each clip is one movie timeline of ``duration_s`` seconds with a
    CMD-style description; two consecutive clips share a movie name.
    ``style="lsmdc"``: movies of ``duration_s`` seconds are cut into runs of 3 to 12 s
    clips, one caption each, in order, until ``num_clips`` clips exist.

    Returns the paths of the per-clip JSON files, in manifest order; ``manifest.jsonl`` in
    ``out_dir`` lists the clips in the dataset builder's input format (paths relative to it).
    """
    _check_args(num_clips, duration_s, style)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    manifest: list[dict] = []
    bar = tqdm(total=num_clips, desc=f"sample clips ({style})", unit="clip", disable=not progress)
    movie_index = 0
    while len(records) < num_clips:
        timeline = plan_movie(seed, movie_index, duration_s, style)
        if style == "cmd":
            clip_id = f"clip_{movie_index:04d}"
            movie = f"sample_movie_{movie_index // 2:03d}"
            record = _clip_record(timeline, clip_id, 0, timeline.num_frames, style, 0, movie, "description", timeline.description)
            _write_clip(out_dir, timeline, record, 0, timeline.num_frames)
            records.append(record)
            manifest.append({"id": clip_id, "video": record["files"]["video"], "description": timeline.description, "movie": movie})
            bar.update(1)
        else:
            movie = f"sample_movie_{movie_index:03d}"
            bounds = timeline.clip_bounds
            for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
                if len(records) == num_clips:
                    break
                clip_id = f"{movie}_clip_{k:03d}"
                record = _clip_record(timeline, clip_id, lo, hi, style, k, movie, "caption", timeline.captions[k])
                _write_clip(out_dir, timeline, record, lo, hi)
                records.append(record)
                manifest.append({"id": clip_id, "movie": movie, "clip_index": k, "video": record["files"]["video"], "caption": timeline.captions[k]})
                bar.update(1)
        movie_index += 1
    bar.close()
    write_jsonl_atomic(out_dir / "manifest.jsonl", manifest)
    return [out_dir / f"{r['id']}.json" for r in records]
