"""Frames from image files that anyone may have made, read with bounded memory at the size the model takes.

The one reader of frame files for the web app's uploads (`app/space.py`), ``sound-of-story recommend --frames``
and ``sound-of-story generate --frames``. Before anything is decoded it checks the number of files, each file's
size, its format (PNG, JPEG, WebP or BMP only: Pillow's other plugins include decoders that start programs), its
declared pixel count and aspect ratio; then it decodes each distinct file once (identical files share one image)
and shrinks it to the model's size while reading: JPEG decodes straight at 1/2, 1/4 or 1/8 scale (Pillow's
``draft``), every format is reduced by whole factors before the final resampling (``reducing_gap``). Without
this, a 450 KB PNG that declares 12000 x 12000 pixels decodes to 432 MB, and the retrieval processor's 40 frames
made 40 full-size copies of it.

Memory while reading is at most one decoded frame at a time: below ``MAX_FRAME_PIXELS`` x 7 bytes (a 4-byte
mode such as RGBA plus its RGB conversion), about 232 MB; what stays is one model-size RGB image per distinct
file (for example 224 x 398 pixels, 267 KB, for a 16:9 frame and CLIP).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sound_of_story.core.hashing import file_sha256

if TYPE_CHECKING:
    import PIL.Image

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# Pillow plugins a frame may be decoded by (matching FRAME_SUFFIXES); Image.open tries no other.
FRAME_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
# Frames per request: a story's key frames (one per shot) for a few minutes of video; story mode's scenes are
# capped at the same order (recommendation's MAX_STORY_SCENES).
MAX_FRAMES = 64
# An encoded frame file: a 4K PNG screenshot is 5-15 MB.
MAX_FRAME_FILE_BYTES = 20 * 2**20
# Declared pixels: an 8K UHD video frame (7680 x 4320), a third of Pillow's MAX_IMAGE_PIXELS (89.5 M).
MAX_FRAME_PIXELS = 7680 * 4320
# Longest side over shortest: wider panoramas would make the processor's shortest-side resize arbitrarily long.
MAX_ASPECT_RATIO = 4.0
# The shorter side a frame is read at: CLIP's image processors resize the shortest edge to 224 (the retrieval
# models take the processor's own size, `retrieval_frame_side`); SoSgen's ControlNet cover-fits frames into the
# spectrogram image, 512 pixels high for Riffusion, and encodes them with CLIP at 224.
RETRIEVAL_FRAME_SIDE = 224
GENERATION_FRAME_SIDE = 512


@dataclasses.dataclass(frozen=True)
class FrameLimits:
    """What one request may hand the reader (the defaults are the module's caps)."""

    max_frames: int = MAX_FRAMES
    max_file_bytes: int = MAX_FRAME_FILE_BYTES
    max_pixels: int = MAX_FRAME_PIXELS
    max_aspect_ratio: float = MAX_ASPECT_RATIO


def retrieval_frame_side(processor: Any) -> int:
    """The shorter side a retrieval processor resizes frames to (its CLIP image processor's ``shortest_edge``),
    so a frame read at that side is what the processor would have made of the full image."""
    size = getattr(getattr(processor, "image_processor", None), "size", None) or {}
    if size.get("shortest_edge"):
        return int(size["shortest_edge"])
    if size.get("height") and size.get("width"):
        return int(min(size["height"], size["width"]))
    return RETRIEVAL_FRAME_SIDE


def scaled_size(width: int, height: int, side: int) -> tuple[int, int]:
    """(width, height) with the shorter side ``side`` and the aspect ratio kept (the longer side rounded down, as
    transformers' shortest-edge resize does), or the size itself when it is already that small."""
    short, long = min(width, height), max(width, height)
    if short <= side:
        return width, height
    new_long = max(1, int(side * long / short))
    return (side, new_long) if width <= height else (new_long, side)


def fit_frame(image: PIL.Image.Image, side: int) -> PIL.Image.Image:
    """``image`` as RGB with its shorter side at most ``side``; JPEG decodes at a reduced scale when it can."""
    from PIL import Image

    target = scaled_size(*image.size, side)
    if target != image.size:
        image.draft("RGB", target)  # JPEG: DCT scaling to at least the target size; other formats: nothing
    image.load()
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != target:
        image = image.resize(target, Image.Resampling.BICUBIC, reducing_gap=2.0)
    return image


class FrameReadError(ValueError):
    """A frame file that is refused (too many, too large, not an image of an accepted format)."""


def check_frame_size(width: int, height: int, name: str, limits: FrameLimits = FrameLimits()) -> None:
    """Refuse a frame (an image's or a video's, as declared before decoding) of more than ``limits.max_pixels``
    pixels or a longer-than-wide ratio over ``limits.max_aspect_ratio``; ``name`` starts the message."""
    if width < 1 or height < 1:
        raise FrameReadError(f"{name} is not a readable image (it declares {width} x {height} pixels)")
    if width * height > limits.max_pixels:
        raise FrameReadError(
            f"{name} declares {width} x {height} pixels, more than the {limits.max_pixels:,} a frame may have"
        )
    if max(width, height) > limits.max_aspect_ratio * min(width, height):
        raise FrameReadError(
            f"{name} is {width} x {height} pixels: frames may be at most {limits.max_aspect_ratio:g} times "
            "longer than wide"
        )


def read_frame_file(
    path: str | os.PathLike, side: int, limits: FrameLimits = FrameLimits(), name: str | None = None
) -> PIL.Image.Image:
    """One frame file as an RGB image whose shorter side is at most ``side``, after the checks of `FrameLimits`.

    ``name`` is how messages call the file (default: its path). Raises `FrameReadError` (a ValueError).
    """
    from PIL import Image

    path = Path(path)
    name = str(path) if name is None else name
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise FrameReadError(f"{name} has {size:,} bytes, more than the {limits.max_file_bytes:,} a frame may have")
    try:
        with warnings.catch_warnings():
            # Our pixel cap is below Pillow's warning threshold and is checked right after the header is read;
            # Pillow's DecompressionBombError (at twice its threshold) still stops an open before that.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=FRAME_FORMATS) as image:
                check_frame_size(*image.size, name, limits)
                return fit_frame(image, side)
    except FrameReadError:
        raise
    except Image.DecompressionBombError as err:
        raise FrameReadError(f"{name} declares more pixels than a frame may have ({err})") from None
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, ... for damaged files
        raise FrameReadError(f"{name} is not a readable image ({type(err).__name__}: {err})") from None


def read_frame_files(
    paths: Sequence[str | os.PathLike],
    side: int,
    limits: FrameLimits = FrameLimits(),
    name_of: Callable[[Path], str] = str,
    flag: str = "",
) -> list[PIL.Image.Image]:
    """Frame files, in the order given, as RGB images at most ``side`` on their shorter side.

    Files with the same content are decoded once and share one image. ``name_of`` says how messages call a file
    (the web app shows names, never server paths); ``flag`` (an option such as ``--frames``) starts every
    message. Raises `FrameReadError` (a ValueError) for more than ``limits.max_frames`` files or a refused file;
    counts and file sizes are checked before any file is decoded.
    """
    prefix = f"{flag}: " if flag else ""
    paths = [Path(p) for p in paths]
    if len(paths) > limits.max_frames:
        raise FrameReadError(f"{prefix}{len(paths)} frames, more than the {limits.max_frames} one request may have")
    for path in paths:
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            raise FrameReadError(
                f"{prefix}{name_of(path)} has {size:,} bytes, more than the {limits.max_file_bytes:,} a frame may have"
            )
    by_content: dict[str, PIL.Image.Image] = {}
    frames = []
    for path in paths:
        digest = file_sha256(path)
        if digest not in by_content:
            by_content[digest] = read_frame_file(path, side, limits, prefix + name_of(path))
        frames.append(by_content[digest])
    return frames


def frame_files_in(folder: Path, flag: str) -> list[Path]:
    """The frame files (`FRAME_SUFFIXES`) directly in ``folder``, in file-name order; ``flag`` names the option
    in messages. Raises FileNotFoundError for a missing folder, ValueError for one without frames."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{flag}: {folder} is not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise ValueError(f"{flag}: no frames: no images ({', '.join(FRAME_SUFFIXES)}) in {folder}")
    return files


__all__ = [
    "FRAME_FORMATS",
    "FRAME_SUFFIXES",
    "GENERATION_FRAME_SIDE",
    "MAX_ASPECT_RATIO",
    "MAX_FRAMES",
    "MAX_FRAME_FILE_BYTES",
    "MAX_FRAME_PIXELS",
    "RETRIEVAL_FRAME_SIDE",
    "FrameLimits",
    "FrameReadError",
    "fit_frame",
    "frame_files_in",
    "read_frame_file",
    "read_frame_files",
    "retrieval_frame_side",
    "scaled_size",
]
