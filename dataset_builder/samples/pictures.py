"""The pictures of the sample clips: a scalar field through a palette, lit, seen by a moving camera.

Every scene draws its category's texture (rain streaks, city blocks, ...) through the
category's palette, under a pattern of light and shade, on a canvas a little larger than the
frame so that the camera can pan. A hard cut must show a clearly different shot to the key-frame
detector (dhash by default), and two unrelated pictures sit at hash similarity ~0.5, right at
its threshold: so the light of a shot is drawn against the previous shot's dhash until the two
are far apart (:func:`find_distinct_light`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator, Sequence

import imagehash
import numpy as np
from PIL import Image

from ..key_frames import HASHES, similarity
from ..sample_options import SampleGenerationError
from .categories import CATEGORIES_BY_NAME, TextureKind

FPS = 24
WIDTH, HEIGHT = 320, 180
CANVAS_MARGIN = 24  # pixels of picture around the frame, room for the camera to move
MAX_PAN_PX = 10  # camera travel per scene: small against the 9x8 hash grid (~35 px cells)
CUT_HASHES = ("dhash",)
CUT_MAX_SIMILARITY = 0.375  # between consecutive shots, for every hash in CUT_HASHES
LIGHT_DRAWS = 200  # lights drawn over the category's own texture before the fallback
# The fallback: pictures whose shapes come more and more from the light pattern (1.0: only
# from it, which inverts the previous shot's dhash whatever the category's texture).
FALLBACK_LIGHT_SHARES = (0.5, 0.75, 1.0)
FALLBACK_DRAWS = 8  # lights drawn at each share of the fallback
GRAIN = 5  # film grain: up to this many levels of 255 up or down, per pixel and frame


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: tuple[int, int]) -> np.ndarray:
    """Low-frequency random field in [0, 1]: a small random grid upsampled bicubically."""
    grid = rng.random(cells).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BICUBIC)
    field = np.asarray(img, dtype=np.float64)
    field -= field.min()
    return field / max(field.max(), 1e-9)


def _texture(kind: TextureKind, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    y /= h
    x /= w
    base = _smooth_field(rng, h, w, (int(rng.integers(3, 6)), int(rng.integers(4, 8))))
    if kind == "streaks":  # rain: vertical streaks over a vertical gradient
        streaks = np.asarray(
            Image.fromarray(rng.random((h // 16, w)).astype(np.float32), mode="F").resize(
                (w, h), Image.Resampling.BILINEAR
            )
        )
        field = 0.5 * y + 0.3 * streaks + 0.2 * base
    elif kind == "bands":  # sea: horizontal swell bands below a horizon
        horizon = rng.uniform(0.3, 0.45)
        waves = 0.5 + 0.5 * np.sin(
            2 * math.pi * (y * rng.uniform(6, 10) + 0.1 * np.sin(2 * math.pi * x * rng.uniform(1, 3)))
        )
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
            # Only pixels within r of the centre can be inside: the same test on that box is ten times faster.
            box = slice(max(int(cy - r) - 1, 0), int(cy + r) + 2), slice(max(int(cx - r) - 1, 0), int(cx + r) + 2)
            dots[box][np.hypot(y[box] * h - cy, x[box] * w - cx) < r] = rng.random()
        field = 0.5 * base + 0.5 * dots
    elif kind == "vignette":  # tense: a dark room with one light
        cy, cx = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
        field = np.clip(1 - 1.6 * np.hypot(y - cy, (x - cx) * 1.7), 0, 1) * 0.8 + 0.2 * base
    elif kind == "stars":  # night: dark sky, stars, a moon
        stars = (rng.random((h, w)) > 0.995).astype(float)
        moon = (np.hypot(y - rng.uniform(0.15, 0.4), (x - rng.uniform(0.2, 0.8)) * w / h) < 0.08).astype(float)
        field = 0.1 + 0.2 * base * y + 0.7 * np.maximum(stars, moon)
    elif kind == "sweeps":  # wind: grass bent in waves
        field = (
            0.5 + 0.3 * np.sin(2 * math.pi * (x * rng.uniform(8, 14) + 2 * y + 0.4 * base)) * (y > 0.4) + 0.2 * base
        )
    else:  # pragma: no cover - the table below names only the kinds above
        raise ValueError(f"unknown texture kind {kind!r}")
    field -= field.min()
    return field / max(field.max(), 1e-9)


def _apply_palette(field: np.ndarray, palette: Sequence[tuple[int, int, int]]) -> np.ndarray:
    stops = np.linspace(0.0, 1.0, len(palette))
    colours = np.asarray(palette, dtype=np.float64)
    return np.stack([np.interp(field, stops, colours[:, c]) for c in range(3)], axis=-1)


@functools.lru_cache(maxsize=16)
def _texture_field(category: str, seed: int) -> np.ndarray:
    """The scene's texture, a field in [0, 1] over the whole canvas (frame and margins).

    Cached (read-only): the search draws it, then every clip that shows the scene.
    """
    rng = np.random.default_rng([seed, 1])
    field = _texture(CATEGORIES_BY_NAME[category].texture, rng, HEIGHT + 2 * CANVAS_MARGIN, WIDTH + 2 * CANVAS_MARGIN)
    field.flags.writeable = False
    return field


def _light_pattern(light_seed: int, against: int | None) -> np.ndarray:
    """Broad light and shade over the frame (the canvas without margins), in [0, 1].

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
    view = np.asarray(
        Image.fromarray(grid.astype(np.float32), mode="F").resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR)
    )
    return np.clip(view, 0.0, 1.0)


