"""``evaluate retrieval --model/--dataset`` (Table 2) on a dataset built from the sample clips with tiny random
models: the table equals ``--similarity`` on its saved matrices, encode_stories equals the plain processor
path, the embedding cache, the random baseline, the paired comparison and the exit-2 errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from evaluation_fixtures import sos_eval_dataset, tiny_retrieval_models  # noqa: F401 (fixtures)

from sound_of_story.app.cli import main
from sound_of_story.evaluation.retrieval import encode_stories, random_baseline_figures, retrieval_figures
from sound_of_story.evaluation.table2 import load_stories_split
from sound_of_story.modeling import load_retrieval_model

FIGURES = ("R@1", "R@5", "R@10", "MdR", "MnR")
DIRECTIONS = {"sos": ("A2V", "V2A", "A2T", "T2A"), "wav2clip": ("A2V", "V2A", "A2T", "T2A"), "clap": ("A2T", "T2A")}


@pytest.fixture(scope="module")
def table(sos_eval_dataset, tiny_retrieval_models, tmp_path_factory):
    """One command: SoS and CLAP, compared with the Wav2CLIP baseline, plus the random baseline."""
    root = tmp_path_factory.mktemp("table2")
    models = tiny_retrieval_models
    argv = ["evaluate", "retrieval", "--model", str(models["sos"]), "--model", str(models["clap"]), "--compare", str(models["wav2clip"]),
            "--baseline", "random", "--dataset", str(sos_eval_dataset), "--out", str(root / "out"), "--bootstrap", "200",
            "--cache-dir", str(root / "cache"), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    return root / "out", root / "cache"


def test_table_equals_the_similarity_command_on_the_saved_matrices(table, sos_eval_dataset, tmp_path):
    out, _ = table
    figures = json.loads((out / "table2.json").read_text())
    num_stories = len(load_stories_split(str(sos_eval_dataset), "test"))
    assert num_stories >= 3 and set(figures) == {"sos", "clap", "wav2clip", "random"}
    for model, directions in DIRECTIONS.items():
        assert set(figures[model]) == set(directions)
        for direction in directions:
            matrix = np.load(out / f"{model}_{direction}.npy")
            assert matrix.shape == (num_stories, num_stories)
            assert (
                main(
                    [
                        "evaluate",
                        "retrieval",
                        "--similarity",
                        str(out / f"{model}_{direction}.npy"),
                        "--json",
                        str(tmp_path / "r.json"),
                    ]
                )
                == 0
            )
            recomputed = json.loads((tmp_path / "r.json").read_text())["query_to_candidate"]
            reported = figures[model][direction]
            assert {k: reported[k] for k in FIGURES} == {k: recomputed[k] for k in FIGURES}, (model, direction)
            for key in FIGURES:  # the 95% bootstrap interval holds the point estimate
                low, high = reported["ci"][key]
                assert low <= reported[key] <= high, (model, direction, key)
    # the reverse direction is the transposed matrix
    np.testing.assert_array_equal(np.load(out / "sos_V2A.npy"), np.load(out / "sos_A2V.npy").T)
    markdown = (out / "table2.md").read_text()
    assert f"| sos | A2V | {figures['sos']['A2V']['R@1']:.2f} [" in markdown and "| random | T2A |" in markdown


def test_encode_stories_equals_the_plain_processor_path_and_the_cache_reads_back(
    table,
    sos_eval_dataset,
    tiny_retrieval_models,
):
    out, cache = table
    model, processor, kind = load_retrieval_model(str(tiny_retrieval_models["sos"]), device="cpu")
    stories = load_stories_split(str(sos_eval_dataset), "test")
    # The plain path: one processor call over every story, the model's features and similarity.
    batch = processor(text=stories["text"], frames=stories["frames"], audio=list(stories["audio"]))
    with torch.inference_mode():
        audio = model.get_audio_features(batch["input_values"])
        video = model.get_video_features(batch["pixel_values"], batch["frame_mask"])
        plain = model.similarity(audio, video).double().numpy()
    np.testing.assert_allclose(np.load(out / "sos_A2V.npy"), plain, rtol=0, atol=1e-6)
    # The command's cache: every story is a hit, and the entries hold the same features.
    cached = encode_stories(model, processor, stories, pair="audio-video", cache_dir=cache, progress=False)
    assert kind == "sos" and cached.cache_hits == len(stories)
    torch.testing.assert_close(cached.audio.audio_token_embeds, audio.audio_token_embeds, rtol=0, atol=1e-6)
    # An empty entry (a killed writer, a full disk) is recomputed, not read.
    entry = sorted((cache / cached.key[:16]).glob("*.safetensors"))[0]
    entry.write_bytes(b"")
    again = encode_stories(model, processor, stories, pair="audio-video", cache_dir=cache, progress=False)
    assert again.cache_hits == len(stories) - 1 and entry.stat().st_size > 0
    torch.testing.assert_close(again.other.frame_embeds, cached.other.frame_embeds)
    figures = retrieval_figures(model, [again], directions=["A2V"])
    assert figures["A2V"]["R@1"] == json.loads((out / "table2.json").read_text())["sos"]["A2V"]["R@1"]


def test_random_baseline_r1_is_100_over_n_on_average():
    n, seeds = 40, 20
    runs = [random_baseline_figures(n, ["A2V", "T2A"], seed=s, runs=5) for s in range(seeds)]
    r1 = np.mean([r["A2V"]["R@1"] for r in runs] + [r["T2A"]["R@1"] for r in runs])
    mean_rank = np.mean([r["A2V"]["MnR"] for r in runs])
    assert abs(r1 - 100 / n) < 1.0  # 8000 random queries: standard error 0.17
    assert abs(mean_rank - (n + 1) / 2) < 1.0
    with_ci = random_baseline_figures(n, ["A2V"], bootstrap=300)["A2V"]
    assert with_ci["ci"]["MnR"][0] <= with_ci["MnR"] <= with_ci["ci"]["MnR"][1]


def test_random_baseline_interval_is_that_of_the_expectation():
    # The demo's case: 25 held-out stories. Five draws gave R@1 8% [4.8, 12]; the default draws hold 100 / N.
    n = 25
    figures = random_baseline_figures(n, ["A2V", "V2A"], bootstrap=300)
    for direction in ("A2V", "V2A"):
        low, high = figures[direction]["ci"]["R@1"]
        assert low <= 100 / n <= high and high - low < 1.5, (direction, low, high)
        assert abs(figures[direction]["MnR"] - (n + 1) / 2) < 0.5
    assert figures["A2V"]["R@1"] != figures["V2A"]["R@1"]  # each direction draws its own ranks
    with pytest.raises(ValueError, match="runs must be >= 1"):
        random_baseline_figures(n, runs=0)


def test_random_baseline_and_comparison_files(table):
    out, _ = table
    figures = json.loads((out / "table2.json").read_text())
    assert set(figures["random"]) == {"A2V", "V2A", "A2T", "T2A"}
    assert all((out / f"random-run{k}_A2V.npy").is_file() for k in range(5))
    comparison = json.loads((out / "comparison.json").read_text())
    assert set(comparison) == {"sos - clap", "sos - wav2clip"}  # the first model against each other one
    for direction, diffs in comparison["sos - wav2clip"].items():
        for key in FIGURES:
            assert diffs[key]["difference"] == pytest.approx(
                figures["sos"][direction][key] - figures["wav2clip"][direction][key]
            )
            low, high = diffs[key]["ci"]
            assert low <= high
    assert set(comparison["sos - clap"]) == {"A2T", "T2A"}  # only the directions both models have


def test_bad_inputs_exit_2(sos_eval_dataset, tiny_retrieval_models, tmp_path, capsys):
    base = ["evaluate", "retrieval", "--dataset", str(sos_eval_dataset), "--quiet", "--bootstrap", "0"]
    cases = {
        "cannot be evaluated in ['A2V']": [
            *base,
            "--model",
            str(tiny_retrieval_models["clap"]),
            "--directions",
            "A2V",
        ],
        "has no split 'validation'": [*base, "--model", str(tiny_retrieval_models["sos"]), "--split", "validation"],
        "no config.json": [*base, "--model", str(tmp_path)],
        "use one or the other": [
            *base,
            "--similarity",
            str(tmp_path / "x.npy"),
            "--model",
            str(tiny_retrieval_models["sos"]),
        ],
    }
    for message, argv in cases.items():
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err, message
    model, processor, _ = load_retrieval_model(str(tiny_retrieval_models["sos"]), device="cpu")
    stories = load_stories_split(str(sos_eval_dataset), "test")
    with pytest.raises(ValueError, match=r"no column\(s\) \['frames'\]"):
        encode_stories(model, processor, stories.remove_columns(["frames"]), pair="audio-video", progress=False)
    with pytest.raises(ValueError, match="split is empty"):
        encode_stories(model, processor, stories.select([]), pair="audio-text", progress=False)
