"""Table 3 from pipelines and a dataset: generate background sound for every test slice, then score it.

``sound-of-story evaluate generation --pipeline P --dataset D`` runs :func:`run_table3`:

1. Generation, per pipeline, into ``<out>/<pipeline>/audio/<slice id>.wav`` and
   ``<out>/<pipeline>/spectrograms/<slice id>.png`` (both written atomically). A slice whose WAV
   exists is skipped, so a killed run continues where it stopped and writes each slice once; the
   pipeline's settings are kept in ``<out>/<pipeline>/settings.json``, and a run with other settings
   refuses to resume there (it would mix two settings in one number). Each slice has its own fixed
   seed (from the base seed and the slice id), so results do not depend on the order, on ``--limit``
   or on resuming. Pipelines:
   - a saved ``SoSgenPipeline`` (text) or ``SoSgenControlNetPipeline`` (text and frames);
   - ``riffusion`` (``riffusion/riffusion-model-v1``), ``riffusion=FOLDER`` (a local copy) or any folder
     whose ``model_index.json`` says ``StableDiffusionPipeline``: the Riffusion baseline at Riffusion's
     own settings (512-pixel windows, its own Griffin-Lim by default), through ``SoSgenPipeline``;
   - ``musicgen`` (``facebook/musicgen-small``), ``musicgen=FOLDER`` or a saved
     ``MusicgenForConditionalGeneration`` with its tokenizer: MusicGen at its own sampling defaults.
2. Scoring against the real slices of the split: FAD (VGGish by default, or CLAP), FAD-infinity
   when there are enough embeddings, KAD, per-clip FAD with its Tukey outliers, and bootstrap
   intervals over the generated clips. A missing, silent or too short generated clip is reported
   by name and left out, never averaged in silently.
3. ``table3.md`` / ``table3.json`` in ``<out>``, with every setting that decides a number and whose
   choice it is (:class:`Setting`): the paper states only that the baselines get the descriptions and
   that FAD uses VGGish embeddings (section 4.2.3); everything else is this package's choice, for a
   baseline its own default.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from sound_of_story.core import model_ids

GENERATION_CONFIG = "generation"
RIFFUSION = "riffusion"
RIFFUSION_ID = model_ids.RIFFUSION
MUSICGEN = "musicgen"
MUSICGEN_ID = model_ids.MUSICGEN
# The baselines that ``NAME=FOLDER`` loads from a local copy (offline, or a stand-in of the same layout).
BASELINES = (RIFFUSION, MUSICGEN)
SETTINGS_FILE = "settings.json"
SILENCE_PEAK = 1e-4  # a generated clip whose peak stays below this is silent
MIN_CLIP_SECONDS = 0.975  # VGGish's shortest input: one 0.96 s example
FIGURES = ("FAD", "FAD-inf", "KAD")
EmbedderName = Literal["vggish", "clap"]  # metrics.fad.EmbedderName, named here without importing torch
GriffinLimChoice = Literal["exact", "refined", "fast"]
DEFAULT_GRIFFIN_LIM: GriffinLimChoice = "exact"
DEFAULT_INFERENCE_STEPS = 50
DEFAULT_GUIDANCE_SCALE = 7.0

# Riffusion was trained on, and its own code generates, 512 x 512 spectrogram images: 5.12 s at its 10 ms hop.
# Longer slices are generated as 512-pixel windows that overlap by half a window (SoSgenPipeline's windows: each
# inpaints its overlap from the previous one, and the whole spectrogram is inverted at once).
RIFFUSION_WINDOW_WIDTH = 512
RIFFUSION_WINDOW_OVERLAP = 256
# MusicGen's own sampling (audiocraft's MusicGen.set_generation_params defaults): top-k 250 over each codebook's
# 2048 entries, no top-p, temperature 1, classifier-free guidance 3. The Hub checkpoint's generation_config.json
# sets sampling and guidance 3 but no top-k, so transformers would sample from the top 50; the values are passed
# explicitly so that every MusicGen folder samples the same way.
MUSICGEN_SAMPLING = {"do_sample": True, "top_k": 250, "top_p": 1.0, "temperature": 1.0, "guidance_scale": 3.0}

# Whose choice a setting is: the paper's only where section 4.2.3 says so.
PAPER = "the paper"
PACKAGE = "this package's choice"


def baseline_default(what: str) -> str:
    """The provenance of a baseline setting that this package takes from the baseline's own code."""
    return f"this package's choice (the baseline's own default: {what})"


@dataclass(frozen=True)
class Setting:
    """One setting that decides a Table 3 number: its value and whose choice it is (``whose``)."""

    value: Any
    whose: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "whose": self.whose}


def slice_seed(base_seed: int, slice_id: str) -> int:
    """The seed of one slice: fixed by the base seed and the slice id, whatever the order or the limit."""
    return (base_seed + int(hashlib.sha256(slice_id.encode()).hexdigest()[:8], 16)) % 2**31


SEED_RULE = "slice seed = (base seed + first 8 hex digits of SHA-256(slice id)) mod 2^31, whatever the order, --limit or resume"


@dataclass
class GeneratedClip:
    audio: np.ndarray  # (channels, samples) float32
    sample_rate: int
    spectrogram: Any = None  # PIL image, if the pipeline makes one


class SlicePipeline:
    """One generator behind one interface: ``generate(text, duration_s, seed, frames, frame_times)``.

    ``settings()`` lists every setting of the generator that decides its Table 3 number, with whose choice it is.
    """

    takes_frames: bool = False
    name: str = "pipeline"

    def generate(self, text: str, duration_s: float, seed: int, frames=None, frame_times=None) -> GeneratedClip:
        raise NotImplementedError

    def settings(self, with_frames: bool) -> dict[str, Setting]:
        raise NotImplementedError


