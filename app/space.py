"""The Sound of Story web app (Gradio), ready to run as a Hugging Face Space.

Three tabs, on models that ``sound-of-story demo`` trained (by default) or any saved folder / Hub id:

- **Generate**: background sound from a description and/or uploaded frames (SoSgen; the ControlNet
  pipeline when frames are given), as audio and its spectrogram.
- **Retrieve**: the closest sounds of a sound library (a built SoS dataset or a folder of audio
  files) for a description or a scene's frames, ranked by the retrieval model (`SoundLibraryIndex`).
- **Recommend**: one sound per scene of a story (its key frames and their times), switching only
  at scene cuts (`SoundLibraryIndex.recommend_story`).

``sound-of-story space`` starts it; ``python app/space.py`` does the same with the settings taken
from ``SOS_*`` environment variables (how a Space passes them; see ``SPACE_ENVIRONMENT``). Both serve on
127.0.0.1 unless told otherwise (a Space sets ``GRADIO_SERVER_NAME`` itself).

What a visitor can make it do is bounded: uploads go through the bounded frame reader
(`sound_of_story.app.frame_reader`: count, size and pixel caps, read at the model's size), every slider's
range is checked again on the server (the API takes any number), the queue holds at most ``QUEUE_MAX_SIZE``
requests, uploads and generated files are deleted after ``CACHE_MAX_AGE_S``, and error messages name no
server path.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np

DEFAULT_DEMO_DIR = Path("demo_output")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
TOP_K = 5
DEFAULT_DURATION_S = 5.0
MAX_DURATION_S = 30.0
DEFAULT_STEPS = 20
MAX_STEPS = 100
# Requests waiting in Gradio's queue (one runs at a time); more are turned away instead of piling up.
QUEUE_MAX_SIZE = 16
# Gradio deletes the uploads and generated files it cached that are older than CACHE_MAX_AGE_S, every
# CACHE_CLEANUP_EVERY_S (and all of them when the app stops).
CACHE_CLEANUP_EVERY_S = 600
CACHE_MAX_AGE_S = 3600
# An absolute path in a message (not the "//" of a URL): the browser is shown only its last part.
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[^\s'\"`,;()<>]*[^\s'\"`,;()<>.:]")
logger = logging.getLogger(__name__)
CONTROLNET_PIPELINE = "SoSgenControlNetPipeline"
# The Space's settings as environment variables (a Space has no command line): field -> variable.
SPACE_ENVIRONMENT = {
    "model": "SOS_MODEL",
    "controlnet_model": "SOS_CONTROLNET_MODEL",
    "retrieval_model": "SOS_RETRIEVAL_MODEL",
    "library": "SOS_LIBRARY",
    "index": "SOS_INDEX",
}


@dataclass
class SpaceSettings:
    """Where the app's models and library come from (folders or Hub ids); ``None`` disables that part.

    ``model`` is a SoSgen pipeline (text, or ControlNet: then it serves both the text-only and the
    frames requests); ``controlnet_model`` an extra ControlNet pipeline for requests with frames.
    ``index`` is a `SoundLibraryIndex` folder; it is built from ``library`` with ``retrieval_model``
    when it does not exist yet.
    """

    model: str | None = None
    controlnet_model: str | None = None
    retrieval_model: str | None = None
    library: str | None = None
    index: str | None = None

    @classmethod
    def from_demo(cls, demo_dir: str | Path = DEFAULT_DEMO_DIR, **overrides: str | None) -> SpaceSettings:
        """The models, library and index that ``sound-of-story demo --out demo_dir`` wrote; ``overrides`` replace any."""
        # Absolute, not relative: a Space runs this file as a script (`python space.py`).
        from sound_of_story.app.demo import DemoPaths

        paths = DemoPaths(Path(demo_dir))
        defaults = {
            "model": paths.sosgen_text,
            "controlnet_model": paths.sosgen_controlnet,
            "retrieval_model": paths.retrieval_model,
            "library": paths.library,
            "index": paths.library_index,
        }
        settings = {k: (str(v) if v.exists() else None) for k, v in defaults.items()}
        if not paths.library_index.exists() and paths.library.exists():
            settings["index"] = str(paths.library_index)  # built on first use
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**settings)

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> SpaceSettings:
        environ = os.environ if environ is None else environ
        demo_dir = environ.get("SOS_DEMO_DIR", str(DEFAULT_DEMO_DIR))
        return cls.from_demo(
            demo_dir, **{field: environ.get(variable) for field, variable in SPACE_ENVIRONMENT.items()}
        )


def _pipeline_class_name(model: str) -> str:
    from diffusers import DiffusionPipeline

    try:
        return str(DiffusionPipeline.load_config(model).get("_class_name"))
    except OSError as err:
        raise FileNotFoundError(f"cannot read the pipeline {model!r} (model_index.json): {err}") from None


def load_pipeline(model: str):
    """A `SoSgenPipeline` or `SoSgenControlNetPipeline` (whichever ``model`` holds) on the CPU or GPU."""
    import torch

    from sound_of_story.pipelines import SoSgenControlNetPipeline, SoSgenPipeline

    cls = SoSgenControlNetPipeline if _pipeline_class_name(model) == CONTROLNET_PIPELINE else SoSgenPipeline
    pipe = cls.from_pretrained(model)
    pipe = pipe.to("cuda" if torch.cuda.is_available() else "cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def upload_paths(files: Sequence[Any] | None) -> list[str]:
    """Uploaded files (paths, or objects with ``.name`` / ``.path``) as paths, in file-name order."""
    paths = (
        os.fspath(f) if isinstance(f, (str, os.PathLike)) else str(getattr(f, "path", None) or f.name)
        for f in (files or [])
    )
    return sorted(paths, key=lambda path: (Path(path).name, path))


def read_images(files: Sequence[Any] | None, side: int) -> list:
    """Uploaded frames as RGB images at most ``side`` pixels on their shorter side, in file-name order, read by
    the bounded frame reader; messages name the files, never where the server keeps them."""
    from sound_of_story.app.frame_reader import read_frame_files

    return read_frame_files(upload_paths(files), side, name_of=lambda path: path.name)


def public_message(message: str) -> str:
    """``message`` as the browser may show it: each absolute path is replaced by its last part."""
    return ABSOLUTE_PATH.sub(lambda match: PurePath(match.group(0)).name or "/", message)


def checked_number(value: Any, low: float, high: float, what: str) -> float:
    """``value`` as a number in [low, high]; a ValueError naming ``what`` otherwise (the API takes any value)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not low <= number <= high:
        raise ValueError(f"{what} must be between {low:g} and {high:g}, got {number:g}")
    return number


