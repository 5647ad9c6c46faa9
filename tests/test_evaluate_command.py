"""``sound-of-story evaluate fad|retrieval|generation``, through a parser built with add_evaluate_parser (generation:
its help and the checks that run before any dataset or model loads; tests/test_evaluate_generation.py runs it)."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
import torch
from evaluation_fixtures import sos_eval_dataset  # noqa: F401 (fixture)

from sound_of_story.app.evaluate_command import add_evaluate_parser
from sound_of_story.metrics import retrieval_metrics
from sound_of_story.metrics.fad import VGGishEmbedder, compute_fad

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*rank-deficient:UserWarning", "ignore:embedder weights are RANDOM:UserWarning"
)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sound-of-story")
    add_evaluate_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def stem_folders(cmd_samples, tmp_path_factory):
    """The sample clips' speech stems as 'predictions' and background stems as 'references' (44.1 kHz stereo WAVs)."""
    source, records = cmd_samples
    root = tmp_path_factory.mktemp("stems")
    for kind in ("speech", "background"):
        (root / kind).mkdir()
        for record in records:
            shutil.copy(source / record["files"][kind], root / kind / record["files"][kind])
    return root / "speech", root / "background"


def test_fad_command_reports_what_compute_fad_gives(stem_folders, tmp_path, capsys):
    speech, background = stem_folders
    out_json = tmp_path / "fad.json"
    assert (
        run(
            [
                "evaluate",
                "fad",
                "--pred",
                str(speech),
                "--ref",
                str(background),
                "--random-weights",
                "--quiet",
                "--json",
                str(out_json),
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "WARNING" in printed and "RANDOM" in printed
    reported = json.loads(out_json.read_text())
    expected = compute_fad(speech, background, VGGishEmbedder.from_random_weights())
    assert reported["fad"] == pytest.approx(expected.fad, rel=1e-9) and reported["fad"] > 0
    assert f"FAD: {expected.fad:.6f}  (RANDOM weights)" in printed
    assert reported["random_weights"] is True and "not comparable" in reported["warning"]
    assert (reported["num_pred_clips"], reported["num_ref_clips"]) == (2, 2)
    frames = 1 + (24 * 16_000 - 400) // 160  # 24 s clips at 16 kHz: 2398 log-mel frames ...
    assert (
        reported["num_pred_embeddings"] == expected.num_pred_embeddings == 2 * (1 + (frames - 96) // 96)
    )  # ... 24 examples each
    # the same folder on both sides: FAD 0, and the second run reads every embedding from the cache
    assert (
        run(
            [
                "evaluate",
                "fad",
                "--pred",
                str(background),
                "--ref",
                str(background),
                "--random-weights",
                "--quiet",
                "--json",
                str(out_json),
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    assert json.loads(out_json.read_text())["fad"] == pytest.approx(0.0, abs=1e-6)


def test_fad_command_without_checkpoint_names_the_release_file(stem_folders):
    speech, background = stem_folders
    with pytest.raises(ValueError, match=r"vggish-10086976\.pth.*releases/download/v0\.1"):
        run(["evaluate", "fad", "--pred", str(speech), "--ref", str(background), "--quiet"])
    with pytest.raises(ValueError, match="either --checkpoint or --random-weights"):
        run(
            [
                "evaluate",
                "fad",
                "--pred",
                str(speech),
                "--ref",
                str(background),
                "--random-weights",
                "--checkpoint",
                "x.pth",
                "--quiet",
            ]
        )


def test_fad_command_rejects_folders_without_audio(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        run(
            [
                "evaluate",
                "fad",
                "--pred",
                str(tmp_path / "empty"),
                "--ref",
                str(tmp_path / "empty"),
                "--random-weights",
                "--quiet",
            ]
        )
    with pytest.raises(FileNotFoundError, match="missing"):
        run(
            [
                "evaluate",
                "fad",
                "--pred",
                str(tmp_path / "missing"),
                "--ref",
                str(tmp_path / "empty"),
                "--random-weights",
                "--quiet",
            ]
        )


@pytest.fixture
def similarity() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 5, size=(20, 20)).astype(np.float64)


def save(path, similarity, ground_truth=None):
    suffix = path.suffix
    if suffix == ".npy":
        np.save(path, similarity)
    elif suffix == ".npz":
        np.savez(path, similarity=similarity, **({} if ground_truth is None else {"ground_truth": ground_truth}))
    elif suffix == ".pt":
        torch.save(
            {
                "similarity": torch.from_numpy(similarity),
                **({} if ground_truth is None else {"ground_truth": torch.from_numpy(ground_truth)}),
            },
            path,
        )
    elif suffix == ".csv":
        np.savetxt(path, similarity, delimiter=",")
    return path


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt", ".csv"])
def test_retrieval_command_reads_every_format(suffix, similarity, tmp_path, capsys):
    path = save(tmp_path / f"sim{suffix}", similarity)
    out_json = tmp_path / "out.json"
    assert (
        run(
            [
                "evaluate",
                "retrieval",
                "--similarity",
                str(path),
                "--json",
                str(out_json),
                "--direction-names",
                "text_to_audio",
                "audio_to_text",
            ]
        )
        == 0
    )
    reported = json.loads(out_json.read_text())
    expected = retrieval_metrics(similarity, direction_names=("text_to_audio", "audio_to_text"))
    assert reported == {"tie_rule": "pessimistic", **expected}
    printed = capsys.readouterr().out
    assert f"{expected['text_to_audio']['R@1']:.3f}" in printed and "audio_to_text" in printed


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_retrieval_command_uses_ground_truth_in_the_file(suffix, tmp_path):
    rng = np.random.default_rng(1)
    similarity, ground_truth = rng.standard_normal((10, 30)), rng.integers(0, 30, size=10)
    out_json = tmp_path / "out.json"
    run(
        [
            "evaluate",
            "retrieval",
            "--similarity",
            str(save(tmp_path / f"sim{suffix}", similarity, ground_truth)),
            "--tie-rule",
            "optimistic",
            "--ks",
            "1",
            "3",
            "--json",
            str(out_json),
        ]
    )
    assert json.loads(out_json.read_text()) == {
        "tie_rule": "optimistic",
        **retrieval_metrics(similarity, ground_truth, ks=(1, 3), tie_rule="optimistic"),
    }


def test_retrieval_command_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unsupported similarity file type '.json'"):
        run(
            [
                "evaluate",
                "retrieval",
                "--similarity",
                str(save(tmp_path / "sim.npy", np.eye(3)).rename(tmp_path / "sim.json")),
            ]
        )
    nan = np.eye(3)
    nan[0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        run(["evaluate", "retrieval", "--similarity", str(save(tmp_path / "nan.npy", nan))])
    np.savez(tmp_path / "two.npz", a=np.eye(2), b=np.eye(2))
    with pytest.raises(ValueError, match="--key"):
        run(["evaluate", "retrieval", "--similarity", str(tmp_path / "two.npz")])
    with pytest.raises(FileNotFoundError):
        run(["evaluate", "retrieval", "--similarity", str(tmp_path / "none.npy")])


def test_similarity_files_that_cannot_be_numbers_exit_2(tmp_path, capsys):
    from sound_of_story.app.cli import main

    np.save(tmp_path / "complex.npy", np.eye(3) + 1j * np.eye(3))
    torch.save({"similarity": torch.eye(3, dtype=torch.complex64)}, tmp_path / "complex.pt")
    for name in ("empty.npy", "empty.npz", "empty.pt"):
        (tmp_path / name).write_bytes(b"")
    torch.save({"similarity": np.eye(3)}, tmp_path / "pickled.pt")  # a numpy array: a pickled object to torch
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    expected = {
        "complex.npy": "complex similarity matrix",
        "complex.pt": "complex similarity matrix",
        "empty.npy": "is empty (0 bytes)",
        "empty.npz": "is empty (0 bytes)",
        "empty.pt": "is empty (0 bytes)",
        "pickled.pt": "pickled Python objects, refused (weights_only=True)",
        "objects.npy": "cannot read similarity file",
    }
    for name, message in expected.items():
        with pytest.raises(SystemExit) as exit_info:
            main(["evaluate", "retrieval", "--similarity", str(tmp_path / name)])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err, name


def test_generation_help_states_whose_settings_the_baselines_run_at(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(["evaluate", "generation", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exit_info.value.code == 0
    assert "The paper states only that the baselines get the descriptions and that FAD uses VGGish" in text
    assert "512-pixel (5.12 s) windows" in text and "top-k 250, guidance 3 (audiocraft's defaults)" in text
    assert "exact: Riffusion's own inverse" in text and "the paper's (which names no inversion)" in text
    assert "riffusion=FOLDER" in text and "this package's choice of size" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pipeline", "sosgen=somewhere"], "NAME=FOLDER names a baseline (riffusion, musicgen), got 'sosgen'"),
        (["--pipeline", "riffusion=/no/such/folder"], "folder '/no/such/folder' does not exist"),
        (["--pipeline", "riffusion", "--pipeline", "riffusion"], "would write to the same folder ['riffusion']"),
        (["--pipeline", "riffusion", "--steps", "0"], "--steps must be a positive number"),
        (["--pipeline", "riffusion", "--duration", "nan"], "--duration must be a positive number of seconds"),
    ],
)
def test_generation_refuses_bad_pipelines_and_settings_before_loading_anything(extra, message, tmp_path, capsys):
    """The dataset does not exist: each error comes before it (or any model) is read."""
    from sound_of_story.app.cli import main

    argv = ["evaluate", "generation", "--dataset", str(tmp_path / "no-dataset"), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--random-weights", *extra])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_model_whose_saved_config_is_invalid_exits_2(sos_eval_dataset, tmp_path, capsys):
    """A saved configuration holding a value its class refuses (huggingface_hub's strict dataclass validation, not
    a ValueError) is bad input: exit 2 with the reason, no traceback."""
    from sound_of_story.app.cli import main
    from sound_of_story.modeling import SoSRetrievalModel
    from sound_of_story.modeling.tiny_random import tiny_retrieval_config, tiny_retrieval_processor

    folder = tmp_path / "model"
    SoSRetrievalModel(tiny_retrieval_config()).save_pretrained(folder)
    tiny_retrieval_processor().save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["temperature"] = -1.0
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit) as exited:
        main(["evaluate", "retrieval", "--model", str(folder), "--dataset", str(sos_eval_dataset), "--quiet"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "temperature must be > 0" in err and "Traceback" not in err
