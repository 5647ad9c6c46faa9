"""Table 3 from pipelines and a dataset: generate background sound for every test slice, then score it.

``sound-of-story evaluate generation --pipeline P --dataset D`` runs :func:`run_table3`:

1. Generation, per pipeline, into ``<out>/<pipeline>/audio/<slice id>.wav`` and
   ``<out>/<pipeline>/spectrograms/<slice id>.png`` (both written atomically). A slice whose WAV
   exists is skipped, so a killed run continues where it stopped and writes each slice once. Each
   slice has its own fixed seed (from the base seed and the slice id), so results do not depend on
   the order, on ``--limit`` or on resuming. Pipelines:
   - a saved ``SoSgenPipeline`` (text) or ``SoSgenControlNetPipeline`` (text and frames);
   - ``riffusion``: ``riffusion/riffusion-model-v1`` loaded through ``SoSgenPipeline`` (Table 3's baseline);
   - a saved ``MusicgenForConditionalGeneration`` with its tokenizer (e.g. ``facebook/musicgen-small``).
2. Scoring against the real slices of the split: FAD (VGGish by default, or CLAP), FAD-infinity
   when there are enough embeddings, KAD, per-clip FAD with its Tukey outliers, and bootstrap
   intervals over the generated clips. A missing, silent or too short generated clip is reported
   by name and left out, never averaged in silently.
3. ``table3.md`` / ``table3.json`` in ``<out>``.
"""

from __future__ import annotations

import hashlib
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
SILENCE_PEAK = 1e-4  # a generated clip whose peak stays below this is silent
MIN_CLIP_SECONDS = 0.975  # VGGish's shortest input: one 0.96 s example
FIGURES = ("FAD", "FAD-inf", "KAD")
EmbedderName = Literal["vggish", "clap"]


def slice_seed(base_seed: int, slice_id: str) -> int:
    """The seed of one slice: fixed by the base seed and the slice id, whatever the order or the limit."""
    return (base_seed + int(hashlib.sha256(slice_id.encode()).hexdigest()[:8], 16)) % 2**31


@dataclass
class GeneratedClip:
    audio: np.ndarray  # (channels, samples) float32
    sample_rate: int
    spectrogram: Any = None  # PIL image, if the pipeline makes one


class SlicePipeline:
    """One generator behind one interface: ``generate(text, duration_s, seed, frames, frame_times)``."""

    takes_frames: bool = False
    name: str = "pipeline"

    def generate(self, text: str, duration_s: float, seed: int, frames=None, frame_times=None) -> GeneratedClip:
        raise NotImplementedError


class DiffusionSlicePipeline(SlicePipeline):
    """A SoSgen pipeline (Riffusion-style spectrogram diffusion); with ControlNet it also takes frames."""

    def __init__(self, pipe: Any, name: str, num_inference_steps: int = 50, device: str | None = None) -> None:
        import torch

        self.pipe = pipe.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.pipe.set_progress_bar_config(disable=True)
        self.name = name
        self.num_inference_steps = num_inference_steps
        self.takes_frames = "frames" in _call_parameters(pipe)

    def generate(self, text, duration_s, seed, frames=None, frame_times=None) -> GeneratedClip:
        import torch

        extra = {"frames": frames, "frame_times": frame_times} if frames else {}
        generator = torch.Generator(device="cpu").manual_seed(seed)
        out = self.pipe(
            text, duration_s=duration_s, num_inference_steps=self.num_inference_steps, generator=generator, **extra
        )
        return GeneratedClip(np.asarray(out.audios[0], dtype=np.float32), int(out.sample_rate), out.spectrograms[0])


class MusicgenSlicePipeline(SlicePipeline):
    """MusicGen (``transformers.MusicgenForConditionalGeneration``), sampled with classifier-free guidance 3."""

    def __init__(
        self, model: Any, tokenizer: Any, name: str, guidance_scale: float = 3.0, device: str | None = None
    ) -> None:
        import torch

        self.model = model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
        self.tokenizer = tokenizer
        self.name = name
        self.guidance_scale = guidance_scale
        self.sample_rate = int(model.config.audio_encoder.sampling_rate)
        self.frame_rate = float(model.config.audio_encoder.frame_rate)

    def generate(self, text, duration_s, seed, frames=None, frame_times=None) -> GeneratedClip:
        import torch

        torch.manual_seed(seed)  # MusicGen samples with torch's global generator
        inputs = self.tokenizer([text], padding=True, return_tensors="pt").to(self.model.device)
        tokens = max(1, int(round(duration_s * self.frame_rate)))
        with torch.inference_mode():
            audio = self.model.generate(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], do_sample=True,
                guidance_scale=self.guidance_scale, max_new_tokens=tokens,
            )  # fmt: skip
        return GeneratedClip(audio[0].float().cpu().numpy(), self.sample_rate)


