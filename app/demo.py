"""The offline demo (``make demo``): the whole Sound of Story story, learning, on the embedded sample clips.

One run on a 2-core CPU, with no network:

1. **Data**: movie-like sample clips with known ground truth (CMD and LSMDC style) are generated, SoS
   is built from them in both configs (stories and 15 s generation slices; the generation slices take
   their story's split, so no held-out story leaks into training) and loaded back with ``load_dataset``.
2. **Retrieval**: tiny encoders initialised in code (the real CLIP and AST with ``--pretrained``) are
   trained with the package's training loop (`sound_of_story.training.retrieval`) for audio-video and
   audio-text, and evaluated on the held-out stories next to the untrained model and the random
   baseline, as Table 2, with bootstrap intervals (`sound_of_story.evaluation.retrieval`).
3. **Generation**: a small SoSgen (text) and a SoSgen ControlNet (frames) are trained briefly
   (`sound_of_story.training.sosgen`); sound is generated for held-out slices before and after
   training and scored against the real held-out slices (FAD, KAD; VGGish with random weights
   offline, labelled), as Table 3, and by whether each scene of a slice is heard as its category.
4. **Recommendation**: background sound for every held-out story from a library of the training slices
   (`sound_of_story.recommendation.SoundLibraryIndex`), scored by how often the recommended sounds share the
   story's scene category (the sample clips' ground truth), beside a random draw from the library.
5. **Report**: ``report.html`` (self-contained), ``report.md`` and ``report.json``.

Every number comes from this run; numbers of random weights are labelled. ``--minutes`` scales the data
and the training (`DemoPlan.for_minutes`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sound_of_story.core import model_ids
from sound_of_story.core.atomic_files import write_jsonl_atomic

DEFAULT_MINUTES = 15.0
MIN_MINUTES = 0.5
FIGURES = ("R@1", "R@5", "R@10", "MdR", "MnR")
STYLES = ("cmd", "lsmdc")
SAMPLE_WORKERS = 2  # processes making sample clips (2 cores)
CMD_CLIPS_PER_JOB = 16  # CMD clips per job of the sample pool (whole movie pairs: even)
NUM_RECOMMENDATION_STORIES = 3
RECOMMENDATION_TOP_K = 5
DEMO_VISION_PATCH_SIZE = 4
DEMO_ENCODER_WIDTH = 256  # the demo's frozen random CLIP and AST (the tests' tiny models are 16 wide)
# Softmax temperature of the multi-grained similarity's aggregations (X-CLIP's, which this package's model keeps
# by default, is 0.01). Over random frozen features a near-max picks single noisy token-frame pairs, which the
# head learns to memorise; 0.3 averages over tokens and frames (the screen is in docs/demo.md).
DEMO_SIMILARITY_TEMPERATURE = 0.3


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo writes everything under ``--out`` (the web app reads the same places)."""

    root: Path

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def sos(self) -> Path:
        return self.root / "sos"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def init_retrieval(self) -> Path:
        return self.models / "init" / "retrieval"

    @property
    def init_sosgen(self) -> Path:
        return self.models / "init" / "sosgen-untrained"

    @property
    def init_image_encoder(self) -> Path:
        return self.models / "init" / "image-encoder"

    @property
    def retrieval_model(self) -> Path:
        """The audio-video retrieval model (frames to sound)."""
        return self.models / "retrieval-audio-video"

    @property
    def retrieval_text_model(self) -> Path:
        return self.models / "retrieval-audio-text"

    @property
    def sosgen_text(self) -> Path:
        return self.models / "sosgen"

    @property
    def sosgen_controlnet(self) -> Path:
        return self.models / "sosgen-controlnet"

    @property
    def library(self) -> Path:
        """The sound library: the training slices as audio files."""
        return self.root / "library"

    @property
    def library_index(self) -> Path:
        return self.root / "library-index"

    @property
    def generated(self) -> Path:
        return self.root / "generated"

    @property
    def work(self) -> Path:
        """Caches (frozen-encoder features, embeddings): safe to delete."""
        return self.root / "work"


