"""The demo's report: one self-contained ``report.html``, a ``report.md`` and a ``report.json``.

The first half of this module is the report format (blocks, pictures, the HTML and Markdown writers); the second
half, :func:`build_demo_report`, fills a report with the demo's sections from the run's figures and media.

A report is a list of sections, each a list of blocks (paragraphs, tables, images, audio clips).
The HTML embeds every image and clip as a ``data:`` URI, so the one file can be mailed or opened
offline; the Markdown links the same files, written next to it into ``report_files/``; the JSON holds
the figures for scripts (whatever the caller puts into ``Report.data``).

The pictures are drawn here too (matplotlib, no display): spectrograms of audio, training curves,
and strips of story frames.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sound_of_story.core.atomic_files import atomic_path, write_json_atomic

if TYPE_CHECKING:
    from .demo import DemoPaths

HTML_NAME = "report.html"
MARKDOWN_NAME = "report.md"
JSON_NAME = "report.json"
FILES_FOLDER = "report_files"
PAPER_DIRECTIONS = ("A2V", "V2A", "A2T", "T2A")
RANDOM_LABEL = "RANDOM weights"
VGGISH_RANDOM_LABEL = "VGGish with random weights (no download offline): distances compare runs of this report only"
# Clips in the report are cut and resampled so that the HTML stays a few MB.
REPORT_AUDIO_SECONDS = 10.0
REPORT_AUDIO_RATE = 16_000


@dataclass
class Paragraph:
    """A paragraph of text; ``**bold**`` and `` `code` `` are rendered in HTML as in Markdown."""

    text: str


@dataclass
class Table:
    """A table: ``rows`` hold strings or numbers (numbers are shown with ``digits`` decimals)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""
    digits: int = 1


@dataclass
class Image:
    """A PNG image with a caption; ``name`` is its file name in ``report_files/`` (made unique)."""

    png: bytes
    caption: str
    name: str = "image"


@dataclass
class AudioClip:
    """A WAV clip with a caption, shown as an ``<audio>`` player next to its spectrogram (when given)."""

    wav: bytes
    caption: str
    name: str = "clip"
    spectrogram_png: bytes | None = None


@dataclass
class Gallery:
    """Blocks shown side by side in the HTML (one after the other in the Markdown)."""

    items: Sequence[Image | AudioClip]
    caption: str = ""


Block = Paragraph | Table | Image | AudioClip | Gallery


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Section:
        self.blocks.extend(blocks)
        return self


@dataclass
class Report:
    """What `write_report` writes: a title, sections in order, and ``data`` for ``report.json``."""

    title: str
    sections: list[Section] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def section(self, title: str) -> Section:
        section = Section(title)
        self.sections.append(section)
        return section


# --------------------------------------------------------------------------- media