def _brightness(pattern: np.ndarray) -> np.ndarray:
    """The light a pattern casts: never fully dark, so the texture always shows."""
    return 0.1 + 0.9 * pattern


def _to_canvas(view: np.ndarray) -> np.ndarray:
    """A frame-sized array extended to the canvas by repeating its edges."""
    return np.pad(view, CANVAS_MARGIN, mode="edge")


def _picture(
    texture: np.ndarray, pattern: np.ndarray, palette: Sequence[tuple[int, int, int]], light_share: float
) -> np.ndarray:
    """RGB float picture: the texture (mixed with the light pattern by ``light_share``) through the palette, lit."""
    field = texture if light_share == 0.0 else (1.0 - light_share) * texture + light_share * pattern
    return _apply_palette(field, palette) * _brightness(pattern)[..., None]


def _view(canvas: np.ndarray) -> np.ndarray:
    """The frame as the camera sees it at rest (the canvas's centre)."""
    return canvas[CANVAS_MARGIN : CANVAS_MARGIN + HEIGHT, CANVAS_MARGIN : CANVAS_MARGIN + WIDTH]


def _pixel_hashes(pixels: np.ndarray) -> dict[str, imagehash.ImageHash]:
    image = Image.fromarray(pixels)
    return {name: HASHES[name](image) for name in CUT_HASHES}


def shot_hashes(view: np.ndarray) -> dict[str, imagehash.ImageHash]:
    """Perceptual hashes (CUT_HASHES) of a frame-sized RGB float picture."""
    return _pixel_hashes(np.clip(view, 0, 255).astype(np.uint8))