@dataclass(frozen=True)
class DemoPlan:
    """How much data and training a run gets. `for_minutes` scales the 15-minute plan."""

    minutes: float
    cmd_clips: int
    cmd_duration_s: float
    lsmdc_clips: int
    lsmdc_movie_s: float
    lsmdc_story_s: float
    test_stories: int
    retrieval_epochs: int
    retrieval_text_epochs: int
    retrieval_batch: int
    retrieval_lr: float
    retrieval_text_encoder_lr: float
    sosgen_steps: int
    controlnet_steps: int
    sosgen_lr: float
    eval_slices: int
    inference_steps: int
    generation_seconds: float | None
    bootstrap: int

    @classmethod
    def for_minutes(cls, minutes: float = DEFAULT_MINUTES) -> DemoPlan:
        """The plan for a budget of ``minutes`` on 2 CPU cores: 15 gives 72 held-out stories."""
        if not (math.isfinite(minutes) and minutes >= MIN_MINUTES):
            raise ValueError(f"--minutes must be at least {MIN_MINUTES}, got {minutes}")
        scale = min(minutes / DEFAULT_MINUTES, 4.0)
        # Below 15 minutes the data shrinks faster than the budget (fixed costs take a larger share), so that
        # `--minutes 1` stays a quick check of the stages.
        data_scale = scale if scale >= 1.0 else scale * scale

        def scaled(full: int, least: int, by: float = scale) -> int:
            return max(least, round(full * by))

        # Retrieval needs many training stories: with the 256-wide frozen encoders, half these data did not beat
        # random at every seed (docs/demo.md).
        return cls(
            minutes=float(minutes),
            cmd_clips=2 * scaled(96, 3, data_scale),  # two clips per movie
            cmd_duration_s=10.0,
            lsmdc_clips=scaled(72, 4, data_scale),
            lsmdc_movie_s=30.0,
            lsmdc_story_s=10.0,
            test_stories=scaled(72, 3, data_scale),
            # A head on frozen features at lr 1e-3 and batch 16: 150 epochs for audio-video (100 left V2A at chance
            # at one seed of five), 50 for audio-text, whose text tower trains too and costs most of the stage (the
            # runs and screens behind these choices are in docs/demo.md).
            retrieval_epochs=scaled(150, 3),
            retrieval_text_epochs=scaled(50, 3),
            retrieval_batch=16,
            retrieval_lr=1e-3,
            # The random text tower trains too (audio-text, --train_text_encoder): with it frozen, nothing on the text
            # side learns and A2T/T2A were above random at some seeds only (docs/demo.md).
            retrieval_text_encoder_lr=1e-4,
            sosgen_steps=scaled(120, 4),
            controlnet_steps=scaled(60, 2),
            sosgen_lr=1e-3,
            eval_slices=scaled(12, 3),  # 3 pipelines x 12 slices x 10 steps: about 2 of the 15 minutes
            inference_steps=10 if scale >= 0.5 else 4,
            generation_seconds=None if scale >= 0.5 else 5.0,  # None: each held-out slice's own length (15 s)
            bootstrap=1000,
        )


# --------------------------------------------------------------------------- stages


class StageClock:
    """Times the stages against the budget and shows one progress bar over them."""

    def __init__(self, names: list[str], minutes: float, progress: bool) -> None:
        from tqdm.auto import tqdm

        self.start = time.monotonic()
        self.budget_s = minutes * 60.0
        self.seconds: dict[str, float] = {}
        self.bar = tqdm(total=len(names), desc="demo", unit="stage", disable=not progress, position=0)

    def run(self, name: str, stage: Callable[[], Any]) -> Any:
        self.bar.set_description(f"demo: {name}")
        began = time.monotonic()
        result = stage()
        self.seconds[name] = time.monotonic() - began
        self.bar.update(1)
        return result

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.start

    def close(self) -> None:
        self.bar.close()


@dataclass(frozen=True)
class SampleJob:
    """One process's share of the sample clips: ``num_clips`` of ``style`` from movie ``first_movie`` into ``folder``."""

    folder: str
    style: str
    num_clips: int
    duration_s: float
    first_movie: int = 0


def sample_jobs(plan: DemoPlan) -> list[SampleJob]:
    """The clips of a plan as jobs for a process pool, longest first: the LSMDC runs, then the CMD clips in parts
    of CMD_CLIPS_PER_JOB (whole movie pairs), which hold most of the frames (10 s each, against 3-12 s for an
    LSMDC clip, and more of them) and as one job would keep one process busy long after the other is done."""
    jobs = [SampleJob("lsmdc", "lsmdc", plan.lsmdc_clips, plan.lsmdc_movie_s)]
    for k, first in enumerate(range(0, plan.cmd_clips, CMD_CLIPS_PER_JOB)):
        count = min(CMD_CLIPS_PER_JOB, plan.cmd_clips - first)
        jobs.append(SampleJob(f"cmd-{k}", "cmd", count, plan.cmd_duration_s, first))
    return jobs


def _combined_manifest(samples_dir: Path, jobs: list[SampleJob]) -> Path:
    """One manifest holding every job's rows, CMD and LSMDC (paths relative to it)."""
    rows = []
    for job in jobs:
        for line in (samples_dir / job.folder / "manifest.jsonl").read_text().splitlines():
            row = json.loads(line)
            row["video"] = f"{job.folder}/{row['video']}"
            rows.append(row)
    path = samples_dir / "manifest.jsonl"
    write_jsonl_atomic(path, rows)
    return path


def _generate_job(out_dir: str, job: SampleJob, seed: int) -> int:
    from sound_of_story.dataset_builder.samples import generate_samples

    return len(
        generate_samples(
            out_dir, num_clips=job.num_clips, seed=seed, duration_s=job.duration_s, style=job.style,
            progress=False, first_movie=job.first_movie,
        )
    )  # fmt: skip


def make_samples(paths: DemoPaths, plan: DemoPlan, seed: int, progress: bool) -> dict[str, int]:
    """CMD- and LSMDC-style clips from `sample_jobs` in SAMPLE_WORKERS processes (the generator is single-threaded),
    under one progress bar. Returns the number of clips per style."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    jobs = sample_jobs(plan)
    counts = dict.fromkeys(STYLES, 0)
    with (
        ProcessPoolExecutor(SAMPLE_WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool,
        tqdm(total=sum(job.num_clips for job in jobs), desc="sample clips", unit="clip", disable=not progress) as bar,
    ):
        futures = {pool.submit(_generate_job, str(paths.samples / job.folder), job, seed): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            counts[job.style] += future.result()
            bar.update(job.num_clips)
    _combined_manifest(paths.samples, jobs)
    return counts


def build_sos(paths: DemoPaths, plan: DemoPlan, progress: bool) -> dict[str, Any]:
    """Build both configs with the project's builder and load them back with ``load_dataset``."""
    from datasets import load_dataset

    from sound_of_story.dataset_builder.build import build_dataset

    report = build_dataset(
        paths.samples / "manifest.jsonl", paths.sos, test_size=plan.test_stories, lsmdc_target_s=plan.lsmdc_story_s,
        num_proc=2, progress=progress, generation_split="story",
    )  # fmt: skip
    if not report.ok:
        raise RuntimeError(f"the demo's build produced no story: {report.failures_by_reason()}")
    stories = load_dataset(str(paths.sos))
    slices = load_dataset(str(paths.sos), "generation")
    return {"report": report, "stories": stories, "slices": slices}