def _device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def describe_griffin_lim(params: Any, method: str) -> str:
    """What a spectrogram pipeline's Griffin-Lim runs, in words: its method, iterations and FFT grids."""
    n_fft, asked = params.n_fft, params.num_griffin_lim_iters
    if method == "exact":
        return (
            f"exact: {asked} iterations on the {n_fft}-point FFT grid, momentum {params.griffin_lim_momentum:g}, "
            "random initial phases (torchaudio's GriffinLim, as Riffusion inverts)"
        )
    from sound_of_story.audio.spectrogram import get_converter

    converter = get_converter(params)
    coarse, full = converter.griffin_lim_grid_iterations(asked, method)
    grid = f"{coarse} iterations on the {n_fft // converter.coarse_stride}-point FFT grid"
    return f"{method}: {grid}, then {full} on the full {n_fft}-point grid (for {asked} asked)"


class DiffusionSlicePipeline(SlicePipeline):
    """A spectrogram diffusion pipeline (SoSgen, SoSgen-ControlNet, or Riffusion through SoSgenPipeline).

    ``min_width``: the narrowest image the denoiser sees (Riffusion: 512, its training size); a shorter slice is
    generated at that width and its audio cut to the slice's length. ``baseline``: ``"riffusion"`` for the Riffusion
    baseline (its settings are described as Riffusion's own), else None.
    """

    def __init__(
        self,
        pipe: Any,
        name: str,
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        device: str | None = None,
        *,
        griffin_lim_method: GriffinLimChoice = DEFAULT_GRIFFIN_LIM,
        guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
        min_width: int | None = None,
        baseline: str | None = None,
        source: str = "",
    ) -> None:
        from sound_of_story.audio.spectrogram import GRIFFIN_LIM_METHODS

        if griffin_lim_method not in GRIFFIN_LIM_METHODS:
            raise ValueError(f"--griffin-lim must be one of {GRIFFIN_LIM_METHODS}, got {griffin_lim_method!r}")
        pipe.register_to_config(griffin_lim_method=griffin_lim_method)
        self.pipe = pipe.to(_device(device))
        self.pipe.set_progress_bar_config(disable=True)
        self.name = name
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.min_width = min_width
        self.baseline = baseline
        self.source = source
        self.takes_frames = "frames" in _call_parameters(pipe)
        # SoSgen_image: the text is always "Audio" (the pipeline supplies it and refuses another).
        self.image_only = bool(pipe.config.get("image_only", False))

    def generate(self, text, duration_s, seed, frames=None, frame_times=None) -> GeneratedClip:
        import torch

        extra = {"frames": frames, "frame_times": frame_times} if frames else {}
        text = None if self.image_only else text
        generator = torch.Generator(device="cpu").manual_seed(seed)
        size: dict[str, Any] = {"duration_s": duration_s}
        if self.min_width is not None:
            size = {"width": max(self.min_width, self.pipe.width_for_duration(duration_s))}
        out = self.pipe(
            text, **size, num_inference_steps=self.num_inference_steps, guidance_scale=self.guidance_scale,
            generator=generator, **extra,
        )  # fmt: skip
        num_samples = round(duration_s * out.sample_rate)
        audio = np.asarray(out.audios[0], dtype=np.float32)[..., :num_samples]
        return GeneratedClip(audio, int(out.sample_rate), out.spectrograms[0])

    def settings(self, with_frames: bool) -> dict[str, Setting]:
        pipe, config, params = self.pipe, self.pipe.config, self.pipe.spectrogram_params
        riffusion = self.baseline == RIFFUSION
        window = f"{config.window_width} px = {config.window_width / params.columns_per_second:g} s"
        rounding = f"rounded up to {math.lcm(pipe.size_alignment, 8)} px ({pipe.width_for_duration(15.0)} px for 15 s)"
        if riffusion:
            slicing = (
                f"the image is the slice's length at {params.columns_per_second:g} columns per second, {rounding} "
                f"and at least {self.min_width} px; wider "
                f"images are generated as {config.window_width}-px windows overlapping by {config.window_overlap} px, "
                "each inpainting its overlap from the previous window, crossfaded and inverted to audio at once; "
                "the audio is cut to the slice's length"
            )
            slicing_whose = (
                f"{PACKAGE} (Riffusion's own code makes one 5.12 s clip per image, and its app plays such clips one "
                "after another; the paper does not say how it made longer Riffusion audio)"
            )
        else:
            slicing = (
                f"the image is the slice's length at {params.columns_per_second:g} columns per second, {rounding}; "
                "wider than the window: windows overlapping by "
                f"{config.window_overlap} px, each inpainting its overlap; the audio is cut to the slice's length"
            )
            slicing_whose = f"{PACKAGE} (the pipeline's configuration)"
        frames = with_frames and self.takes_frames
        griffin_whose = {
            "exact": f"--griffin-lim exact: {PACKAGE} (Riffusion's own inverse, for numbers comparable with the "
            "paper's; the paper names no inversion)",
            "refined": f"--griffin-lim refined: {PACKAGE} (faster than Riffusion's inverse at a lower spectral "
            "convergence; not comparable with the paper's numbers)",
            "fast": f"--griffin-lim fast: {PACKAGE} (the quickest; not comparable with the paper's numbers)",
        }[config.griffin_lim_method]
        return {
            "model": Setting(
                self.source,
                f"{PACKAGE} (the paper names Riffusion (Forsgren and Martiros, 2022), not a checkpoint id)"
                if riffusion and self.source == RIFFUSION_ID
                else "--pipeline (a local folder in Riffusion's layout)"
                if riffusion
                else "--pipeline",
            ),
            "condition": Setting(
                "the fixed text 'Audio' and the slice's key frames with their times"
                if self.image_only
                else "the slice's SoS description and its key frames with their times"
                if frames
                else "the slice's SoS description",
                f"{PAPER} (section 4.2.3: Riffusion, MusicGen and SoSgen_text get the descriptions, SoSgen_image and "
                "SoSgen_text+image also the image sequence; SoSgen_image's text is 'Audio', section 4.2.2)",
            ),  # fmt: skip
            "text tokens": Setting(
                f"the first {pipe.tokenizer.model_max_length} CLIP tokens (the prompt encoder cuts the rest)",
                baseline_default(
                    "diffusers' StableDiffusionPipeline, which Riffusion's text-to-audio page runs; its server weighs "
                    "up to 3 x 77 tokens"
                )
                if riffusion
                else f"{PACKAGE} (the CLIP text encoder's positions)",
            ),
            "window width": Setting(
                window,
                baseline_default("Riffusion is trained on and generates 512 x 512 images")
                if riffusion
                else f"{PACKAGE} (the pipeline's configuration)",
            ),
            "slice to image": Setting(slicing, slicing_whose),
            "inference steps": Setting(
                self.num_inference_steps,
                f"--steps: {PACKAGE} (50 is Riffusion's server default and diffusers'; Riffusion's Streamlit "
                "text-to-audio page defaults to 30 with DPM-Solver++; the paper states none)",
            ),
            "guidance scale": Setting(
                self.guidance_scale,
                baseline_default("Riffusion's guidance 7.0") if riffusion else f"{PACKAGE} (the paper states none)",
            ),
            "negative prompt": Setting(
                "none", baseline_default("Riffusion's empty unconditional prompt") if riffusion else PACKAGE
            ),
            "scheduler": Setting(type(pipe.scheduler).__name__, "the checkpoint's own (its scheduler_config.json)"),
            "precision": Setting(
                str(pipe.unet.dtype).removeprefix("torch."),
                f"{PACKAGE} (Riffusion's own app runs float16 on CUDA)" if riffusion else PACKAGE,
            ),
            "Griffin-Lim": Setting(describe_griffin_lim(params, config.griffin_lim_method), griffin_whose),
            "spectrogram": Setting(
                f"{params.sample_rate} Hz {'stereo' if params.stereo else 'mono'}, {params.num_frequencies} mel bins "
                f"({params.min_frequency}-{params.max_frequency} Hz), {params.columns_per_second:g} columns per second, "
                f"power {params.power_for_image:g}",
                "the checkpoint's spectrogram parameters (Riffusion's unless it says otherwise)",
            ),
            "audio": Setting(
                f"{params.sample_rate} Hz, peak-normalised to -0.1 dBFS over the generated image, 16-bit WAV",
                f"{PACKAGE} (the peak normalisation is Riffusion's)",
            ),
            "seed": Setting(
                f"{SEED_RULE}; a CPU torch.Generator with it draws the latents, the inpainting noise and "
                "Griffin-Lim's initial phases",
                PACKAGE,
            ),
        }