def parse_times(text: str | None, count: int) -> list[float] | None:
    """Comma-separated frame times in seconds (empty: evenly spaced by the caller)."""
    if not text or not text.strip():
        return None
    try:
        times = [float(t) for t in text.replace(";", ",").split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"frame times must be comma-separated numbers of seconds, got {text!r}") from None
    if len(times) != count:
        raise ValueError(f"{len(times)} frame times for {count} frames")
    if any(b < a for a, b in zip(times, times[1:])) or any(t < 0 for t in times):
        raise ValueError("frame times must be >= 0 and in time order")
    return times


class SoundOfStoryApp:
    """The app's state and request handlers (the Gradio callbacks call these; tests may too).

    Models load on first use and stay loaded; a lock keeps concurrent requests from loading twice.
    """

    def __init__(self, settings: SpaceSettings) -> None:
        self.settings = settings
        self._pipelines: dict[str, Any] = {}
        self._index = None
        self._dataset_audio: dict[str, Any] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ models

    def pipeline(self, with_frames: bool):
        """The pipeline for a request: the ControlNet one for frames, the text one (or the ControlNet one) otherwise."""
        names = (
            [self.settings.controlnet_model, self.settings.model]
            if with_frames
            else [self.settings.model, self.settings.controlnet_model]
        )
        for name in filter(None, names):
            with self._lock:
                if name not in self._pipelines:
                    self._pipelines[name] = load_pipeline(name)
            pipe = self._pipelines[name]
            if not with_frames or type(pipe).__name__ == CONTROLNET_PIPELINE:
                return pipe
        raise ValueError(
            "no SoSgen ControlNet pipeline is configured for frames"
            if with_frames
            else "no SoSgen pipeline is configured"
        )

    def index(self):
        """The sound library index (built from the library with the retrieval model on first use when missing).

        Clips are played from the configured library when there is one (an index from the Hub,
        ``hf://owner/name``, has no other), else from where a local index says its library is.
        """
        from sound_of_story.recommendation import SoundLibraryIndex, hub_repo_id

        with self._lock:
            if self._index is None:
                s = self.settings
                if not s.index or not s.retrieval_model:
                    raise ValueError(
                        "retrieval needs a retrieval model and a sound library index (or a library to index)"
                    )
                if hub_repo_id(s.index) is not None or (Path(s.index) / "index.json").exists() or not s.library:
                    self._index = SoundLibraryIndex.load(s.index, model=s.retrieval_model, library=s.library)
                else:
                    self._index, _ = SoundLibraryIndex.build(s.library, s.retrieval_model, s.index, progress=False)
            return self._index

    def frame_side(self) -> int:
        """The shorter side the retrieval model's processor takes frames at (what uploads are read at)."""
        from sound_of_story.app.frame_reader import retrieval_frame_side

        return retrieval_frame_side(self.index().processor)

    def clip_audio(self, clip_id: str) -> tuple[int, np.ndarray] | None:
        """A library clip as ``(rate, samples)`` from the library the index reads clips from (a file inside its
        folder, or a row of its dataset); None when there is no such library here (an index from the Hub)."""
        from sound_of_story.audio import decoded_audio, to_mono
        from sound_of_story.recommendation.library import check_clip_id, clip_path, decode_library_file

        source = self.index().clip_source
        if source is None:
            return None
        check_clip_id(clip_id, source)  # ids were checked when the index was read; a path leaves nothing to chance
        if source.kind == "dataset":
            _, split, row_id = clip_id.split("/", 2)
            key = f"{source.location}::{source.config}/{split}"
            if key not in self._dataset_audio:
                from datasets import load_dataset

                rows = load_dataset(source.location, source.config, split=split).select_columns(["id", "audio"])
                self._dataset_audio[key] = (rows, {r: i for i, r in enumerate(rows["id"])})
            rows, positions = self._dataset_audio[key]
            array, rate = decoded_audio(rows[positions[row_id]]["audio"])
        else:
            array, rate = decode_library_file(clip_path(source, clip_id))
        return rate, to_mono(array)

    # ------------------------------------------------------------------ handlers

    def generate(
        self,
        text: str | None,
        frame_files: Sequence[Any] | None,
        frame_times: str | None,
        duration: float,
        steps: int,
        seed: int,
    ):
        """Sound for ``text`` and/or frames: ``((rate, samples), spectrogram image, note)``."""
        import torch

        from sound_of_story.app.frame_reader import GENERATION_FRAME_SIDE
        from sound_of_story.pipelines import IMAGE_ONLY_PROMPT

        duration = checked_number(duration, 0.5, MAX_DURATION_S, "duration (s)")
        steps = int(checked_number(steps, 1, MAX_STEPS, "denoising steps"))
        seed = int(checked_number(seed, 0, 2**63 - 1, "seed"))
        frames = read_images(frame_files, GENERATION_FRAME_SIDE)
        text = (text or "").strip()
        if not text and not frames:
            raise ValueError("give a description, frames, or both")
        pipe = self.pipeline(with_frames=bool(frames))
        kwargs: dict[str, Any] = dict(
            duration_s=duration, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed)
        )
        if frames:
            times = parse_times(frame_times, len(frames)) or [duration * i / len(frames) for i in range(len(frames))]
            if times[-1] >= duration:
                raise ValueError(f"the last frame time {times[-1]:g} s is not within the {duration:g} s of audio")
            kwargs.update(frames=frames, frame_times=times)
            if not pipe.config.image_only:
                kwargs["prompt"] = text or IMAGE_ONLY_PROMPT
        else:
            kwargs["prompt"] = text
        output = pipe(**kwargs)
        audio = np.asarray(output.audios[0], dtype=np.float32).mean(axis=0)
        note = f"{type(pipe).__name__}, {len(frames)} frame(s), {duration:g} s at {output.sample_rate} Hz, seed {int(seed)}"
        return (int(output.sample_rate), audio), output.spectrograms[0], note

    def retrieve(self, text: str | None, frame_files: Sequence[Any] | None, top_k: int = TOP_K):
        """The ``top_k`` closest library sounds: ``(table rows, [(rate, samples) or None] * TOP_K)``."""
        from sound_of_story.recommendation import printable

        top_k = int(checked_number(top_k, 1, TOP_K, "how many"))
        text = (text or "").strip()
        if bool(text) == bool(frame_files):
            raise ValueError("give either a description or frames")
        frames = read_images(frame_files, self.frame_side()) if frame_files else None
        results = self.index().recommend(text=text or None, frames=frames, top_k=top_k)
        rows = [[r.rank, printable(r.clip_id), round(r.score, 4), round(r.coarse_score, 4)] for r in results]
        clips = [self.clip_audio(r.clip_id) for r in results][:TOP_K]
        return rows, clips + [None] * (TOP_K - len(clips))

    def recommend_story(self, frame_files: Sequence[Any] | None, frame_times: str | None, duration: float | None):
        """One sound per scene of a story: table rows ``[scene, start, end, clip, score]`` and the first scene's clip."""
        from sound_of_story.recommendation import printable

        if not frame_files:
            raise ValueError("upload the story's key frames (one per shot, in time order)")
        frames = read_images(frame_files, self.frame_side())
        times = parse_times(frame_times, len(frames)) or [float(i) * 3.0 for i in range(len(frames))]
        length = checked_number(duration, 0, 24 * 3600, "story length (s)") if duration else None
        scenes = self.index().recommend_story(frames, times, duration=length)
        rows = [
            [i + 1, s.start, s.end, printable(s.recommendation.clip_id), round(s.recommendation.score, 4)]
            for i, s in enumerate(scenes)
        ]
        return rows, self.clip_audio(scenes[0].recommendation.clip_id)