def dataset_statistics(stories: Any, slices: Any, failures: int) -> dict[str, Any]:
    """Per split: stories, their sources, seconds, key frames and speech ratios; generation slices."""
    import numpy as np

    stats: dict[str, Any] = {"failed_inputs": failures, "splits": {}}
    for split, rows in stories.items():
        table = rows.select_columns(
            ["source", "duration", "frame_times", "speech_ratio_before", "speech_ratio_after"]
        ).to_pandas()
        frames = table["frame_times"].map(len)
        stats["splits"][split] = {
            "stories": len(rows),
            "by_source": {str(k): int(v) for k, v in table["source"].value_counts().sort_index().items()},
            "hours": float(table["duration"].sum() / 3600),
            "mean_story_s": float(table["duration"].mean()),
            "mean_key_frames": float(frames.mean()),
            "speech_ratio_before": float(np.mean(table["speech_ratio_before"])),
            "speech_ratio_after": float(np.mean(table["speech_ratio_after"])),
            "generation_slices": len(slices[split]) if split in slices else 0,
        }
    return stats


# --------------------------------------------------------------------------- retrieval


STORY_TOKENIZER_VOCAB = 2000  # at most; the training stories of the 15-minute plan give about 700 symbols
STORY_TOKENIZER_LENGTH = 77  # CLIP's context length


def train_story_tokenizer(texts: list[str], vocab_size: int = STORY_TOKENIZER_VOCAB) -> Any:
    """A CLIP tokenizer whose byte-pair merges are learnt here from ``texts`` (the training stories; the held-out
    ones are not read), lower-cased and split into words as CLIP splits them (the `tokenizers` library's
    pre-tokenizer). With a vocabulary as large as the stories' words, a word is one token, so the 77 tokens of a text
    encoder read about 60 words of a story (a byte-level tokenizer reads its first 77 characters, about one
    sentence). A word never seen in training falls back to letters, so every text tokenizes. The demo's random text
    encoders start from it (``--pretrained`` uses CLIP's own tokenizer).

    The merges are learnt by this function rather than by `tokenizers`' BPE trainer, whose merge order and token ids
    change from one process to the next (ties are broken in hash order), so that a seed gives the same models."""
    import string
    from collections import Counter

    from tokenizers import Regex, normalizers, pre_tokenizers
    from transformers import CLIPTokenizer

    normalize = normalizers.Lowercase()
    words = Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""")  # CLIP's word pattern
    split = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(words, behavior="isolated")]
    )
    counts = Counter(word for text in texts for word, _ in split.pre_tokenize_str(normalize.normalize_str(text)))
    alphabet = sorted(set(string.ascii_lowercase + string.digits + ".,'!?-;:\"()") | {c for w in counts for c in w})
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in [*alphabet, *(c + "</w>" for c in alphabet)]:
        vocab[symbol] = len(vocab)
    spelled = {word: [*word[:-1], word[-1] + "</w>"] for word in counts}
    merges: list[tuple[str, str]] = []
    while len(vocab) < vocab_size:
        pairs: Counter = Counter()
        for word, symbols in spelled.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += counts[word]
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))  # the most frequent pair; ties by spelling
        merges.append(best)
        vocab.setdefault(best[0] + best[1], len(vocab))
        for word, symbols in spelled.items():
            merged, k = [], 0
            while k < len(symbols):
                if k + 1 < len(symbols) and (symbols[k], symbols[k + 1]) == best:
                    merged.append(symbols[k] + symbols[k + 1])
                    k += 2
                else:
                    merged.append(symbols[k])
                    k += 1
            spelled[word] = merged
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=STORY_TOKENIZER_LENGTH)


def save_initial_retrieval_model(paths: DemoPaths, pretrained: bool, seed: int, tokenizer: Any = None) -> str:
    """Where training starts: a tiny random model saved in code over ``tokenizer`` (`train_story_tokenizer`), or the
    paper's CLIP and AST (``--pretrained``)."""
    import torch

    from sound_of_story.modeling import SoSRetrievalModel, SoSRetrievalProcessor
    from sound_of_story.modeling.tiny_random import (
        tiny_ast_config_dict,
        tiny_clip_config_dict,
        tiny_retrieval_config,
        tiny_retrieval_processor,
    )

    if pretrained:
        model, processor = SoSRetrievalModel.from_encoders(), SoSRetrievalProcessor.from_encoders()
    else:
        # Frozen random encoders wide enough for their features to keep the sample clips' scene categories: CLIP
        # with 4 px patches (64 tokens on 32 px frames; 16 px patches leave too few tokens to tell scenes apart) and
        # a 256-wide AST (probes and oracles in docs/demo.md). AST tokens are averaged over frequency (the
        # multi-grained similarity ~8x cheaper). The logit scale starts at its cap (100), so the head trains at
        # lr 1e-3.
        width = DEMO_ENCODER_WIDTH
        clip = tiny_clip_config_dict(tokenizer)
        clip["projection_dim"] = width
        clip["logit_scale_init_value"] = math.log(100.0)
        clip["text_config"].update(hidden_size=width, intermediate_size=2 * width)
        clip["vision_config"].update(hidden_size=width, intermediate_size=2 * width, patch_size=DEMO_VISION_PATCH_SIZE)
        ast = tiny_ast_config_dict()
        ast.update(hidden_size=width, intermediate_size=2 * width)
        torch.manual_seed(seed)
        model = SoSRetrievalModel(
            tiny_retrieval_config(
                clip_config=clip,
                audio_config=ast,
                audio_token_pooling="frequency",
                temperature=DEMO_SIMILARITY_TEMPERATURE,
            )
        )
        processor = tiny_retrieval_processor(tokenizer=tokenizer)
    model.save_pretrained(paths.init_retrieval)
    processor.save_pretrained(paths.init_retrieval)
    return str(paths.init_retrieval)