class MusicgenSlicePipeline(SlicePipeline):
    """MusicGen (``transformers.MusicgenForConditionalGeneration``) at its own sampling defaults (:data:`MUSICGEN_SAMPLING`).

    A slice of ``d`` seconds is ``ceil(d * frame rate)`` EnCodec frames (what audiocraft's ``duration`` gives), which
    take ``num_codebooks - 1`` more decoding steps (the delay pattern); the audio is cut to ``d`` seconds.
    """

    def __init__(
        self, model: Any, tokenizer: Any, name: str, guidance_scale: float = 3.0, device: str | None = None,
        *, source: str = "",
    ) -> None:  # fmt: skip
        self.model = model.to(_device(device)).eval()
        self.tokenizer = tokenizer
        self.name = name
        self.sampling = {**MUSICGEN_SAMPLING, "guidance_scale": guidance_scale}
        self.source = source
        self.sample_rate = int(model.config.audio_encoder.sampling_rate)
        self.frame_rate = float(model.config.audio_encoder.frame_rate)
        self.num_codebooks = int(model.config.decoder.num_codebooks)

    def decoding_steps(self, duration_s: float) -> int:
        """``max_new_tokens`` for ``duration_s`` seconds: the frames, plus the delay pattern's extra steps."""
        return max(1, math.ceil(duration_s * self.frame_rate)) + self.num_codebooks - 1

    def generate(self, text, duration_s, seed, frames=None, frame_times=None) -> GeneratedClip:
        import torch

        torch.manual_seed(seed)  # MusicGen samples with torch's global generator
        inputs = self.tokenizer([text], padding=True, return_tensors="pt").to(self.model.device)
        with torch.inference_mode():
            audio = self.model.generate(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                max_new_tokens=self.decoding_steps(duration_s), **self.sampling,
            )  # fmt: skip
        num_samples = round(duration_s * self.sample_rate)
        return GeneratedClip(audio[0].float().cpu().numpy()[..., :num_samples], self.sample_rate)

    def settings(self, with_frames: bool) -> dict[str, Setting]:
        s = self.sampling
        return {
            "model": Setting(self.source, f"{PACKAGE} (the paper names MusicGen (Copet et al., 2023), not a size)"),
            "condition": Setting("the slice's SoS description", f"{PAPER} (section 4.2.3)"),
            "text tokens": Setting(
                "the whole description, untruncated (T5 encoder)",
                baseline_default("audiocraft's T5 conditioner tokenizes without truncation"),
            ),
            "sampling": Setting(
                f"sampling, top-k {s['top_k']}, no top-p, temperature {s['temperature']:g}",
                baseline_default(
                    "audiocraft's MusicGen.set_generation_params; the Hub generation_config.json samples too but "
                    "leaves top-k to transformers' 50"
                ),
            ),
            "guidance scale": Setting(
                s["guidance_scale"],
                baseline_default("audiocraft's cfg_coef 3.0, also the Hub generation_config.json's guidance_scale"),
            ),
            "length": Setting(
                f"ceil(slice seconds x {self.frame_rate:g}) EnCodec frames, decoded in that many + "
                f"{self.num_codebooks - 1} steps (max_new_tokens, for the {self.num_codebooks}-codebook delay "
                "pattern); the audio is cut to the slice's length",
                f"{PACKAGE} (audiocraft generates duration x frame rate frames)",
            ),
            "precision": Setting(
                str(self.model.dtype).removeprefix("torch."), f"{PACKAGE} (audiocraft autocasts to float16 on CUDA)"
            ),
            "audio": Setting(f"{self.sample_rate} Hz mono, as decoded by EnCodec, 16-bit WAV", "the model's"),
            "seed": Setting(f"{SEED_RULE}; torch.manual_seed(slice seed) before generate", PACKAGE),
        }