def wav_bytes(
    audio: Any,
    sample_rate: int,
    max_seconds: float | None = REPORT_AUDIO_SECONDS,
    target_rate: int | None = REPORT_AUDIO_RATE,
) -> bytes:
    """``(channels, samples)`` or ``(samples,)`` float audio as 16-bit mono WAV bytes, cut to ``max_seconds`` and
    resampled to ``target_rate`` (only downwards), so that an embedded clip stays small."""
    import soundfile

    from sound_of_story.audio import resample, to_mono

    mono = to_mono(audio)
    if max_seconds is not None:
        mono = mono[: int(round(max_seconds * sample_rate))]
    if target_rate is not None and sample_rate > target_rate:
        mono = resample(mono[None], sample_rate, target_rate)[0]
        sample_rate = target_rate
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(mono, -1.0, 1.0), int(sample_rate), subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def _figure_png(figure: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display; never opens a window
    import matplotlib.pyplot as plt

    return plt


def spectrogram_png(
    audio: Any, sample_rate: int, title: str = "", max_seconds: float | None = REPORT_AUDIO_SECONDS
) -> bytes:
    """A log-power spectrogram (dB, 0 to ``sample_rate / 2`` Hz) of the mono mix as a small PNG."""
    from sound_of_story.audio import to_mono

    plt = _pyplot()
    mono = to_mono(audio)
    if max_seconds is not None:
        mono = mono[: int(round(max_seconds * sample_rate))]
    nfft = 512 if sample_rate >= 16_000 else 256
    figure, axes = plt.subplots(figsize=(4.0, 1.8))
    # A faint fixed dither keeps every bin's power above zero: silent stretches (a generated clip can be silent)
    # otherwise give log10(0), a warning and -inf pixels.
    dither = 1e-9 * np.random.default_rng(0).standard_normal(len(mono))
    axes.specgram(
        np.asarray(mono, dtype=np.float64) + dither,
        NFFT=nfft,
        Fs=sample_rate,
        noverlap=nfft // 2,
        cmap="magma",
        scale="dB",
    )
    axes.set_xlabel("s", fontsize=7)
    axes.set_ylabel("Hz", fontsize=7)
    axes.tick_params(labelsize=6)
    if title:
        axes.set_title(title, fontsize=8)
    return _figure_png(figure)


def curves_png(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str = "",
    log_y: bool = False,
) -> bytes:
    """Line plots of ``{label: (x, y)}`` on one small chart (a training curve)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(4.2, 2.4))
    for label, (x, y) in curves.items():
        axes.plot(list(x), list(y), label=label, linewidth=1.2)
    axes.set_xlabel(xlabel, fontsize=8)
    axes.set_ylabel(ylabel, fontsize=8)
    if log_y:
        axes.set_yscale("log")
    axes.tick_params(labelsize=7)
    axes.grid(alpha=0.3)
    if len(curves) > 1:
        axes.legend(fontsize=7)
    if title:
        axes.set_title(title, fontsize=9)
    return _figure_png(figure)


def frames_png(frames: Sequence[Any], height: int = 72, max_frames: int = 8) -> bytes:
    """A strip of up to ``max_frames`` images (PIL or arrays), evenly chosen, each ``height`` pixels tall."""
    from PIL import Image as PILImage

    if not frames:
        raise ValueError("frames_png needs at least one frame")
    chosen = [frames[round(i)] for i in np.linspace(0, len(frames) - 1, min(max_frames, len(frames)))]
    pictures = [
        (f if isinstance(f, PILImage.Image) else PILImage.fromarray(np.asarray(f))).convert("RGB") for f in chosen
    ]
    pictures = [p.resize((max(1, round(p.width * height / p.height)), height)) for p in pictures]
    strip = PILImage.new("RGB", (sum(p.width for p in pictures) + 4 * (len(pictures) - 1), height), "white")
    x = 0
    for picture in pictures:
        strip.paste(picture, (x, 0))
        x += picture.width + 4
    buffer = io.BytesIO()
    strip.save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------- rendering


def format_cell(value: Any, digits: int = 1) -> str:
    """A table cell: floats with ``digits`` decimals (NaN as "n/a"), everything else as ``str``."""
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _inline_html(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0}
figure{display:inline-block;margin:.4em 1em .8em 0;vertical-align:top}figcaption{font-size:.8em;color:#555;max-width:420px}
audio{display:block;width:320px;margin-top:.3em}code{background:#f3f3f3;padding:0 .2em}.gallery{margin:.5em 0}
"""


def _figure_html(block: Image | AudioClip) -> str:
    parts = ["<figure>"]
    if isinstance(block, Image):
        parts.append(f'<img src="{_data_uri("image/png", block.png)}" alt="{html.escape(block.caption)}">')
    else:
        if block.spectrogram_png is not None:
            parts.append(
                f'<img src="{_data_uri("image/png", block.spectrogram_png)}" alt="spectrogram: {html.escape(block.caption)}">'
            )
        parts.append(f'<audio controls preload="none" src="{_data_uri("audio/wav", block.wav)}"></audio>')
    parts.append(f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>")
    return "".join(parts)


def _block_html(block: Block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{_inline_html(block.text)}</p>"
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in block.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(format_cell(v, block.digits))}</td>" for v in row) + "</tr>"
            for row in block.rows
        )
        caption = f"<caption>{_inline_html(block.caption)}</caption>" if block.caption else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Gallery):
        caption = f"<p>{_inline_html(block.caption)}</p>" if block.caption else ""
        return f'<div class="gallery">{caption}{"".join(_figure_html(item) for item in block.items)}</div>'
    return _figure_html(block)