@dataclasses.dataclass(frozen=True)
class Scene:
    """One shot of a movie: its frames, its category, and the seeds of its picture and sound."""

    category: str
    start_frame: int
    end_frame: int
    seed: int  # texture, sound and camera motion
    light_seed: int  # the pattern of light and shade over the picture
    light_against: int | None  # the previous shot's dhash bits (64-bit int), which this light inverts
    light_share: float = 0.0  # how much of the picture's shapes the light pattern gives (the fallback; 0: none)

    def canvas(self) -> np.ndarray:
        """The scene's RGB picture (float, 0 to 255) over the whole canvas, before the camera moves."""
        texture = _texture_field(self.category, self.seed)
        return _picture(
            texture,
            _to_canvas(_light_pattern(self.light_seed, self.light_against)),
            CATEGORIES_BY_NAME[self.category].palette,
            self.light_share,
        )

    def frames(self, lo: int, hi: int) -> Iterator[np.ndarray]:
        """RGB uint8 frames of the scene that fall in the movie's frames [lo, hi).

        The camera pans slowly across the canvas; brightness flickers and film grain varies
        from frame to frame, all seeded by the frame's index in the movie, so frame k looks
        the same whichever clip asks for it.
        """
        start, end = max(lo, self.start_frame), min(hi, self.end_frame)
        if start >= end:
            return
        canvas = _canvas(self)
        motion = np.random.default_rng([self.seed, 2])
        length = self.end_frame - self.start_frame
        direction = motion.uniform(0, 2 * math.pi)
        travel = min(motion.uniform(1.0, 3.0) * length / FPS, MAX_PAN_PX)  # slow pan, in pixels
        flicker = CATEGORIES_BY_NAME[self.category].flicker
        margin = CANVAS_MARGIN
        for k in range(start, end):
            progress = (k - self.start_frame) / max(length - 1, 1) - 0.5
            dx = int(round(margin + travel * progress * math.cos(direction)))
            dy = int(round(margin + travel * progress * math.sin(direction)))
            frame_rng = np.random.default_rng([self.seed, 3, k])
            gain = np.float32(1 + flicker * frame_rng.standard_normal())
            frame = (canvas[dy : dy + HEIGHT, dx : dx + WIDTH] * gain).astype(np.int16)
            # Film grain: whole levels drawn uniformly in [-GRAIN, GRAIN] (standard deviation ~3.2 levels).
            # Integer draws are ten times faster than Gaussian floats, which took most of a clip's time.
            frame += frame_rng.integers(-GRAIN, GRAIN + 1, size=frame.shape, dtype=np.int16)
            yield np.clip(frame, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _canvas(scene: Scene) -> np.ndarray:
    """The scene's canvas in float32 (read-only), drawn once for all the clips that show the scene."""
    canvas = scene.canvas().astype(np.float32)
    canvas.flags.writeable = False
    return canvas


@dataclasses.dataclass(frozen=True)
class DistinctLight:
    """The light found for a shot, and the hashes of the picture it gives."""

    light_seed: int
    light_against: int | None
    light_share: float
    hashes: dict[str, imagehash.ImageHash]


def _is_distinct(hashes: dict[str, imagehash.ImageHash], previous: dict[str, imagehash.ImageHash] | None) -> bool:
    return previous is None or all(similarity(hashes[h], previous[h]) <= CUT_MAX_SIMILARITY for h in CUT_HASHES)


def find_distinct_light(
    rng: np.random.Generator, category: str, seed: int, previous: dict[str, imagehash.ImageHash] | None
) -> DistinctLight:
    """Draw the light of a shot until its picture is far, under CUT_HASHES, from the previous shot's.

    The light brightens where the previous shot's dhash saw darkening and vice versa. Some
    textures (city blocks, a vignette) have edges stronger than any light: after LIGHT_DRAWS
    lights over the category's own texture, the picture takes more and more of its shapes from
    the light pattern itself (FALLBACK_LIGHT_SHARES), keeping the category's palette. At a share
    of 1 the picture's brightness follows the light pattern alone, which inverts the previous
    dhash, so the search always ends.
    """
    palette = CATEGORIES_BY_NAME[category].palette
    texture = _view(_texture_field(category, seed))
    colours = _apply_palette(texture, palette)  # the texture without light, drawn once for every try
    against = int(str(previous["dhash"]), 16) if previous is not None else None
    picture = np.empty_like(colours)  # reused: allocating it took most of a draw's time
    for _ in range(LIGHT_DRAWS):
        light_seed = int(rng.integers(2**31))
        np.multiply(colours, _brightness(_light_pattern(light_seed, against))[..., None], out=picture)
        hashes = _pixel_hashes(np.clip(picture, 0, 255, out=picture).astype(np.uint8))
        if _is_distinct(hashes, previous):
            return DistinctLight(light_seed, against, 0.0, hashes)
    for share in FALLBACK_LIGHT_SHARES:
        for _ in range(FALLBACK_DRAWS):
            light_seed = int(rng.integers(2**31))
            hashes = shot_hashes(_picture(texture, _light_pattern(light_seed, against), palette, share))
            if _is_distinct(hashes, previous):
                return DistinctLight(light_seed, against, share, hashes)
    raise SampleGenerationError(
        f"found no picture for a {category} scene distinct from the previous shot, not even from light alone (a bug)"
    )
