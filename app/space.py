"""The Sound of Story web app (Gradio), ready to run as a Hugging Face Space.

Three tabs, on models that ``sound-of-story demo`` trained (by default) or any saved folder / Hub id:

- **Generate**: background sound from a description and/or uploaded frames (SoSgen; the ControlNet
  pipeline when frames are given), as audio and its spectrogram.
- **Retrieve**: the closest sounds of a sound library (a built SoS dataset or a folder of audio
  files) for a description or a scene's frames, ranked by the retrieval model (`SoundLibraryIndex`).
- **Recommend**: one sound per scene of a story (its key frames and their times), switching only
  at scene cuts (`SoundLibraryIndex.recommend_story`).

``sound-of-story space`` starts it; ``python app/space.py`` does the same with the settings taken
from ``SOS_*`` environment variables (how a Space passes them; see ``SPACE_ENVIRONMENT``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DEMO_DIR = Path("demo_output")
DEFAULT_PORT = 7860
TOP_K = 5
DEFAULT_DURATION_S = 5.0
DEFAULT_STEPS = 20
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


def read_images(files: Sequence[Any] | None) -> list:
    """Uploaded files (paths, or objects with ``.name`` / ``.path``) as RGB images, in file-name order."""
    from PIL import Image

    paths = sorted(
        os.fspath(f) if isinstance(f, (str, os.PathLike)) else str(getattr(f, "path", None) or f.name)
        for f in (files or [])
    )
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except Exception as err:  # PIL raises several types for a file that is not an image
            raise ValueError(f"{Path(path).name} is not a readable image ({type(err).__name__})") from err
    return images


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
        """The sound library index (built from the library with the retrieval model on first use when missing)."""
        from sound_of_story.recommendation import SoundLibraryIndex

        with self._lock:
            if self._index is None:
                s = self.settings
                if not s.index or not s.retrieval_model:
                    raise ValueError(
                        "retrieval needs a retrieval model and a sound library index (or a library to index)"
                    )
                if (Path(s.index) / "index.json").exists() or not s.library:
                    self._index = SoundLibraryIndex.load(s.index, model=s.retrieval_model)
                else:
                    self._index, _ = SoundLibraryIndex.build(s.library, s.retrieval_model, s.index, progress=False)
            return self._index

    def clip_audio(self, path: str) -> tuple[int, np.ndarray]:
        """A library clip as ``(rate, samples)``: a file, or ``dataset::config/split/id`` of a built dataset."""
        from sound_of_story.audio import decoded_audio, read_audio_file, to_mono

        if "::" in path:
            location, clip_id = path.split("::", 1)
            config, split, row_id = clip_id.split("/", 2)
            key = f"{location}::{config}/{split}"
            if key not in self._dataset_audio:
                from datasets import load_dataset

                rows = load_dataset(location, config, split=split).select_columns(["id", "audio"])
                self._dataset_audio[key] = (rows, {r: i for i, r in enumerate(rows["id"])})
            rows, positions = self._dataset_audio[key]
            array, rate = decoded_audio(rows[positions[row_id]]["audio"])
        else:
            array, rate = read_audio_file(Path(path).read_bytes(), path)
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

        from sound_of_story.pipelines import IMAGE_ONLY_PROMPT

        frames = read_images(frame_files)
        text = (text or "").strip()
        if not text and not frames:
            raise ValueError("give a description, frames, or both")
        duration = float(duration)
        if not 0 < duration <= 60:
            raise ValueError(f"duration must be between 0 and 60 s, got {duration}")
        pipe = self.pipeline(with_frames=bool(frames))
        kwargs: dict[str, Any] = dict(
            duration_s=duration, num_inference_steps=int(steps), generator=torch.Generator().manual_seed(int(seed))
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
        frames = read_images(frame_files)
        text = (text or "").strip()
        if bool(text) == bool(frames):
            raise ValueError("give either a description or frames")
        results = self.index().recommend(text=text or None, frames=frames or None, top_k=int(top_k))
        rows = [[r.rank, r.clip_id, round(r.score, 4), round(r.coarse_score, 4)] for r in results]
        clips = [self.clip_audio(r.path) for r in results][:TOP_K]
        return rows, clips + [None] * (TOP_K - len(clips))

    def recommend_story(self, frame_files: Sequence[Any] | None, frame_times: str | None, duration: float | None):
        """One sound per scene of a story: table rows ``[scene, start, end, clip, score]`` and the first scene's clip."""
        frames = read_images(frame_files)
        if not frames:
            raise ValueError("upload the story's key frames (one per shot, in time order)")
        times = parse_times(frame_times, len(frames)) or [float(i) * 3.0 for i in range(len(frames))]
        scenes = self.index().recommend_story(frames, times, duration=float(duration) if duration else None)
        rows = [
            [i + 1, s.start, s.end, s.recommendation.clip_id, round(s.recommendation.score, 4)]
            for i, s in enumerate(scenes)
        ]
        return rows, self.clip_audio(scenes[0].recommendation.path)


def _errors_as_messages(handler):
    """Gradio shows a ``gr.Error`` to the user; bad input (ValueError, missing file) becomes one."""
    import functools

    import gradio as gr

    @functools.wraps(handler)
    def wrapped(*args):
        try:
            return handler(*args)
        except (ValueError, FileNotFoundError) as err:
            raise gr.Error(str(err)) from err

    return wrapped


def build_space(settings: SpaceSettings):
    """The Gradio ``Blocks`` of the app (not launched)."""
    import gradio as gr

    app = SoundOfStoryApp(settings)
    with gr.Blocks(title="Sound of Story") as blocks:
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
                    duration = gr.Slider(1, 30, value=DEFAULT_DURATION_S, step=0.5, label="Duration (s)")
                    steps = gr.Slider(1, 100, value=DEFAULT_STEPS, step=1, label="Denoising steps")
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


def launch_space(settings: SpaceSettings, host: str = "127.0.0.1", port: int = DEFAULT_PORT, block: bool = True):
    """Build and serve the app; with ``block=False`` return the running ``Blocks`` (call ``.close()``)."""
    blocks = build_space(settings)
    blocks.queue().launch(
        server_name=host, server_port=port, prevent_thread_lock=not block, show_error=True, share=False
    )
    return blocks


def main() -> None:
    """Entry point of a Hub Space (``python space.py``): settings from ``SOS_*`` variables."""
    launch_space(
        SpaceSettings.from_environment(),
        host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        port=int(os.environ.get("PORT", DEFAULT_PORT)),
    )


if __name__ == "__main__":
    main()