def _call_parameters(obj: Any) -> set[str]:
    import inspect

    return set(inspect.signature(obj.__call__).parameters)


def _model_index_class(folder: Path) -> str | None:
    import json

    index = folder / "model_index.json"
    return json.loads(index.read_text()).get("_class_name") if index.is_file() else None


def _is_musicgen_folder(folder: Path) -> bool:
    import json

    config = folder / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("model_type") == "musicgen"


def _load_from_hub(load: Any, hub_id: str, name: str) -> Any:
    """``load(hub_id)``; a failure to reach or read the Hub says how to use a local copy instead."""
    try:
        return load(hub_id)
    except OSError as err:
        raise ValueError(
            f"cannot load {hub_id!r} for --pipeline {name} ({str(err).splitlines()[0]}); offline, pass a local copy "
            f"with --pipeline {name}=FOLDER"
        ) from None


def _riffusion_pipeline(
    spec: PipelineSpec, num_inference_steps: int, griffin_lim_method: str, device: str | None
) -> DiffusionSlicePipeline:
    from sound_of_story.pipelines import SoSgenPipeline

    def load(where: Any) -> Any:
        return SoSgenPipeline.from_pretrained(
            where, window_width=RIFFUSION_WINDOW_WIDTH, window_overlap=RIFFUSION_WINDOW_OVERLAP
        )

    pipe = _load_from_hub(load, spec.source, spec.label) if isinstance(spec.source, str) else load(spec.source)
    return DiffusionSlicePipeline(
        pipe, spec.label, num_inference_steps, device, griffin_lim_method=griffin_lim_method,
        min_width=RIFFUSION_WINDOW_WIDTH, baseline=RIFFUSION, source=spec.public,
    )  # fmt: skip


def _musicgen_pipeline(spec: PipelineSpec, device: str | None) -> MusicgenSlicePipeline:
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    if isinstance(spec.source, str):
        model = _load_from_hub(MusicgenForConditionalGeneration.from_pretrained, spec.source, spec.label)
    else:
        model = MusicgenForConditionalGeneration.from_pretrained(spec.source)
    tokenizer = AutoTokenizer.from_pretrained(spec.source)
    return MusicgenSlicePipeline(model, tokenizer, spec.label, device=device, source=spec.public)


PipelineKind = Literal["sosgen", "riffusion", "musicgen"]
SOSGEN_CLASSES = ("SoSgenPipeline", "SoSgenControlNetPipeline")


@dataclass(frozen=True)
class PipelineSpec:
    """What one ``--pipeline`` names, found without loading it: its kind, where it loads from and its row's name.

    ``source`` is a Hub id or a folder; ``label`` names the row and the output folder; ``public`` says where the
    model comes from without a local path (a Hub id, or ``local folder 'NAME'``).
    """

    kind: PipelineKind
    source: str | Path
    label: str
    public: str
    class_name: str | None = None