def render_html(report: Report) -> str:
    """The whole report as one HTML page with every image and clip embedded."""
    sections = "".join(
        f"<section><h2>{html.escape(s.title)}</h2>{''.join(_block_html(b) for b in s.blocks)}</section>"
        for s in report.sections
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(report.title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{html.escape(report.title)}</h1>{sections}</body></html>\n"
    )


class _MediaFiles:
    """Gives each image or clip of the Markdown a unique file name in ``report_files/`` and remembers its bytes."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def add(self, name: str, suffix: str, data: bytes) -> str:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "file"
        candidate, n = f"{stem}{suffix}", 1
        while candidate in self.files:
            n += 1
            candidate = f"{stem}_{n}{suffix}"
        self.files[candidate] = data
        return f"{FILES_FOLDER}/{candidate}"


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _block_markdown(block: Block, media: _MediaFiles) -> str:
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Table):
        lines = [f"**{block.caption}**", ""] if block.caption else []
        lines.append("| " + " | ".join(_markdown_cell(str(c)) for c in block.columns) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(block.columns) - 1)) + "|")
        lines += [
            "| " + " | ".join(_markdown_cell(format_cell(v, block.digits)) for v in row) + " |" for row in block.rows
        ]
        return "\n".join(lines)
    if isinstance(block, Gallery):
        items = [_block_markdown(item, media) for item in block.items]
        return "\n\n".join(([block.caption] if block.caption else []) + items)
    if isinstance(block, Image):
        return f"![{block.caption}]({media.add(block.name, '.png', block.png)})  \n*{block.caption}*"
    lines = []
    if block.spectrogram_png is not None:
        lines.append(f"![spectrogram: {block.caption}]({media.add(block.name, '.png', block.spectrogram_png)})  ")
    lines.append(f"[{block.caption} (WAV)]({media.add(block.name, '.wav', block.wav)})")
    return "\n".join(lines)


def render_markdown(report: Report) -> tuple[str, dict[str, bytes]]:
    """The report as Markdown and the media files it links (``{file name in report_files/: bytes}``)."""
    media = _MediaFiles()
    parts = [f"# {report.title}"]
    for section in report.sections:
        parts.append(f"## {section.title}")
        parts += [_block_markdown(b, media) for b in section.blocks]
    return "\n\n".join(parts) + "\n", media.files


def write_report(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` (+ ``report_files/``) and ``report.json`` into ``out_dir``, each atomically.

    Returns ``{"html": path, "markdown": path, "json": path}``.
    """
    out_dir = Path(out_dir)
    (out_dir / FILES_FOLDER).mkdir(parents=True, exist_ok=True)
    markdown, files = render_markdown(report)
    for name, data in files.items():
        with atomic_path(out_dir / FILES_FOLDER / name) as tmp:
            tmp.write_bytes(data)
    paths = {"html": out_dir / HTML_NAME, "markdown": out_dir / MARKDOWN_NAME, "json": out_dir / JSON_NAME}
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(markdown, encoding="utf-8")
    with atomic_path(paths["html"]) as tmp:
        tmp.write_text(render_html(report), encoding="utf-8")
    write_json_atomic(paths["json"], report.data)
    return paths


# --------------------------------------------------------------------------- the demo report


def build_demo_report(data: dict[str, Any], built: dict[str, Any], paths: DemoPaths) -> Report:
    """The demo report's sections from the run's figures and media (decoding the clips, drawing the figures).

    The run summary is added last by :func:`add_run_summary`, once every stage's time is known.
    """
    from sound_of_story.evaluation.retrieval import RANDOM_BASELINE_DRAWS

    report = Report("Sound of Story: the demo", data=data)
    stats = data["dataset"]
    rows = [
        [split, s["stories"], ", ".join(f"{k} {v}" for k, v in s["by_source"].items()), s["mean_story_s"], s["mean_key_frames"],
         s["speech_ratio_before"], s["speech_ratio_after"], s["generation_slices"]]
        for split, s in stats["splits"].items()
    ]  # fmt: skip
    report.section("Data: SoS built from the sample clips").add(
        Paragraph(f"Sample clips: {', '.join(f'{v} {k.upper()}-style' for k, v in stats['sample_clips'].items())}; {stats['failed_inputs']} inputs failed."),
        Table(
            ["split", "stories", "by source", "mean length (s)", "mean key frames", "speech ratio before", "after", "15 s slices"],
            rows, caption="Dataset statistics (like the paper's Table 1)", digits=2,
        ),
    )  # fmt: skip
    table2 = data["table2"]
    head = ["model"] + [f"{d} {f}" for d in PAPER_DIRECTIONS for f in ("R@1", "R@5", "MdR")]
    table_rows = []
    for name, label in (
        ("random", f"random baseline (mean of {RANDOM_BASELINE_DRAWS} draws)"),
        ("untrained", f"SoS, {RANDOM_LABEL} (before training)"),
        ("trained", "SoS, trained here"),
    ):
        cells = [label]
        for direction in PAPER_DIRECTIONS:
            for figure in ("R@1", "R@5", "MdR"):
                entry = table2[name].get(direction, {}).get(figure)
                cells.append(
                    "n/a" if entry is None else f"{entry['value']:.1f} [{entry['ci_low']:.1f}, {entry['ci_high']:.1f}]"
                )
        table_rows.append(cells)
    a2v = table2["trained"]["A2V"]["R@1"]
    rand = table2["random"]["A2V"]["R@1"]
    verdict = "lies above" if data["table2_beats_random"] else "does NOT lie above"
    section = report.section("Retrieval (Table 2)")
    section.add(
        Table(
            head,
            table_rows,
            caption=f"Retrieval on {stats['splits']['test']['stories']} held-out stories: value [95% bootstrap interval]",
        ),
        Paragraph(
            f"The trained model's A2V R@1 interval [{a2v['ci_low']:.1f}, {a2v['ci_high']:.1f}] {verdict} the random baseline's [{rand['ci_low']:.1f}, {rand['ci_high']:.1f}]."
        ),
    )
    section.add(
        Image(
            curves_png(_loss_curves(data["retrieval_training"]), "step", "contrastive loss", "Retrieval training"),
            "Training loss per step",
            "retrieval_loss",
        )
    )
    _generation_section(report, data, built, paths)
    _recommendation_section(report, data, built, paths)
    return report


def add_run_summary(report: Report, data: dict[str, Any]) -> None:
    """Put the "This run" section (settings and the time of every stage, from ``data["seconds"]``) first."""
    settings = data["settings"]
    weights = (
        "the paper's CLIP and AST (--pretrained; from the random-weight stand-ins of `sound-of-story stand-ins` "
        "nothing can be learnt, and every figure below then measures cost and shapes only)"
        if settings["pretrained"]
        else f"{settings['encoder_width']}-wide CLIP and AST initialised in code with RANDOM weights; the image and audio "
        "towers kept frozen, their head (temporal encoder, audio projection, logit scale) and, for audio-text, the "
        f"text tower (at lr {settings['retrieval_text_encoder_lr']:g}) trained here"
    )
    weights += f"; similarity pooled at temperature {settings['similarity_temperature']:g} (X-CLIP's code: 0.01)"
    summary = Section("This run").add(
        Paragraph(
            f"Everything below was computed in this run ({data['seconds']['total'] / 60:.1f} min, budget {settings['minutes']:g} min) "
            f"on sample clips generated with seed {settings['seed']}. Retrieval models: {weights}."
        ),
        Table(["stage", "seconds"], [[k, v] for k, v in data["seconds"].items()], caption="Time per stage"),
    )
    report.sections.insert(0, summary)


def _loss_curves(trainings: dict[str, dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    return {name: (list(range(1, len(t["losses"]) + 1)), t["losses"]) for name, t in trainings.items()}


def _decoded(value: Any) -> tuple[Any, int]:
    from sound_of_story.audio import channels_first, decoded_audio

    array, rate = decoded_audio(value)
    return channels_first(array), rate


def _clip_block(audio: Any, rate: int, caption: str, name: str) -> AudioClip:
    return AudioClip(wav_bytes(audio, rate), caption, name, spectrogram_png(audio, rate))


def _generation_section(report: Any, data: dict[str, Any], built: dict[str, Any], paths: DemoPaths) -> None:
    from sound_of_story.audio import read_audio_file
    from sound_of_story.recommendation import printable

    section = report.section("Generation (Table 3)")
    table3 = data["table3"]
    tokens_note = (
        ""
        if data["settings"]["pretrained"]
        else " (a word-level tokenizer learnt from the training stories: about one token a word)"
    )
    band = data["generation_band"]
    labels = {
        paths.init_sosgen.name: f"SoSgen, {RANDOM_LABEL} (before training)",
        paths.sosgen_text.name: "SoSgen (text), trained here",
        paths.sosgen_controlnet.name: "SoSgen ControlNet (text + frames), trained here",
    }
    rows = []
    for name, row in table3.items():
        cells = [labels.get(name, printable(name))]
        for key in ("FAD", "KAD"):
            ci = row.get(f"{key}_ci")
            cells.append(f"{row[key]:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""))
        rows.append(cells + [row["num_generated"], len(row["excluded"])])
    section.add(
        Table(["pipeline", "FAD", "KAD", "clips", "excluded"], rows, caption="Generated against real held-out slices: value [95% bootstrap interval]; lower is better"),
        Paragraph(f"Embedder: {VGGISH_RANDOM_LABEL}. SoSgen's text encoder reads the first {data['generation_text_tokens']} tokens of each description{tokens_note}; the rest is cut."),
        Paragraph(f"Band: SoSgen makes {band['sample_rate'] / 1000:g} kHz audio from mel bins of {band['min_frequency']:g}-{band['max_frequency']:g} Hz; the real slices are 44.1 kHz. FAD and KAD compare both as VGGish hears them: resampled to 16 kHz, mel bands of 125-7500 Hz."),
        Image(curves_png(_loss_curves(data["sosgen_training"]), "step", "denoising loss", "SoSgen training"), "Training loss per step", "sosgen_loss"),
    )  # fmt: skip
    if "scene_categories" in data:
        _scene_category_table(section, data["scene_categories"], labels)
    test = built["slices"]["test"]
    for row in test.select(range(min(2, len(test)))):
        audio, rate = _decoded(row["audio"])
        slice_id = printable(row["id"])
        items = [_clip_block(audio, rate, f"real slice {slice_id}", f"real_{slice_id}")]
        for name in table3:
            wav = paths.generated / name / "audio" / f"{row['id']}.wav"
            if wav.is_file():
                generated, generated_rate = read_audio_file(wav)
                items.append(
                    _clip_block(generated, generated_rate, labels.get(name, printable(name)), f"{name}_{slice_id}")
                )
        section.add(Gallery(items, caption=f"Held-out slice {slice_id}: “{printable(row['text'][:160])}”"))


def _scene_category_table(section: Any, info: dict[str, Any], labels: dict[str, str]) -> None:
    """Do the frames steer the sound: how often each scene heard in a slice is recognised as its category."""
    from sound_of_story.recommendation import printable

    def interval(entry: dict[str, float]) -> str:
        return f"{entry['value']:.1f} [{entry['ci_low']:.1f}, {entry['ci_high']:.1f}]"

    scores = info["scores"]
    rows = [[labels.get(name, printable(name)), interval(entry), entry["spans"]] for name, entry in scores.items()]
    rows.append([f"chance (a uniform guess over {info['categories']} categories)", f"{info['chance']:.1f}", ""])
    section.add(
        Paragraph(
            "Is each scene of a slice heard as its category? A classifier of the scene category (rain, sea, fire, ...; "
            "the sample clips' ground truth) is fitted on the real training slices' audio, one example per scene span "
            "of at least 1 s (log-mel bands at 16 kHz: each band's level relative to the span's, its spread and its "
            "change; a logistic regression), and names the category of each such span of the held-out slices of the "
            "table above, real and generated. The paper's claim that frames help (Table 3) would show as the "
            "ControlNet above the text-only model."
        ),
        Table(
            ["audio", "spans recognised (%)", "spans"],
            rows,
            caption="Scene spans recognised as their category: value [95% bootstrap interval over slices]",
        ),
    )
    if info.get("band_profiles"):
        profile_rows = [
            [labels.get(name, printable(name)), f"{p['correlation']:.2f}", f"{p['mean_abs_db']:.1f}"]
            for name, p in info["band_profiles"].items()
        ]
        section.add(
            Paragraph(
                "What the generated sound reproduces of the real slices: the energy distribution over the bands "
                "(each band's mean level relative to the clip's, averaged over the same held-out slices), compared "
                "with the real slices' (correlation over the 32 bands of 125-7500 Hz, and the mean difference)."
            ),
            Table(["audio", "band profile: correlation with the real slices", "mean difference (dB)"], profile_rows),
        )


def _recommendation_section(report: Any, data: dict[str, Any], built: dict[str, Any], paths: DemoPaths) -> None:
    from sound_of_story.audio import read_audio_file
    from sound_of_story.recommendation import printable  # ids come from file names

    section = report.section("Recommendation")
    info = data["recommendation"]
    precision = info["precision"]
    k, num_queries = info["top_k"], len(precision["per_query"])

    def interval(entry: dict[str, float]) -> str:
        return f"{entry['value']:.1f} [{entry['ci_low']:.1f}, {entry['ci_high']:.1f}]"

    section.add(
        Paragraph(
            f"Library: the {info['library_clips']} training slices; model: the audio-video retrieval model trained above. "
            f"Each of the {num_queries} held-out stories' key frames query the library. A recommended slice fits when "
            "its scene category (the sample clips' ground truth: the category heard longest in the slice) is the "
            "story's (the one heard longest in the story); the model never sees the categories."
        ),
        Table(
            ["recommendations", f"precision@{k} (%)"],
            [
                ["the retrieval model's top 5", interval(precision["recommended"])],
                ["a random draw from the library (expected)", interval(precision["random"])],
            ],
            caption=f"Recommended sounds that share the story's scene category, over {num_queries} held-out stories: "
            "value [95% bootstrap interval]",
        ),
    )
    stories = built["stories"]["test"]
    positions = {sid: i for i, sid in enumerate(stories["id"])}
    for query in info["queries"]:
        row = stories[positions[query["story"]]]
        story = printable(query["story"])
        section.add(
            Image(
                frames_png(row["frames"]),
                f"Held-out story {story}: its key frames (the query); its scene category: {query['category']}",
                f"query_{story}",
            ),
            Table(
                ["rank", "library clip", "category", "score"],
                [
                    [
                        r["rank"],
                        printable(r["clip_id"]),
                        r["category"] + ("" if r["category"] == query["category"] else " (other)"),
                        r["score"],
                    ]
                    for r in query["recommendations"]
                ],
                digits=3,
            ),
        )
        clips = []
        for r in query["recommendations"]:
            audio, rate = read_audio_file(r["path"])
            caption = f"#{r['rank']} {printable(r['clip_id'])} ({r['category']})"
            clips.append(_clip_block(audio, rate, caption, f"rec_{story}_{r['rank']}"))
        section.add(Gallery(clips))


__all__ = [
    "add_run_summary",
    "build_demo_report",
    "AudioClip",
    "Gallery",
    "Image",
    "Paragraph",
    "Report",
    "Section",
    "Table",
    "curves_png",
    "format_cell",
    "frames_png",
    "render_html",
    "render_markdown",
    "spectrogram_png",
    "wav_bytes",
    "write_report",
]
