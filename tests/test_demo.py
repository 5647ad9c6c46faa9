"""The demo (`make demo`): its report writer, and a reduced run whose report is checked against the data."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sound_of_story.app.report import (
    AudioClip,
    Gallery,
    Image,
    Paragraph,
    Report,
    Table,
    curves_png,
    frames_png,
    spectrogram_png,
    wav_bytes,
    write_report,
)

CLI = Path(sys.executable).with_name("sound-of-story")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _data_uris(page: str, mime: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(rf'src="data:{re.escape(mime)};base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_is_self_contained_and_markdown_links_the_same_media(tmp_path):
    rate = 44_100
    t = np.arange(rate * 12) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    wav = wav_bytes(np.stack([tone, tone]), rate)
    audio, wav_rate = sf.read(io.BytesIO(wav))
    # Cut to 10 s, resampled to 16 kHz mono; the tone survives (its spectral peak stays at 440 Hz).
    assert wav_rate == 16_000 and audio.ndim == 1 and len(audio) == 160_000
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * wav_rate / len(audio) - 440) < 2
    report = Report(
        "A <test> report",
        data={"table2": {"trained": {"A2V": {"R@1": {"value": 50.0, "ci_low": 25.0, "ci_high": 75.0}}}}},
    )
    report.section("Numbers").add(
        Paragraph("Some **bold** and `code` with a <tag>."),
        Table(["model", "R@1", "note"], [["trained", 50.0, "a|b"], ["random", float("nan"), ""]], caption="Table"),
    )
    spectrogram = spectrogram_png(tone, rate, "tone")
    report.section("Media").add(
        Image(curves_png({"loss": ([1, 2, 3], [3.0, 2.0, 1.0])}, "step", "loss"), "curve", "curve"),
        Gallery(
            [AudioClip(wav, "tone A", "tone", spectrogram), AudioClip(wav, "tone B", "tone")], caption="two players"
        ),
        Image(frames_png([np.full((90, 160, 3), 200, np.uint8)] * 3), "frames", "frames"),
    )
    paths = write_report(report, tmp_path)
    page = paths["html"].read_text()
    assert "http://" not in page and "https://" not in page  # nothing to fetch: every medium is inline
    assert "A &lt;test&gt; report" in page and "<strong>bold</strong>" in page and "&lt;tag&gt;" in page
    assert _data_uris(page, "audio/wav") == [wav, wav]
    pngs = _data_uris(page, "image/png")
    assert len(pngs) == 3 and all(p.startswith(PNG_MAGIC) for p in pngs) and spectrogram in pngs
    assert "<td>50.0</td>" in page and "<td>n/a</td>" in page
    markdown = paths["markdown"].read_text()
    assert "| trained | 50.0 | a\\|b |" in markdown
    linked = re.findall(r"\]\((report_files/[^)]+)\)", markdown)
    assert sorted(Path(p).suffix for p in linked) == [".png"] * 3 + [".wav"] * 2
    assert len(set(linked)) == 5  # two clips named "tone" get distinct files
    assert {(tmp_path / p).read_bytes() for p in linked if p.endswith(".wav")} == {wav}
    assert json.loads(paths["json"].read_text()) == report.data


# --------------------------------------------------------------------------- the reduced demo run


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    from demo_fixtures import run_quick_demo

    cwd, result = run_quick_demo(tmp_path_factory)
    assert result.returncode == 0, result.stderr[-4000:]
    return cwd / "demo_quick", result


def test_plan_holds_out_24_stories_in_15_minutes_and_rejects_a_bad_budget(tmp_path):
    from sound_of_story.app.demo import DemoPlan

    full, quick = DemoPlan.for_minutes(15), DemoPlan.for_minutes(1)
    assert full.test_stories >= 24 and full.cmd_clips % 2 == 0
    assert quick.test_stories < full.test_stories and quick.retrieval_epochs < full.retrieval_epochs
    assert quick.retrieval_text_epochs < full.retrieval_text_epochs
    result = subprocess.run(
        [str(CLI), "demo", "--out", str(tmp_path), "--minutes", "0"], capture_output=True, text=True, timeout=120
    )
    assert (
        result.returncode == 2 and "--minutes must be at least" in result.stderr and "Traceback" not in result.stderr
    )


def test_pretrained_sosgen_accumulates_the_demo_batch_one_window_a_pass_with_checkpointing(tmp_path):
    """At full size one pass of the demo's four windows would save about 126 GB of activations (docs/training.md,
    "Paper size"); --pretrained makes the same update from four checkpointed passes of one window."""
    from sound_of_story.app.demo import SOSGEN_DEMO_BATCH, DemoPaths, DemoPlan, sosgen_training_arguments

    plan, paths = DemoPlan.for_minutes(1), DemoPaths(tmp_path)
    common = dict(mode="text", base="init", image_encoder="enc", out_dir=tmp_path / "t", steps=3, seed=0)
    tiny = sosgen_training_arguments(paths, plan, pretrained=False, **common)
    full = sosgen_training_arguments(paths, plan, pretrained=True, **common)
    assert (tiny.train_batch_size, tiny.gradient_accumulation_steps, tiny.gradient_checkpointing) == (4, 1, False)
    assert (full.train_batch_size, full.gradient_accumulation_steps, full.gradient_checkpointing) == (1, 4, True)
    assert SOSGEN_DEMO_BATCH == 4 and full.max_train_steps == tiny.max_train_steps == 3
    assert full.learning_rate == tiny.learning_rate == plan.sosgen_lr


def test_spectrogram_of_silence_draws_without_warnings():
    import warnings

    import numpy as np

    from sound_of_story.app.report import spectrogram_png

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # log10(0) on a silent clip used to warn (and draw -inf pixels)
        png = spectrogram_png(np.zeros((2, 8000), dtype=np.float32), 8000, title="silence")
    assert png.startswith(b"\x89PNG") and len(png) > 1000


def test_sample_jobs_cover_the_plan_in_parts_of_whole_movie_pairs():
    from sound_of_story.app.demo import CMD_CLIPS_PER_JOB, DemoPlan, sample_jobs

    for minutes in (1, 15, 45):
        plan = DemoPlan.for_minutes(minutes)
        jobs = sample_jobs(plan)
        assert jobs[0].style == "lsmdc" and jobs[0].num_clips == plan.lsmdc_clips and jobs[0].first_movie == 0
        cmd = jobs[1:]
        assert {job.style for job in cmd} == {"cmd"} and len({job.folder for job in jobs}) == len(jobs)
        # Contiguous movies from 0, every part but the last a whole number of movie pairs.
        assert [job.first_movie for job in cmd] == [sum(j.num_clips for j in cmd[:k]) for k in range(len(cmd))]
        assert sum(job.num_clips for job in cmd) == plan.cmd_clips
        assert all(job.num_clips == CMD_CLIPS_PER_JOB for job in cmd[:-1]) and CMD_CLIPS_PER_JOB % 2 == 0
    assert len(sample_jobs(DemoPlan.for_minutes(15))) == 1 + DemoPlan.for_minutes(15).cmd_clips // CMD_CLIPS_PER_JOB


def test_story_tokenizer_reads_a_word_a_token_and_is_the_same_in_every_process():
    """The demo's text encoders read words: each training word is one token, an unseen word is spelt out, and the
    merges and ids do not depend on the process (a seed gives the same models)."""
    from sound_of_story.app.demo import train_story_tokenizer

    texts = [
        "Heavy rain hammers the empty street.",
        "Rain pours down on Anna and Marcus.",
        "Waves crash on the rocks.",
    ]
    tokenizer = train_story_tokenizer(texts)
    assert tokenizer.tokenize("Rain hammers the rocks.") == [
        "rain</w>",
        "hammers</w>",
        "the</w>",
        "rocks</w>",
        ".</w>",
    ]
    assert "".join(tokenizer.tokenize("xylophone")).replace("</w>", "") == "xylophone"
    assert len(tokenizer.tokenize("xylophone")) > 1 and tokenizer.model_max_length == 77
    ids = tokenizer("rain", padding="max_length", max_length=77).input_ids
    assert (ids[0], ids[2], len(ids)) == (tokenizer.bos_token_id, tokenizer.eos_token_id, 77)
    code = (
        "import json; from sound_of_story.app.demo import train_story_tokenizer; "
        f"print(json.dumps(sorted(train_story_tokenizer({texts!r}).get_vocab().items())))"
    )
    runs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }
    assert runs == {json.dumps(sorted(tokenizer.get_vocab().items())) + "\n"}


def test_category_precision_counts_a_wrong_category_as_a_miss_and_random_is_the_library_share():
    from sound_of_story.app.demo import category_precision, main_category

    library = {f"r{i}": "rain" for i in range(6)} | {f"s{i}": "sea" for i in range(10)} | {"t0": "traffic"}
    queries = [("rain", ["r0", "r1", "r2", "r3", "r4"]), ("sea", ["s0", "s1", "s2", "s3", "s4"])]
    exact = category_precision(queries, library, bootstrap=200)
    assert exact["recommended"]["value"] == 100.0 and exact["per_query"] == [100.0, 100.0]
    # A random draw's expected precision is the share of the query's category in the library: (6/17 + 10/17) / 2.
    assert exact["library_shares"] == {"rain": 6 / 17, "sea": 10 / 17, "traffic": 1 / 17}
    assert exact["random"]["value"] == pytest.approx(100 * (6 / 17 + 10 / 17) / 2)
    assert exact["random"]["ci_low"] <= exact["random"]["value"] <= exact["random"]["ci_high"]
    assert exact["query_categories"] == ["rain", "sea"]
    planted = category_precision(queries, {**library, "r2": "traffic"}, bootstrap=200)
    assert planted["per_query"] == [80.0, 100.0] and planted["recommended"]["value"] == 90.0
    assert planted["recommended"]["ci_low"] == 80.0 and planted["recommended"]["ci_high"] == 100.0
    # The same recommendations against a library whose categories are shuffled among its clips score lower.
    shuffled = dict(zip(library, np.random.default_rng(0).permutation(list(library.values())), strict=True))
    assert category_precision(queries, shuffled, bootstrap=200)["recommended"]["value"] < 100.0
    with pytest.raises(ValueError, match="not in the library: x9"):
        category_precision([("rain", ["r0", "x9"])], library, bootstrap=10)
    # A slice's category is the one heard longest within it.
    scenes = [("rain", 0.0, 4.0), ("sea", 4.0, 7.0), ("rain", 7.0, 9.0), ("traffic", 9.0, 20.0)]
    assert main_category(scenes) == "traffic" and main_category(scenes, 0.0, 9.0) == "rain"
    assert main_category(scenes, 3.5, 8.0) == "sea"
    with pytest.raises(ValueError, match="no scene"):
        main_category(scenes, 30.0, 40.0)


def test_quick_demo_report_holds_figures_computed_in_the_run(quick_demo):
    from datasets import load_dataset

    from sound_of_story.app.demo import DEMO_SIMILARITY_TEMPERATURE, FIGURES, DemoPaths, DemoPlan
    from sound_of_story.app.report import PAPER_DIRECTIONS
    from sound_of_story.evaluation.retrieval import encode_stories, random_baseline_figures, retrieval_figures
    from sound_of_story.modeling import SoSRetrievalModel, SoSRetrievalProcessor

    out, result = quick_demo
    paths, plan = DemoPaths(out), DemoPlan.for_minutes(1)
    assert (
        "report: demo_quick/report.html (self-contained), demo_quick/report.md, demo_quick/report.json"
        in result.stdout
    )
    data = json.loads((out / "report.json").read_text())
    stories, slices = load_dataset(str(paths.sos)), load_dataset(str(paths.sos), "generation")
    # Data: what the report counts is what load_dataset reads back.
    assert data["dataset"]["sample_clips"] == {"cmd": plan.cmd_clips, "lsmdc": plan.lsmdc_clips}
    for split, stats in data["dataset"]["splits"].items():
        assert stats["stories"] == len(stories[split]) and stats["generation_slices"] == len(slices[split])
    n = len(stories["test"])
    assert n >= plan.test_stories
    # Table 2: the layout, intervals around values, and the trained A2V figures recomputed from the saved model.
    table2 = data["table2"]
    for row in ("trained", "untrained", "random"):
        assert set(table2[row]) == set(PAPER_DIRECTIONS)
        for direction in PAPER_DIRECTIONS:
            entry = table2[row][direction]
            assert set(entry) == set(FIGURES)
            assert entry["R@1"]["ci_low"] <= entry["R@1"]["value"] + 1e-9 <= entry["R@1"]["ci_high"] + 2e-9
            assert 0 <= entry["R@1"]["value"] <= entry["R@5"]["value"] <= 100 and 1 <= entry["MdR"]["value"] <= n
    model = SoSRetrievalModel.from_pretrained(paths.retrieval_model).eval()
    processor = SoSRetrievalProcessor.from_pretrained(paths.retrieval_model)
    figures = retrieval_figures(
        model, encode_stories(model, processor, stories["test"], pair="audio-video", progress=False)
    )
    for direction in ("A2V", "V2A"):
        for name in FIGURES:
            assert table2["trained"][direction][name]["value"] == pytest.approx(figures[direction][name])
    assert table2["random"]["A2V"]["R@1"]["value"] == pytest.approx(random_baseline_figures(n)["A2V"]["R@1"])
    # The models trained here pool the similarity at the demo's temperature, which the report states.
    assert model.config.temperature == data["settings"]["similarity_temperature"] == DEMO_SIMILARITY_TEMPERATURE
    assert data["table2_beats_random"] == (
        table2["trained"]["A2V"]["R@1"]["ci_low"] > table2["random"]["A2V"]["R@1"]["ci_high"]
    )
    # Training ran the planned steps with the package's loops.
    assert (
        len(data["retrieval_training"]["audio-video"]["losses"])
        == data["retrieval_training"]["audio-video"]["steps"]
        > 0
    )
    # The audio-text model trained its random text tower (--train_text_encoder); AST and the image tower stayed as
    # initialised, and the audio-video model left the text tower alone.
    init = SoSRetrievalModel.from_pretrained(paths.init_retrieval).state_dict()
    for folder, text_trained in ((paths.retrieval_text_model, True), (paths.retrieval_model, False)):
        trained = SoSRetrievalModel.from_pretrained(folder).state_dict()
        changed = {k for k in init if not torch.equal(init[k], trained[k])}
        assert ("clip.text_projection.weight" in changed) == text_trained
        assert not any(
            k.startswith(("audio_model.", "clip.vision_model.", "clip.visual_projection.")) for k in changed
        )
    assert data["settings"]["retrieval_text_encoder_lr"] == plan.retrieval_text_encoder_lr
    assert data["sosgen_training"]["text"]["steps"] == plan.sosgen_steps
    assert data["sosgen_training"]["controlnet"]["steps"] == plan.controlnet_steps
    # Table 3: before and after training, every held-out slice generated and scored.
    table3 = data["table3"]
    assert set(table3) == {"sosgen-untrained", "sosgen", "sosgen-controlnet"}
    for row in table3.values():
        assert row["num_generated"] + len(row["excluded"]) == min(plan.eval_slices, len(slices["test"]))
        assert row["FAD"] >= 0 and row["KAD"] == row["KAD"] and row["random_weights"] is True
    # The stage table times real work: the report stage decodes the clips and draws every figure of the page.
    seconds = data["seconds"]
    assert set(seconds) >= {"sample clips", "build SoS", "report", "total"} and seconds["report"] > 0.05
    assert sum(v for k, v in seconds.items() if k != "total") <= seconds["total"]
    # Recommendation: three held-out stories, five library sounds each, best first, from the training slices.
    library = {p.stem for p in paths.library.iterdir()}
    assert library == set(slices["train"]["id"])
    queries = data["recommendation"]["queries"]
    assert len(queries) == min(3, n) and {q["story"] for q in queries} <= set(stories["test"]["id"])
    for query in queries:
        scores = [r["score"] for r in query["recommendations"]]
        assert len(scores) == min(5, len(library)) and scores == sorted(scores, reverse=True)
        assert {Path(r["path"]).stem for r in query["recommendations"]} <= library
    # Precision@5 by scene category over every held-out story, from the categories the run recorded: each shown
    # recommendation carries its library clip's category, and a random draw expects the library's category shares.
    from collections import Counter

    from sound_of_story.dataset_builder.samples import CATEGORY_NAMES

    info = data["recommendation"]
    precision, categories = info["precision"], info["library_categories"]
    assert {Path(c).stem for c in categories} == library and set(categories.values()) <= set(CATEGORY_NAMES)
    assert len(precision["per_query"]) == len(precision["query_categories"]) == n
    shares = {c: k / len(categories) for c, k in Counter(categories.values()).items()}
    assert precision["library_shares"] == pytest.approx(shares)
    assert precision["random"]["value"] == pytest.approx(
        100 * np.mean([shares.get(c, 0.0) for c in precision["query_categories"]])
    )
    assert precision["recommended"]["value"] == pytest.approx(np.mean(precision["per_query"]))
    for figure in ("recommended", "random"):
        assert precision[figure]["ci_low"] <= precision[figure]["value"] + 1e-9 <= precision[figure]["ci_high"] + 2e-9
    for k, query in enumerate(queries):
        assert query["category"] == precision["query_categories"][k]
        assert all(r["category"] == categories[r["clip_id"]] for r in query["recommendations"])
        hits = [r["category"] == query["category"] for r in query["recommendations"]]
        assert precision["per_query"][k] == pytest.approx(100 * np.mean(hits))
    # The page: self-contained, random weights labelled, one player per real, generated and recommended clip.
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page
    assert page.count("RANDOM weights") >= 2 and "VGGish with random weights" in page
    assert f"similarity pooled at temperature {DEMO_SIMILARITY_TEMPERATURE:g} (X-CLIP&#x27;s code: 0.01)" in page
    players = len(_data_uris(page, "audio/wav"))
    assert players == min(2, len(slices["test"])) * (1 + len(table3)) + min(5, len(library)) * len(queries)
    a2v = table2["trained"]["A2V"]["R@1"]
    assert f"{a2v['value']:.1f} [{a2v['ci_low']:.1f}, {a2v['ci_high']:.1f}]" in page
    # diffusers' per-prompt truncation warning is off; the report states the text encoder's length once instead.
    assert "can only handle sequences" not in result.stdout + result.stderr
    assert data["generation_text_tokens"] == 77
    assert "reads the first 77 tokens of each description" in page
    assert data["generation_band"] == {"sample_rate": 16000.0, "min_frequency": 0.0, "max_frequency": 8000.0}
    assert "SoSgen makes 16 kHz audio from mel bins of 0-8000 Hz" in page
    # The random text encoders read the run's own word-level tokenizer, learnt from the training stories only.
    from transformers import CLIPTokenizer

    from sound_of_story.app.demo import train_story_tokenizer

    expected = train_story_tokenizer(list(stories["train"]["text"])).get_vocab()
    train_words = {w.lower() for t in stories["train"]["text"] for w in re.findall(r"[A-Za-z]+", t)}
    for folder in (paths.init_retrieval, paths.init_sosgen / "tokenizer"):
        tokenizer = CLIPTokenizer.from_pretrained(folder)
        assert tokenizer.get_vocab() == expected and tokenizer.model_max_length == 77
        assert all(tokenizer.tokenize(w) == [f"{w}</w>"] for w in train_words)  # one token a word
    # Scene categories: every pipeline's clips and the real held-out slices scored over the same spans, and the
    # table shown with its figures.
    scene = data["scene_categories"]
    from sound_of_story.app.demo import ROUND_TRIP

    assert set(scene["scores"]) == {"real held-out slices", ROUND_TRIP, *table3} and scene["chance"] == pytest.approx(
        100 / 11
    )
    assert len({entry["spans"] for entry in scene["scores"].values()}) == 1
    for entry in scene["scores"].values():
        assert entry["ci_low"] <= entry["value"] + 1e-9 <= entry["ci_high"] + 2e-9
        assert f"{entry['value']:.1f} [{entry['ci_low']:.1f}, {entry['ci_high']:.1f}]" in page
    assert set(scene["band_profiles"]) == set(table3)
    for profile in scene["band_profiles"].values():
        assert -1.0 <= profile["correlation"] <= 1.0 and profile["mean_abs_db"] >= 0.0
        assert f"<td>{profile['correlation']:.2f}</td>" in page
    recommended, random_draw = precision["recommended"], precision["random"]
    for entry in (recommended, random_draw):
        assert f"{entry['value']:.1f} [{entry['ci_low']:.1f}, {entry['ci_high']:.1f}]" in page
    first = queries[0]["recommendations"][0]
    assert f"#1 {first['clip_id']} ({first['category']})" in page