def resolve_pipeline_spec(name_or_path: str) -> PipelineSpec:
    """The :class:`PipelineSpec` of ``--pipeline name_or_path`` (see :func:`load_slice_pipeline`); a name or folder
    that names no pipeline is a ``ValueError`` / ``FileNotFoundError`` before anything loads."""
    name, sep, folder = name_or_path.partition("=")
    if sep:
        if name not in BASELINES:
            raise ValueError(
                f"--pipeline {name_or_path!r}: NAME=FOLDER names a baseline ({', '.join(BASELINES)}), got {name!r}"
            )
        path = Path(folder)
        if not path.is_dir():
            raise FileNotFoundError(f"--pipeline {name_or_path!r}: folder {folder!r} does not exist")
        public = f"local folder {path.resolve().name!r}"
        if name == RIFFUSION:
            class_name = _model_index_class(path)
            if class_name not in ("StableDiffusionPipeline", "SoSgenPipeline"):
                raise ValueError(
                    f"--pipeline {name_or_path!r}: {folder!r} is not a Riffusion-layout pipeline (its model_index.json "
                    f"must say StableDiffusionPipeline or SoSgenPipeline, found {class_name!r})"
                )
            return PipelineSpec(RIFFUSION, path, RIFFUSION, public, class_name)
        if not _is_musicgen_folder(path):
            raise ValueError(f"--pipeline {name_or_path!r}: {folder!r} has no config.json of model_type 'musicgen'")
        return PipelineSpec(MUSICGEN, path, MUSICGEN, public)
    if name_or_path == RIFFUSION:
        return PipelineSpec(RIFFUSION, RIFFUSION_ID, RIFFUSION, RIFFUSION_ID)
    if name_or_path == MUSICGEN:
        return PipelineSpec(MUSICGEN, MUSICGEN_ID, MUSICGEN, MUSICGEN_ID)
    path = Path(name_or_path)
    label, public = _label(name_or_path), f"local folder {path.resolve().name!r}"
    class_name = _model_index_class(path)
    if class_name == "StableDiffusionPipeline":
        return PipelineSpec(RIFFUSION, path, label, public, class_name)
    if class_name is not None:
        if class_name not in SOSGEN_CLASSES:
            raise ValueError(
                f"{name_or_path!r} is a {class_name}; evaluate generation takes SoSgenPipeline, SoSgenControlNetPipeline, "
                "StableDiffusionPipeline (Riffusion), riffusion, musicgen or a MusicGen folder"
            )
        return PipelineSpec("sosgen", path, label, public, class_name)
    if _is_musicgen_folder(path):
        return PipelineSpec(MUSICGEN, path, label, public)
    if path.exists():
        raise ValueError(
            f"{name_or_path!r} is neither a pipeline folder (model_index.json) nor a MusicGen model (config.json)"
        )
    raise FileNotFoundError(
        f"pipeline {name_or_path!r} does not exist (a folder, 'riffusion', 'musicgen', or riffusion=FOLDER / musicgen=FOLDER)"
    )


def load_slice_pipeline(
    name_or_path: str,
    *,
    num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
    griffin_lim_method: GriffinLimChoice = DEFAULT_GRIFFIN_LIM,
    device: str | None = None,
) -> SlicePipeline:
    """One ``--pipeline`` of Table 3, at the settings that Table 3 runs it with.

    - ``riffusion`` / ``musicgen``: the baseline by its Hub id (``riffusion/riffusion-model-v1``,
      ``facebook/musicgen-small``); ``riffusion=FOLDER`` / ``musicgen=FOLDER``: the baseline from a local folder
      of the same layout (a ``StableDiffusionPipeline`` or ``SoSgenPipeline`` folder; a MusicGen model with its
      tokenizer), in the row named like the Hub one.
    - a folder: a saved ``SoSgenPipeline`` / ``SoSgenControlNetPipeline``; a ``StableDiffusionPipeline`` (run as
      the Riffusion baseline: 512-pixel windows), in a row named after the folder; or a saved MusicGen model with
      its tokenizer.

    ``griffin_lim_method`` inverts every spectrogram pipeline's images (``exact``: Riffusion's own inverse).
    """
    spec = resolve_pipeline_spec(name_or_path)
    if spec.kind == RIFFUSION:
        return _riffusion_pipeline(spec, num_inference_steps, griffin_lim_method, device)
    if spec.kind == MUSICGEN:
        return _musicgen_pipeline(spec, device)
    from sound_of_story.pipelines import SoSgenControlNetPipeline, SoSgenPipeline

    pipe_class = {"SoSgenPipeline": SoSgenPipeline, "SoSgenControlNetPipeline": SoSgenControlNetPipeline}[
        spec.class_name
    ]
    return DiffusionSlicePipeline(
        pipe_class.from_pretrained(spec.source), spec.label, num_inference_steps, device,
        griffin_lim_method=griffin_lim_method, source=spec.public,
    )  # fmt: skip


def _label(name: str) -> str:
    import re

    label = Path(name).resolve().name if Path(name).exists() else name.replace("/", "--")
    return re.sub(r"[^A-Za-z0-9._+-]", "_", label) or "pipeline"


def load_generation_split(dataset: str, split: str = "test", limit: int | None = None) -> Any:
    """One split of a SoS dataset's ``generation`` config (the first ``limit`` slices)."""
    from datasets import load_dataset

    try:
        splits = load_dataset(dataset, GENERATION_CONFIG)
    except (ValueError, FileNotFoundError) as err:
        raise ValueError(f"cannot load the {GENERATION_CONFIG!r} config of {dataset!r}: {err}") from None
    if split not in splits:
        raise ValueError(f"{dataset!r} has no generation split {split!r}; it has {sorted(splits)}")
    slices = splits[split]
    missing = [c for c in ("id", "text", "audio", "start", "end") if c not in slices.column_names]
    if missing:
        raise ValueError(f"the {GENERATION_CONFIG!r} config of {dataset!r} lacks column(s) {missing}")
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be positive, got {limit}")
        slices = slices.select(range(min(limit, len(slices))))
    if len(slices) == 0:
        raise ValueError(f"generation split {split!r} of {dataset!r} is empty: nothing to evaluate")
    return slices


def _write_clip(audio_path: Path, png_path: Path, clip: GeneratedClip) -> None:
    import soundfile as sf

    from sound_of_story.core.atomic_files import atomic_path

    if clip.spectrogram is not None:
        with atomic_path(png_path) as tmp:
            clip.spectrogram.save(tmp)
    with atomic_path(audio_path) as tmp:  # the WAV last: its presence marks the slice done
        sf.write(str(tmp), np.clip(np.atleast_2d(clip.audio), -1.0, 1.0).T, clip.sample_rate, subtype="PCM_16")