def _call_parameters(obj: Any) -> set[str]:
    import inspect

    return set(inspect.signature(obj.__call__).parameters)


def load_slice_pipeline(
    name_or_path: str, *, num_inference_steps: int = 50, device: str | None = None
) -> SlicePipeline:
    """``riffusion``, a saved SoSgen / SoSgen-ControlNet pipeline, or a saved MusicGen model with its tokenizer."""
    import json

    label = _label(name_or_path)
    if name_or_path == RIFFUSION:
        from sound_of_story.pipelines import SoSgenPipeline

        return DiffusionSlicePipeline(
            SoSgenPipeline.from_pretrained(RIFFUSION_ID), RIFFUSION, num_inference_steps, device
        )
    path = Path(name_or_path)
    if (path / "model_index.json").is_file():
        from sound_of_story.pipelines import SoSgenControlNetPipeline, SoSgenPipeline

        classes = {"SoSgenPipeline": SoSgenPipeline, "SoSgenControlNetPipeline": SoSgenControlNetPipeline}
        class_name = json.loads((path / "model_index.json").read_text())["_class_name"]
        if class_name not in classes:
            raise ValueError(
                f"{name_or_path!r} is a {class_name}; evaluate generation takes SoSgenPipeline, SoSgenControlNetPipeline, riffusion or MusicGen"
            )
        return DiffusionSlicePipeline(classes[class_name].from_pretrained(path), label, num_inference_steps, device)
    if (path / "config.json").is_file() and json.loads((path / "config.json").read_text()).get(
        "model_type"
    ) == "musicgen":
        from transformers import AutoTokenizer, MusicgenForConditionalGeneration

        return MusicgenSlicePipeline(
            MusicgenForConditionalGeneration.from_pretrained(path),
            AutoTokenizer.from_pretrained(path),
            label,
            device=device,
        )
    if path.exists():
        raise ValueError(
            f"{name_or_path!r} is neither a SoSgen pipeline (model_index.json) nor a MusicGen model (config.json)"
        )
    raise FileNotFoundError(f"pipeline {name_or_path!r} does not exist (a folder, or 'riffusion')")


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
    """The FAD embedder: VGGish (torchvggish weights, or random weights for smoke tests) or CLAP (``transformers.ClapModel``)."""
    from sound_of_story.metrics.fad import ClapEmbedder, VGGishEmbedder

    if embedder == "clap":
        return ClapEmbedder.from_pretrained(clap_model, resampler=resampler, device=device)
    if embedder != "vggish":
        raise ValueError(f"embedder must be 'vggish' or 'clap', got {embedder!r}")
    if random_weights:
        return VGGishEmbedder.from_random_weights(pad_short_clips=False, resampler=resampler, device=device)
    return VGGishEmbedder.from_checkpoint(vggish_checkpoint, resampler=resampler, device=device)


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
    return "\n".join(lines + ["", *notes] + (["", "Excluded clips:", *excluded] if excluded else [])) + "\n"


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
    num_inference_steps: int = 50,
    embedder: Any = None,
    bootstrap: int = 1000,
    fad_inf_min_n: int = 500,
    cache_dir: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Generate with each pipeline and score; writes ``table3.md`` / ``table3.json`` into ``out``."""
    from sound_of_story.core.atomic_files import atomic_path, write_json_atomic

    if not pipelines:
        raise ValueError("give at least one --pipeline")
    slices = load_generation_split(dataset, split, limit)
    references = reference_audio(slices)
    embedder = embedder or make_embedder(random_weights=True)
    out = Path(out)
    table: dict[str, dict[str, Any]] = {}
    for name_or_path in pipelines:
        pipeline = load_slice_pipeline(name_or_path, num_inference_steps=num_inference_steps, device=device)
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
        table[pipeline.name] = row
    write_json_atomic(out / "table3.json", _json_ready(table))
    with atomic_path(out / "table3.md") as tmp:
        tmp.write_text(format_table3(table), encoding="utf-8")
    return table


def _json_ready(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else list(v)))


__all__ = [
    "RIFFUSION_ID",
    "ClipCheck",
    "DiffusionSlicePipeline",
    "GeneratedClip",
    "MusicgenSlicePipeline",
    "SlicePipeline",
    "check_generated_clips",
    "format_table3",
    "generate_slices",
    "load_generation_split",
    "load_slice_pipeline",
    "make_embedder",
    "reference_audio",
    "run_table3",
    "score_clips",
    "slice_seed",
]