def _errors_as_messages(handler):
    """Gradio shows a ``gr.Error`` to the user: bad input (ValueError, missing file) becomes one without server
    paths (`public_message`); any other failure is logged here and shown as an internal error, with no details."""
    import functools

    import gradio as gr

    @functools.wraps(handler)
    def wrapped(*args):
        try:
            return handler(*args)
        except (ValueError, FileNotFoundError) as err:
            raise gr.Error(public_message(str(err)), print_exception=False) from None
        except Exception:
            logger.exception("request failed in %s", getattr(handler, "__name__", "a handler"))
            raise gr.Error("the server could not answer this request (an internal error; see its log)") from None

    return wrapped


def build_space(settings: SpaceSettings):
    """The Gradio ``Blocks`` of the app (not launched)."""
    import gradio as gr

    app = SoundOfStoryApp(settings)
    with gr.Blocks(title="Sound of Story", delete_cache=(CACHE_CLEANUP_EVERY_S, CACHE_MAX_AGE_S)) as blocks:
        gr.Markdown(
            "# Sound of Story\nBackground sound for stories: generate it from a description and the story's frames, or find "
            "it in a sound library (Bae et al., *Sound of Story*, Findings of EMNLP 2023)."
        )
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column():
                    text = gr.Textbox(label="Description", lines=3, elem_id="generate-text")
                    frames = gr.File(
                        label="Frames (optional)",
                        file_count="multiple",
                        file_types=["image"],
                        elem_id="generate-frames",
                    )
                    times = gr.Textbox(
                        label="Frame times in seconds (optional, comma-separated)", elem_id="generate-times"
                    )
                    duration = gr.Slider(1, MAX_DURATION_S, value=DEFAULT_DURATION_S, step=0.5, label="Duration (s)")
                    steps = gr.Slider(1, MAX_STEPS, value=DEFAULT_STEPS, step=1, label="Denoising steps")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                    button = gr.Button("Generate", variant="primary", elem_id="generate-button")
                with gr.Column():
                    audio = gr.Audio(label="Generated sound", type="numpy", elem_id="generate-audio")
                    spectrogram = gr.Image(label="Spectrogram", type="pil")
                    note = gr.Textbox(label="How it was made", interactive=False, elem_id="generate-note")
            button.click(
                _errors_as_messages(app.generate),
                [text, frames, times, duration, steps, seed],
                [audio, spectrogram, note],
            )
        with gr.Tab("Retrieve"):
            with gr.Row():
                with gr.Column():
                    query_text = gr.Textbox(label="Description (or frames below)", lines=2, elem_id="retrieve-text")
                    query_frames = gr.File(label="A scene's frames", file_count="multiple", file_types=["image"])
                    top_k = gr.Slider(1, TOP_K, value=TOP_K, step=1, label="How many")
                    find = gr.Button("Find sounds", variant="primary", elem_id="retrieve-button")
                with gr.Column():
                    table = gr.Dataframe(
                        headers=["rank", "clip", "score", "coarse score"],
                        label="Closest sounds",
                        elem_id="retrieve-table",
                    )
                    players = [gr.Audio(label=f"#{i + 1}", type="numpy") for i in range(TOP_K)]

            def retrieve(text, files, k):
                rows, clips = app.retrieve(text, files, k)
                return [rows, *clips]

            find.click(_errors_as_messages(retrieve), [query_text, query_frames, top_k], [table, *players])
        with gr.Tab("Recommend"):
            with gr.Row():
                with gr.Column():
                    story_frames = gr.File(
                        label="The story's key frames, in time order", file_count="multiple", file_types=["image"]
                    )
                    story_times = gr.Textbox(label="Their times in seconds (comma-separated; default every 3 s)")
                    story_duration = gr.Number(label="Story length in seconds (optional)", value=None)
                    recommend = gr.Button("Recommend", variant="primary")
                with gr.Column():
                    scenes = gr.Dataframe(
                        headers=["scene", "start", "end", "clip", "score"], label="One sound per scene"
                    )
                    first = gr.Audio(label="The first scene's sound", type="numpy")
            recommend.click(
                _errors_as_messages(app.recommend_story), [story_frames, story_times, story_duration], [scenes, first]
            )
    blocks.sos_app = app  # the handlers' state, for callers that want to warm the models up
    return blocks