def table2_entry(figures: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{"R@1": {"value", "ci_low", "ci_high"}, ...}`` of one direction's figures (the report.json layout)."""
    intervals = figures.get("ci", {})
    out = {}
    for name in FIGURES:
        low, high = intervals.get(name, (float("nan"), float("nan")))
        out[name] = {"value": float(figures[name]), "ci_low": float(low), "ci_high": float(high)}
    return out


def train_retrieval_pair(
    paths: DemoPaths, plan: DemoPlan, pair: str, init: str, out_dir: Path, seed: int, pretrained: bool = False
) -> dict[str, Any]:
    """`train_retrieval` on the built stories with frozen encoders and cached features (the tiny encoders' random
    features are fixed, which is what makes a few minutes enough). The audio-text pair of the random models also
    trains the text tower (`--train_text_encoder`), whose random weights are no encoder at all; with
    ``--pretrained`` CLIP's text tower stays frozen."""
    from sound_of_story.training.arguments import RetrievalTrainingArguments
    from sound_of_story.training.retrieval import train_retrieval

    text_tower = pair == "audio-text" and not pretrained
    extra = {"train_text_encoder": True, "encoder_learning_rate": plan.retrieval_text_encoder_lr} if text_tower else {}
    args = RetrievalTrainingArguments(
        dataset=str(paths.sos), pair=pair, model="sos", init_from=init, output_dir=str(out_dir),
        train_batch_size=plan.retrieval_batch,
        num_train_epochs=plan.retrieval_text_epochs if pair == "audio-text" else plan.retrieval_epochs,
        learning_rate=plan.retrieval_lr, eval_split="none", report_to="none", seed=seed,
        checkpointing_steps=1_000_000, freeze_encoders=True, feature_cache=str(paths.work / "features"), **extra,
    )  # fmt: skip
    result = train_retrieval(args)
    return {"steps": result.global_step, "losses": result.losses}


def evaluate_retrieval_models(
    models: dict[str, Path], stories: Any, plan: DemoPlan, paths: DemoPaths, progress: bool
) -> dict[str, Any]:
    """Table 2 on the held-out stories: every model's pair directions with bootstrap intervals, and the random baseline."""
    from sound_of_story.evaluation.retrieval import encode_stories, random_baseline_figures, retrieval_figures
    from sound_of_story.modeling import load_retrieval_model

    test = stories["test"]
    table: dict[str, dict[str, Any]] = {}
    for row_name, by_pair in models.items():
        table[row_name] = {}
        for pair, folder in by_pair.items():
            model, processor, _ = load_retrieval_model(folder)
            embeddings = encode_stories(
                model, processor, test, pair=pair, cache_dir=paths.work / "embeddings", progress=progress
            )
            for direction, figures in retrieval_figures(model, embeddings, bootstrap=plan.bootstrap).items():
                table[row_name][direction] = table2_entry(figures)
    random = random_baseline_figures(len(test), bootstrap=plan.bootstrap)
    table["random"] = {direction: table2_entry(figures) for direction, figures in random.items()}
    return table


def beats_random(table2: dict[str, Any], direction: str = "A2V", figure: str = "R@1") -> bool:
    """Whether the trained model's interval lies above the random baseline's (what the demo sets out to show)."""
    return table2["trained"][direction][figure]["ci_low"] > table2["random"][direction][figure]["ci_high"]


# --------------------------------------------------------------------------- generation


def save_initial_pipelines(paths: DemoPaths, pretrained: bool, tokenizer: Any = None) -> tuple[str, str]:
    """Where SoSgen starts: a small random pipeline saved in code over ``tokenizer`` (`train_story_tokenizer`), or
    Riffusion and CLIP (``--pretrained``). Returns the text-to-audio base and the image encoder of the ControlNet's
    frame tokens.

    The small pipeline (`small_sosgen_components`) passes the spectrogram through a fixed identity autoencoder and
    works at 16 kHz in 80 ms columns, so that one window holds a whole 10 s slice (docs/demo.md says what each of
    these choices changed)."""
    if pretrained:
        from sound_of_story.training.sosgen import DEFAULT_IMAGE_ENCODER, DEFAULT_PRETRAINED

        return DEFAULT_PRETRAINED, DEFAULT_IMAGE_ENCODER
    from sound_of_story.pipelines import SoSgenPipeline
    from sound_of_story.pipelines.tiny_random import (
        SMALL_SPECTROGRAM,
        SMALL_WINDOWS,
        small_sosgen_components,
        tiny_frame_components,
        tiny_tokenizer,
    )

    components = small_sosgen_components(tokenizer if tokenizer is not None else tiny_tokenizer())
    SoSgenPipeline(**components, spectrogram_params=SMALL_SPECTROGRAM, **SMALL_WINDOWS).save_pretrained(
        paths.init_sosgen
    )
    frame = tiny_frame_components(components)
    frame["image_encoder"].save_pretrained(paths.init_image_encoder)
    frame["feature_extractor"].save_pretrained(paths.init_image_encoder)
    return str(paths.init_sosgen), str(paths.init_image_encoder)


# The demo's SoSgen batch. With --pretrained (Riffusion's 860M-parameter UNet on 512 x 1536 windows) one pass of
# four windows saves about 4 x 31.6 GB of activations in float32 (counted by benchmarks/paper_size.py, docs/training.md,
# "Paper size"): there the batch is accumulated one window at a time with gradient checkpointing (about 1 GB a pass),
# the same update in a small fraction of the memory.
SOSGEN_DEMO_BATCH = 4
# Texts replaced by the empty prompt in training, so that classifier-free guidance at generation has a trained
# unconditional prediction: 10% for the text model (as Stable Diffusion was trained), 50% for the ControlNet (the
# ControlNet paper's share, which makes it read the frames when the text is absent). Our choice; the paper is silent.
SOSGEN_EMPTY_PROMPTS = {"text": 0.1, "controlnet": 0.5, "image": 0.0}


def sosgen_training_arguments(
    paths: DemoPaths, plan: DemoPlan, mode: str, base: str, image_encoder: str, out_dir: Path, steps: int, seed: int,
    pretrained: bool = False,
):  # fmt: skip
    """The `SoSgenTrainingArguments` of one demo generator: ``SOSGEN_DEMO_BATCH`` windows an update, in one pass for
    the tiny models, accumulated one window a pass with gradient checkpointing for the full-size ones."""
    from sound_of_story.training.arguments import SoSgenTrainingArguments

    per_pass = 1 if pretrained else SOSGEN_DEMO_BATCH
    return SoSgenTrainingArguments(
        mode=mode, pretrained_model=base, image_encoder=image_encoder, dataset=str(paths.sos),
        output_dir=str(out_dir), train_batch_size=per_pass, gradient_accumulation_steps=SOSGEN_DEMO_BATCH // per_pass,
        gradient_checkpointing=pretrained, max_train_steps=steps,
        learning_rate=plan.sosgen_lr, validation_split="none", report_to="none", seed=seed,
        checkpointing_steps=1_000_000, proportion_empty_prompts=SOSGEN_EMPTY_PROMPTS[mode],
    )  # fmt: skip


def train_sosgen_mode(
    paths: DemoPaths, plan: DemoPlan, mode: str, base: str, image_encoder: str, out_dir: Path, steps: int, seed: int,
    pretrained: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """`train_sosgen` on the generation slices: ``text`` fine-tunes the UNet and text encoder, ``controlnet``
    trains a ControlNet on the frames over the trained text model (the paper's eqs. 12 and 13)."""
    from sound_of_story.training.sosgen import train_sosgen

    args = sosgen_training_arguments(paths, plan, mode, base, image_encoder, out_dir, steps, seed, pretrained)
    result = train_sosgen(args)
    return {"steps": result.global_step, "losses": result.losses}


def prompt_text_tokens(pipeline_dir: Path) -> int:
    """How many tokens of a description the pipeline's text encoder reads (its tokenizer's ``model_max_length``)."""
    from transformers import CLIPTokenizer

    return int(CLIPTokenizer.from_pretrained(pipeline_dir, subfolder="tokenizer").model_max_length)


def generation_band(pipeline_dir: Path) -> dict[str, float]:
    """The sample rate and the mel bins' frequency range of the pipeline's spectrograms (its ``model_index.json``)."""
    params = json.loads((pipeline_dir / "model_index.json").read_text())["spectrogram_params"]
    return {key: float(params[key]) for key in ("sample_rate", "min_frequency", "max_frequency")}


@contextmanager
def prompt_truncation_warnings_off() -> Iterator[None]:
    """diffusers warns once per prompt that it was cut to the text encoder's length; over a held-out set that is one
    line per slice. Only that warning is dropped (the logger of `StableDiffusionPipeline.encode_prompt`, which
    SoSgen's pipelines use; other diffusers warnings still show); the report states the length once instead
    (`prompt_text_tokens`)."""
    import logging

    from diffusers import StableDiffusionPipeline

    def not_truncation(record: logging.LogRecord) -> bool:
        return "can only handle sequences up to" not in record.getMessage()

    logger = logging.getLogger(StableDiffusionPipeline.encode_prompt.__module__)
    logger.addFilter(not_truncation)
    try:
        yield
    finally:
        logger.removeFilter(not_truncation)


def generation_table(paths: DemoPaths, plan: DemoPlan, pipelines: list[Path], progress: bool) -> dict[str, Any]:
    """Table 3: each pipeline generates the first ``plan.eval_slices`` held-out slices, scored against the real
    ones (FAD, KAD with bootstrap intervals) by `sound_of_story.evaluation.generation.run_table3`."""
    from sound_of_story.evaluation.generation import make_embedder, run_table3

    with prompt_truncation_warnings_off():
        table = run_table3(
            [str(p) for p in pipelines], str(paths.sos), out=paths.generated, limit=plan.eval_slices, seed=0,
            num_inference_steps=plan.inference_steps, duration_s=plan.generation_seconds, embedder=make_embedder(random_weights=True), bootstrap=plan.bootstrap,
            cache_dir=paths.work / "vggish", progress=progress,
        )  # fmt: skip
    return json.loads((paths.generated / "table3.json").read_text()) if table else {}


ROUND_TRIP = "real held-out slices through SoSgen's spectrogram and Griffin-Lim"


def scene_category_scores(
    paths: DemoPaths, plan: DemoPlan, slices: Any, pipelines: list[Path], bootstrap: int
) -> dict[str, Any]:  # fmt: skip
    """Frames steer the sound? How often each span of a generated held-out slice is recognised as its real scene's
    category by a classifier fitted on the real training slices (`sound_of_story.app.scene_sound`), per pipeline,
    beside the real held-out slices, the same slices through the first pipeline's spectrogram images and
    Griffin-Lim (what a perfect generator could reach) and chance (a uniform guess). The slices are Table 3's: the first
    ``plan.eval_slices`` held-out ones, generated into ``paths.generated``."""
    import numpy as np
    import torch

    from sound_of_story.audio import channels_first, decoded_audio
    from sound_of_story.audio.spectrogram import SpectrogramParams, audio_to_image, image_to_audio, load_audio
    from sound_of_story.dataset_builder.samples import CATEGORY_NAMES

    from .scene_sound import (
        band_profile,
        fit_on_slices,
        log_mel,
        profile_agreement,
        recognition_rate,
        slice_spans,
        span_hits,
    )

    scenes = story_scene_categories(paths.samples, plan.lsmdc_story_s)
    columns = ["id", "story_id", "audio", "start", "end"]

    def real(split: Any) -> list[tuple[str, np.ndarray, int, list]]:
        out = []
        for row in split.select_columns(columns):
            audio, rate = decoded_audio(row["audio"])
            spans = slice_spans(scenes[row["story_id"]], row["start"], row["end"])
            out.append((row["id"], channels_first(audio), rate, spans))
        return out

    classifier = fit_on_slices([(a, r, spans) for _, a, r, spans in real(slices["train"])], CATEGORY_NAMES)
    held_out = real(slices["test"].select(range(min(plan.eval_slices, len(slices["test"])))))
    # The log-mel bands of every scored clip, computed once: the real held-out slices, the same slices through the
    # first pipeline's spectrogram images and back (its Griffin-Lim: the ceiling of a generator), and each
    # pipeline's generated slices.
    params = SpectrogramParams.from_dict(
        json.loads((pipelines[0] / "model_index.json").read_text())["spectrogram_params"]
    )
    bands = {
        "real held-out slices": [log_mel(a, r) for _, a, r, _ in held_out],
        ROUND_TRIP: [
            log_mel(*image_to_audio(audio_to_image(a, r, params), params, generator=torch.Generator().manual_seed(0)))
            for _, a, r, _ in held_out
        ],
        **{
            folder.name: [
                log_mel(*load_audio(paths.generated / folder.name / "audio" / f"{sid}.wav")) for sid, *_ in held_out
            ]
            for folder in pipelines
        },
    }
    spans = [clip_spans for *_, clip_spans in held_out]
    scores = {
        name: recognition_rate(
            [span_hits(classifier, b, clip_spans) for b, clip_spans in zip(clips, spans)], bootstrap
        )
        for name, clips in bands.items()
    }
    # What the generated sound reproduces of the real slices' energy distribution over the bands, on average.
    real_profiles = [band_profile(b) for b in bands["real held-out slices"]]
    profiles = {
        folder.name: profile_agreement([band_profile(b) for b in bands[folder.name]], real_profiles)
        for folder in pipelines
    }
    return {
        "scores": scores,
        "chance": 100.0 / len(CATEGORY_NAMES),
        "categories": len(CATEGORY_NAMES),
        "band_profiles": profiles,
    }


# --------------------------------------------------------------------------- recommendation


def write_library(paths: DemoPaths, slices: Any) -> dict[str, str]:
    """The sound library: every training slice's audio as a file (its encoded bytes, unchanged). Returns
    ``{file name (the library's clip id): slice id}``."""
    from datasets import Audio

    from sound_of_story.core.atomic_files import atomic_path

    paths.library.mkdir(parents=True, exist_ok=True)
    rows = slices["train"].select_columns(["id", "audio"]).cast_column("audio", Audio(decode=False))
    files = {}
    for row in rows:
        suffix = Path(row["audio"].get("path") or "x.flac").suffix or ".flac"
        name = f"{row['id']}{suffix}"
        with atomic_path(paths.library / name) as tmp:
            tmp.write_bytes(row["audio"]["bytes"])
        files[name] = row["id"]
    return files


def story_scene_categories(samples_dir: Path, lsmdc_story_s: float) -> dict[str, list[tuple[str, float, float]]]:
    """The ground truth of every story the builder makes from the sample clips: ``{story id: [(category, start,
    end)]}`` in seconds of the story, from each clip's JSON (an LSMDC story's clips follow one another)."""
    from sound_of_story.dataset_builder.manifest import read_manifest

    sources, _ = read_manifest(samples_dir / "manifest.jsonl", lsmdc_target_s=lsmdc_story_s)
    scenes: dict[str, list[tuple[str, float, float]]] = {}
    for story in sources:
        offset, spans = 0.0, []
        for video in story.videos:
            truth = json.loads(Path(video).with_suffix(".json").read_text())
            spans += [(s["category"], offset + s["start"], offset + s["end"]) for s in truth["scenes"]]
            offset += truth["num_samples"] / truth["sample_rate"]
        scenes[story.id] = spans
    return scenes


def main_category(scenes: list[tuple[str, float, float]], start: float = 0.0, end: float = math.inf) -> str:
    """The category heard longest between ``start`` and ``end`` seconds (the first of a tie)."""
    seconds: dict[str, float] = {}
    for category, a, b in scenes:
        overlap = min(b, end) - max(a, start)
        if overlap > 0:
            seconds[category] = seconds.get(category, 0.0) + overlap
    if not seconds:
        raise ValueError(f"no scene lies between {start} and {end} s")
    return max(seconds, key=seconds.__getitem__)


def category_precision(
    queries: list[tuple[str, list[str]]], library: dict[str, str], bootstrap: int, seed: int = 0
) -> dict[str, Any]:
    """Precision@k of recommendations by category: ``queries`` holds each query's category and the ids of the clips
    recommended for it, ``library`` every library clip's category. A recommended clip counts when its category is
    the query's. Beside it, a random draw from the library: its expected precision for a query is the library's
    share of the query's category. Both in %, with 95% percentile bootstrap intervals over the queries."""
    import numpy as np

    from sound_of_story.metrics.bootstrap import bootstrap_index_blocks, percentile_interval

    if not queries or not all(clips for _, clips in queries):
        raise ValueError("category_precision needs at least one query, each with recommended clips")
    unknown = sorted({clip for _, clips in queries for clip in clips} - set(library))
    if unknown:
        raise ValueError(f"recommended clips not in the library: {', '.join(unknown[:5])}")
    counts: dict[str, int] = {}
    for category in library.values():
        counts[category] = counts.get(category, 0) + 1
    shares = {category: n / len(library) for category, n in sorted(counts.items())}
    hits = np.array([np.mean([library[c] == category for c in clips]) for category, clips in queries]) * 100
    chance = np.array([shares.get(category, 0.0) for category, _ in queries]) * 100
    figures: dict[str, Any] = {}
    for name, values in (("recommended", hits), ("random", chance)):
        resampled = np.concatenate(
            [values[i].mean(axis=1) for i in bootstrap_index_blocks(len(values), bootstrap, seed)]
        )
        low, high = percentile_interval(resampled)
        figures[name] = {"value": float(values.mean()), "ci_low": low, "ci_high": high}
    return {
        **figures,
        "query_categories": [c for c, _ in queries],
        "per_query": hits.tolist(),
        "library_shares": shares,
    }


def recommend_for_stories(
    paths: DemoPaths, plan: DemoPlan, stories: Any, slices: Any, progress: bool
) -> dict[str, Any]:
    """The top five library sounds for the frames of every held-out story (`SoundLibraryIndex`), scored by whether
    they share the story's main scene category (`category_precision`); the first three are shown in the report."""
    import shutil

    from sound_of_story.recommendation import SoundLibraryIndex

    files = write_library(paths, slices)
    if paths.library_index.exists():  # an index of an earlier run's model: the model is new, so is the index
        shutil.rmtree(paths.library_index)
    index, _ = SoundLibraryIndex.build(
        paths.library, str(paths.retrieval_model), paths.library_index, progress=progress
    )
    truth = story_scene_categories(paths.samples, plan.lsmdc_story_s)
    train = slices["train"].select_columns(["id", "story_id", "start", "end"])
    by_slice = {row["id"]: main_category(truth[row["story_id"]], row["start"], row["end"]) for row in train}
    library = {name: by_slice[slice_id] for name, slice_id in files.items()}  # by the index's clip ids
    test = stories["test"].sort("id")
    queries = []
    for row in test.select_columns(["id", "text", "frames"]):
        found = index.recommend(frames=row["frames"], top_k=RECOMMENDATION_TOP_K)
        recommendations = [{**r.to_dict(), "category": library[r.clip_id]} for r in found]
        queries.append(
            {"story": row["id"], "text": row["text"], "category": main_category(truth[row["id"]]),
             "recommendations": recommendations}
        )  # fmt: skip
    precision = category_precision(
        [(q["category"], [r["clip_id"] for r in q["recommendations"]]) for q in queries], library, plan.bootstrap
    )
    return {
        "library_clips": len(files),
        "top_k": RECOMMENDATION_TOP_K,
        "precision": precision,
        "library_categories": library,
        "queries": queries[:NUM_RECOMMENDATION_STORIES],
    }


# --------------------------------------------------------------------------- orchestration


# What `--pretrained` loads by Hub id, each with a file every snapshot of it has.
PRETRAINED_CHECKPOINTS = (
    (model_ids.CLIP, "config.json"),
    (model_ids.AST, "config.json"),
    (model_ids.RIFFUSION, "model_index.json"),
)


def pretrained_checkpoints_missing_from_cache() -> list[str]:
    """The Hub ids of `--pretrained` that the hub cache (HF_HUB_CACHE) does not hold: what an offline run lacks."""
    from huggingface_hub import try_to_load_from_cache

    return [
        hub_id
        for hub_id, filename in PRETRAINED_CHECKPOINTS
        if not isinstance(try_to_load_from_cache(hub_id, filename), str)
    ]


def run_demo(
    out_dir: str | Path,
    minutes: float = DEFAULT_MINUTES,
    pretrained: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every stage into ``out_dir`` and write the report; returns the report's data (``report.json``)."""
    from .report import add_run_summary, build_demo_report, write_report

    plan = DemoPlan.for_minutes(minutes)
    if pretrained:
        from huggingface_hub import constants

        missing = pretrained_checkpoints_missing_from_cache() if constants.HF_HUB_OFFLINE else []
        if missing:
            raise ValueError(
                f"--pretrained needs {', '.join(missing)}, which HF_HUB_OFFLINE=1 forbids downloading and the hub cache "
                f"({constants.HF_HUB_CACHE}) does not hold: unset HF_HUB_OFFLINE, point HF_HUB_CACHE at a cache that "
                "has them (`sound-of-story stand-ins --hub-cache DIR` writes full-size random stand-ins), or drop "
                "--pretrained"
            )
    paths = DemoPaths(Path(out_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    stages = [
        "sample clips",
        "build SoS",
        "retrieval training",
        "Table 2",
        "SoSgen training",
        "Table 3",
        "recommendation",
        "report",
    ]
    clock = StageClock(stages, plan.minutes, progress)
    settings = {**asdict(plan), "seed": seed, "pretrained": pretrained}
    data: dict[str, Any] = {"settings": {**settings, "encoder_width": None if pretrained else DEMO_ENCODER_WIDTH}}

    counts = clock.run("sample clips", lambda: make_samples(paths, plan, seed, progress))
    built = clock.run("build SoS", lambda: build_sos(paths, plan, progress))
    data["dataset"] = {
        "sample_clips": counts,
        **dataset_statistics(built["stories"], built["slices"], len(built["report"].failures)),
    }

    # The random text encoders' tokenizer, learnt from the training stories (CLIP's own with --pretrained).
    tokenizer = None if pretrained else train_story_tokenizer(built["stories"]["train"]["text"])

    def retrieval_training() -> dict[str, Any]:
        init = save_initial_retrieval_model(paths, pretrained, seed, tokenizer)
        return {
            pair: train_retrieval_pair(paths, plan, pair, init, folder, seed, pretrained)
            for pair, folder in (("audio-video", paths.retrieval_model), ("audio-text", paths.retrieval_text_model))
        }

    data["retrieval_training"] = clock.run("retrieval training", retrieval_training)
    # The similarity's pooling temperature of the models trained here (the demo's own, or X-CLIP's with --pretrained).
    from sound_of_story.modeling import SoSRetrievalConfig

    data["settings"]["similarity_temperature"] = SoSRetrievalConfig.from_pretrained(paths.init_retrieval).temperature
    trained = {"audio-video": paths.retrieval_model, "audio-text": paths.retrieval_text_model}
    untrained = {"audio-video": paths.init_retrieval, "audio-text": paths.init_retrieval}
    data["table2"] = clock.run(
        "Table 2",
        lambda: evaluate_retrieval_models(
            {"trained": trained, "untrained": untrained}, built["stories"], plan, paths, progress
        ),
    )
    data["table2_beats_random"] = beats_random(data["table2"])

    def sosgen_training() -> dict[str, Any]:
        base, image_encoder = save_initial_pipelines(paths, pretrained, tokenizer)
        text = train_sosgen_mode(
            paths, plan, "text", base, image_encoder, paths.sosgen_text, plan.sosgen_steps, seed, pretrained
        )
        controlnet = train_sosgen_mode(
            paths,
            plan,
            "controlnet",
            str(paths.sosgen_text),
            image_encoder,
            paths.sosgen_controlnet,
            plan.controlnet_steps,
            seed,
            pretrained,
        )
        return {"text": text, "controlnet": controlnet}

    data["sosgen_training"] = clock.run("SoSgen training", sosgen_training)
    pipelines = (
        [paths.init_sosgen, paths.sosgen_text, paths.sosgen_controlnet]
        if not pretrained
        else [paths.sosgen_text, paths.sosgen_controlnet]
    )

    def table3() -> dict[str, Any]:
        table = generation_table(paths, plan, pipelines, progress)
        data["scene_categories"] = scene_category_scores(paths, plan, built["slices"], pipelines, plan.bootstrap)
        return table

    data["table3"] = clock.run("Table 3", table3)
    data["generation_text_tokens"] = prompt_text_tokens(paths.sosgen_text)
    data["generation_band"] = generation_band(paths.sosgen_text)
    data["recommendation"] = clock.run(
        "recommendation", lambda: recommend_for_stories(paths, plan, built["stories"], built["slices"], progress)
    )
    report = clock.run("report", lambda: build_demo_report(data, built, paths))
    data["seconds"] = {**clock.seconds, "total": clock.elapsed_s}
    clock.close()
    add_run_summary(report, data)  # shown first; it needs every stage's time, the report's own included
    written = write_report(report, paths.root)
    print(f"report: {written['html']} (self-contained), {written['markdown']}, {written['json']}")
    return data


__all__ = [
    "DEFAULT_MINUTES",
    "DemoPaths",
    "DemoPlan",
    "beats_random",
    "dataset_statistics",
    "run_demo",
    "table2_entry",
]