def generate_slices(
    pipeline: SlicePipeline,
    slices: Any,
    out_dir: str | Path,
    *,
    seed: int = 0,
    with_frames: bool | None = None,
    duration_s: float | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Generate every slice not generated yet; returns ``{slice id: WAV path}`` for all slices (resumable).

    ``with_frames=None`` gives frames exactly to pipelines that take them; ``True`` with a pipeline
    that cannot is a ``ValueError``.
    """
    if with_frames and not pipeline.takes_frames:
        raise ValueError(f"pipeline {pipeline.name!r} cannot take frames (it is text-only); drop --with-frames")
    use_frames = pipeline.takes_frames if with_frames is None else with_frames
    out_dir = Path(out_dir)
    ids = [str(i) for i in slices["id"]]
    paths = {sid: out_dir / "audio" / f"{sid}.wav" for sid in ids}
    todo = [i for i, sid in enumerate(ids) if not paths[sid].is_file()]
    columns = ["id", "text", "start", "end"] + (["frames", "frame_times"] if use_frames else [])
    with tqdm(
        total=len(ids),
        initial=len(ids) - len(todo),
        desc=f"generating ({pipeline.name})",
        unit="slice",
        disable=not progress,
    ) as bar:
        for index in todo:
            row = slices.select([index]).select_columns(columns)[0]
            length = float(row["end"] - row["start"]) if duration_s is None else float(duration_s)
            frames = times = None
            if use_frames and row["frames"]:
                kept = [
                    (f, t - row["start"])
                    for f, t in zip(row["frames"], row["frame_times"])
                    if t - row["start"] < length
                ]
                frames, times = [f for f, _ in kept] or None, [t for _, t in kept] or None
            clip = pipeline.generate(row["text"], length, slice_seed(seed, row["id"]), frames, times)
            _write_clip(paths[row["id"]], out_dir / "spectrograms" / f"{row['id']}.png", clip)
            bar.update(1)
    return paths


def check_settings(out_dir: str | Path, settings: dict[str, Setting]) -> None:
    """Keep a pipeline's settings in ``out_dir/settings.json``; refuse to resume clips made with other settings.

    A resumed run scores the clips already there with the new ones, so they must come from the same settings: a
    folder whose ``settings.json`` differs, or that holds clips but no ``settings.json`` (their settings are
    unknown), is a ``ValueError`` naming the differences. The check covers the settings, not the weights: a
    changed checkpoint in a folder of the same name needs another ``--out``.
    """
    import json

    from sound_of_story.core.atomic_files import write_json_atomic

    out_dir = Path(out_dir)
    values = _json_ready({name: setting.value for name, setting in settings.items()})
    recorded_path = out_dir / SETTINGS_FILE
    if recorded_path.is_file():
        try:
            recorded = json.loads(recorded_path.read_text())
        except ValueError as err:
            raise ValueError(
                f"{recorded_path} is not valid JSON ({err}); delete the folder or choose another --out"
            ) from None
        changed = sorted(k for k in set(values) | set(recorded) if values.get(k) != recorded.get(k))
        if changed:
            details = "; ".join(
                f"{k}: was {json.dumps(recorded.get(k), ensure_ascii=False)}, now {json.dumps(values.get(k), ensure_ascii=False)}"
                for k in changed
            )
            raise ValueError(
                f"{out_dir} holds clips generated with other settings ({details}); resuming would mix them in one "
                "number: choose another --out or delete the folder"
            )
        return
    if any((out_dir / "audio").glob("*.wav")):
        raise ValueError(
            f"{out_dir} holds generated clips but no {SETTINGS_FILE}, so their settings are unknown (an older version "
            "made them): choose another --out or delete the folder"
        )
    write_json_atomic(recorded_path, values)


@dataclass
class ClipCheck:
    """The generated clips fit to score, and the others by name with the reason."""

    usable: dict[str, Path] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)


def check_generated_clips(paths: dict[str, Path]) -> ClipCheck:
    """Missing, unreadable, silent (peak below 1e-4) or too short (< 0.975 s) clips are excluded by name."""
    from sound_of_story.audio import read_audio_file

    check = ClipCheck()
    for sid, path in paths.items():
        if not path.is_file():
            check.excluded[sid] = "missing: no generated file"
            continue
        try:
            audio, rate = read_audio_file(path)
        except ValueError as err:
            check.excluded[sid] = f"unreadable: {err}"
            continue
        if audio.shape[1] / rate < MIN_CLIP_SECONDS:
            check.excluded[sid] = f"too short: {audio.shape[1] / rate:.3f} s (VGGish needs {MIN_CLIP_SECONDS} s)"
        elif np.abs(audio).max() < SILENCE_PEAK:
            check.excluded[sid] = f"silent: peak {np.abs(audio).max():.2e}"
        else:
            check.usable[sid] = path
    return check


def make_embedder(embedder: EmbedderName = "vggish", *, vggish_checkpoint: str | Path | None = None, random_weights: bool = False,
                  clap_model: str = model_ids.CLAP, resampler: str = "resampy", device: str | None = None) -> Any:  # fmt: skip
    """Table 3's FAD embedder: :func:`sound_of_story.metrics.fad.make_embedder` with VGGish's defaults (imported when
    called, as it imports torch)."""
    from sound_of_story.metrics.fad import make_embedder as metrics_make_embedder

    return metrics_make_embedder(
        embedder, vggish_checkpoint=vggish_checkpoint, random_weights=random_weights, clap_model=clap_model,
        resampler=resampler, device=device,
    )  # fmt: skip


def score_clips(
    generated: dict[str, Path],
    reference_clips: list[tuple[np.ndarray, int]],
    embedder: Any,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    fad_inf_min_n: int = 500,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """FAD, FAD-inf, KAD, per-clip FAD and its outliers, and bootstrap intervals of FAD and KAD."""
    from sound_of_story.metrics.fad import fad_from_embeddings, fad_infinity, per_clip_fad
    from sound_of_story.metrics.fad.clip_bootstrap import bootstrap_set_distances, tukey_outliers
    from sound_of_story.metrics.fad.frechet import embedding_statistics
    from sound_of_story.metrics.fad.kad import kernel_audio_distance

    names = list(generated)
    pred = embedder.embed(
        [generated[n] for n in names], cache=cache_dir, progress=progress, desc="embedding generated clips"
    )
    ref = embedder.embed(
        [a for a, _ in reference_clips],
        [r for _, r in reference_clips],
        cache=cache_dir,
        progress=progress,
        desc="embedding real slices",
    )
    pred_all, ref_all = np.concatenate(pred), np.concatenate(ref)
    result: dict[str, Any] = {"embedder": embedder.description, "random_weights": bool(embedder.random_weights)}
    result["num_generated"], result["num_reference"] = len(names), len(reference_clips)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rank-deficient covariances of small sets: reported, still valid
        result["FAD"] = fad_from_embeddings(pred_all, ref_all)
        mu_ref, sigma_ref = embedding_statistics(ref_all)
        result["KAD"] = kernel_audio_distance(pred_all, ref_all)
        if pred_all.shape[0] > fad_inf_min_n:
            inf = fad_infinity(pred_all, mu_ref, sigma_ref, min_n=fad_inf_min_n, seed=seed)
            result["FAD-inf"], result["FAD-inf_r2"] = inf.value, inf.r2
        else:
            result["FAD-inf"] = None
            result["FAD-inf_note"] = f"needs more than {fad_inf_min_n} generated embeddings, got {pred_all.shape[0]}"
        scored = [n for n, e in zip(names, pred) if e.shape[0] >= 2]
        per_clip = (
            per_clip_fad([e for e in pred if e.shape[0] >= 2], mu_ref, sigma_ref, scored) if scored else np.array([])
        )
    result["per_clip_fad"] = dict(zip(scored, per_clip.tolist()))
    result["outliers"] = tukey_outliers(scored, per_clip)
    if bootstrap > 0 and len(names) >= 2:
        intervals = bootstrap_set_distances(pred, ref_all, resamples=bootstrap, seed=seed)
        result["FAD_ci"], result["KAD_ci"] = intervals["fad"], intervals["kad"]
    return result


def reference_audio(slices: Any) -> list[tuple[np.ndarray, int]]:
    """The real slices' audio, channels first, with their rates."""
    from sound_of_story.audio import channels_first, decoded_audio

    out = []
    for value in slices.select_columns(["audio"])["audio"]:
        array, rate = decoded_audio(value)
        out.append((channels_first(array), rate))
    return out


def scoring_settings(embedder: Any, *, split: str, num_slices: int, duration_s: float | None, seed: int,
                     bootstrap: int, fad_inf_min_n: int) -> dict[str, Setting]:  # fmt: skip
    """The settings of Table 3 that every pipeline shares: what is generated, and how it is scored."""
    vggish = embedder.description.startswith("VGGish")
    return {
        "slices": Setting(
            f"the {num_slices} slices of the generation config's {split!r} split",
            f"--split, --limit: {PACKAGE} (the paper's test set is 879 slices, section 4.2.2)",
        ),
        "reference set": Setting(f"the real audio of the same {num_slices} slices", PACKAGE),
        "audio length": Setting(
            "each slice's own length (end - start)" if duration_s is None else f"{duration_s:g} s (--duration)",
            f"{PACKAGE} (the paper's slices are about 15 s, section 4.2.2)",
        ),
        "base seed": Setting(seed, f"--seed: {PACKAGE}"),
        "embedder": Setting(
            embedder.description,
            (
                f"{PAPER} (FAD of VGGish embeddings, section 4.2.3); the weights (torchvggish's) and resampling are "
                f"{PACKAGE}: the paper's 'lightweight pytorch implementation' is not named"
            )
            if vggish
            else f"--embedder: {PACKAGE} (the paper's FAD uses VGGish)",
        ),
        "figures": Setting(
            f"FAD; FAD-inf when there are more than {fad_inf_min_n} generated embeddings; KAD; per-clip FAD with "
            f"Tukey outliers; {bootstrap} bootstrap resamples for 95% intervals",
            f"FAD: {PAPER}; the rest: {PACKAGE}",
        ),
    }


def _settings_table(settings: dict[str, Any]) -> list[str]:
    """Markdown rows of ``{name: {"value", "whose"}}``."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    rows = ["| setting | value | whose choice |", "|---|---|---|"]
    return rows + [f"| {name} | {cell(s['value'])} | {cell(s['whose'])} |" for name, s in settings.items()]


def format_table3(table: dict[str, dict[str, Any]]) -> str:
    lines = [
        "# Table 3: background sound generation",
        "",
        "Lower is better. 95% bootstrap intervals over the generated clips in brackets.",
        "",
        "| pipeline | FAD | FAD-inf | KAD | clips | excluded | outliers |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in table.items():
        cells = []
        for key in FIGURES:
            value = row.get(key)
            cell = "n/a" if value is None else f"{value:.4f}"
            if row.get(f"{key}_ci"):
                cell += f" [{row[f'{key}_ci'][0]:.4f}, {row[f'{key}_ci'][1]:.4f}]"
            cells.append(cell)
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {row['num_generated']} | {len(row['excluded'])} | {len(row['outliers'])} |"
        )
    notes = [
        f"- {name}: {'RANDOM embedder weights, smoke-test numbers; ' if row['random_weights'] else ''}{row['embedder']}"
        for name, row in table.items()
    ]
    excluded = [f"- {name}/{sid}: {why}" for name, row in table.items() for sid, why in row["excluded"].items()]
    lines += ["", *notes] + (["", "Excluded clips:", *excluded] if excluded else [])
    with_settings = {name: row for name, row in table.items() if row.get("settings")}
    if with_settings:
        lines += [
            "",
            "## Settings",
            "",
            "Every setting that decides a number above, and whose choice it is. The paper (section 4.2.3) states that "
            "Riffusion, MusicGen and SoSgen_text are given the SoS descriptions (SoSgen_image and SoSgen_text+image "
            "also the frames) and that FAD uses VGGish embeddings; it states no inference setting of any model. "
            "Everything else is this package's choice, for a baseline the baseline's own default.",
        ]
        first = next(iter(with_settings.values()))
        if first.get("scoring"):
            lines += ["", "### Generated slices and scoring (every row)", "", *_settings_table(first["scoring"])]
        for name, row in with_settings.items():
            lines += ["", f"### {name}", "", *_settings_table(row["settings"])]
    return "\n".join(lines) + "\n"


def run_table3(
    pipelines: Sequence[str],
    dataset: str,
    *,
    out: str | Path,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
    with_frames: bool | None = None,
    duration_s: float | None = None,
    num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
    griffin_lim_method: GriffinLimChoice = DEFAULT_GRIFFIN_LIM,
    embedder: Any = None,
    bootstrap: int = 1000,
    fad_inf_min_n: int = 500,
    cache_dir: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Generate with each pipeline and score; writes ``table3.md`` / ``table3.json`` into ``out``.

    Each row holds its figures, its excluded clips, its ``settings`` and the shared ``scoring`` settings, each
    ``{name: {"value": ..., "whose": ...}}`` (see :class:`Setting`).
    """
    from sound_of_story.core.atomic_files import atomic_path, write_json_atomic

    if not pipelines:
        raise ValueError("give at least one --pipeline")
    labels = [resolve_pipeline_spec(p).label for p in pipelines]  # every name checked before anything runs
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(
            f"two --pipeline would write to the same folder {repeated} of --out (rows are named after their folder, "
            "or riffusion / musicgen): rename a folder or run them into different --out folders"
        )
    slices = load_generation_split(dataset, split, limit)
    references = reference_audio(slices)
    embedder = embedder or make_embedder(random_weights=True)
    scoring = scoring_settings(
        embedder, split=split, num_slices=len(slices), duration_s=duration_s, seed=seed, bootstrap=bootstrap,
        fad_inf_min_n=fad_inf_min_n,
    )  # fmt: skip
    out = Path(out)
    table: dict[str, dict[str, Any]] = {}
    for name_or_path in pipelines:
        pipeline = load_slice_pipeline(
            name_or_path, num_inference_steps=num_inference_steps, griffin_lim_method=griffin_lim_method, device=device
        )
        if with_frames and not pipeline.takes_frames:
            raise ValueError(f"pipeline {pipeline.name!r} cannot take frames (it is text-only); drop --with-frames")
        settings = pipeline.settings(pipeline.takes_frames if with_frames is None else with_frames)
        # What is generated belongs to the pipeline's folder too: another length or seed makes other clips.
        check_settings(
            out / pipeline.name,
            {**settings, "audio length": scoring["audio length"], "base seed": scoring["base seed"]},
        )
        paths = generate_slices(
            pipeline,
            slices,
            out / pipeline.name,
            seed=seed,
            with_frames=with_frames,
            duration_s=duration_s,
            progress=progress,
        )
        check = check_generated_clips(paths)
        if not check.usable:
            raise ValueError(f"pipeline {pipeline.name!r}: no generated clip can be scored: {check.excluded}")
        row = score_clips(
            check.usable,
            references,
            embedder,
            bootstrap=bootstrap,
            seed=seed,
            fad_inf_min_n=fad_inf_min_n,
            cache_dir=cache_dir,
            progress=progress,
        )
        row["excluded"] = check.excluded
        row["settings"] = {k: v.to_dict() for k, v in settings.items()}
        row["scoring"] = {k: v.to_dict() for k, v in scoring.items()}
        table[pipeline.name] = row
    write_json_atomic(out / "table3.json", _json_ready(table))
    with atomic_path(out / "table3.md") as tmp:
        tmp.write_text(format_table3(_json_ready(table)), encoding="utf-8")
    return table


def _json_ready(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else list(v)))


__all__ = [
    "MUSICGEN_ID",
    "RIFFUSION_ID",
    "PipelineSpec",
    "Setting",
    "ClipCheck",
    "DiffusionSlicePipeline",
    "GeneratedClip",
    "MusicgenSlicePipeline",
    "SlicePipeline",
    "check_generated_clips",
    "check_settings",
    "describe_griffin_lim",
    "format_table3",
    "generate_slices",
    "load_generation_split",
    "load_slice_pipeline",
    "make_embedder",
    "reference_audio",
    "resolve_pipeline_spec",
    "run_table3",
    "score_clips",
    "scoring_settings",
    "slice_seed",
]