def launch_space(settings: SpaceSettings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, block: bool = True):
    """Build and serve the app; with ``block=False`` return the running ``Blocks`` (call ``.close()``).

    At most ``QUEUE_MAX_SIZE`` requests wait; an upload larger than a frame may be (`MAX_FRAME_FILE_BYTES`) is
    refused by Gradio before it is stored.
    """
    from sound_of_story.app.frame_reader import MAX_FRAME_FILE_BYTES

    blocks = build_space(settings)
    blocks.queue(max_size=QUEUE_MAX_SIZE).launch(
        server_name=host, server_port=port, prevent_thread_lock=not block, show_error=False, share=False,
        max_file_size=MAX_FRAME_FILE_BYTES,
    )  # fmt: skip
    return blocks


def server_address(environ: dict[str, str] | None = None) -> tuple[str, int]:
    """(host, port) of ``python space.py``: ``GRADIO_SERVER_NAME`` (which a Hugging Face Space sets to serve its
    visitors) and ``PORT``, else 127.0.0.1 (this machine only) and `DEFAULT_PORT`."""
    environ = os.environ if environ is None else environ
    return environ.get("GRADIO_SERVER_NAME") or DEFAULT_HOST, int(environ.get("PORT") or DEFAULT_PORT)


def main() -> None:
    """Entry point of a Hub Space (``python space.py``): settings from ``SOS_*`` variables."""
    host, port = server_address()
    launch_space(SpaceSettings.from_environment(), host=host, port=port)


if __name__ == "__main__":
    main()
