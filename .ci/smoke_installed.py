"""Smoke check of an installed sound-of-story, run by .ci/check_package.sh in a fresh venv.

Usage (from a folder outside the clone, hub offline): python -I smoke_installed.py PATH/TO/sound-of-story

Checks that the package imports from the venv's site-packages, the console script answers --help
and --version, both evaluate modules load by their installed paths and compute known values, and
a tiny random SoSgen pipeline saved here generates through `sound-of-story generate` exactly what
the pipeline gives in process. Exits non-zero with a message naming the first check that failed.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np


def check(condition: bool, message: str) -> None:
    if not condition:
        sys.exit(f"smoke check failed: {message}")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=600)


CLI = sys.argv[1]
SITE = Path(sysconfig.get_paths()["purelib"]).resolve()
HERE = Path.cwd()

# --- the installed files, not a checkout ------------------------------------------------------------
import sound_of_story.metrics as metrics  # noqa: E402

check(
    Path(metrics.__file__).resolve().is_relative_to(SITE),
    f"sound_of_story imports from {metrics.__file__}, not {SITE}",
)

# --- the console script -----------------------------------------------------------------------------
result = run("--help")
check(result.returncode == 0, f"sound-of-story --help exited {result.returncode}: {result.stderr[-2000:]}")
for word in ("usage: sound-of-story", "generate", "evaluate", "samples", "demo"):
    check(word in result.stdout, f"sound-of-story --help does not mention {word!r}")
result = run("--version")
check(
    result.stdout.strip() == f"sound-of-story {version('sound-of-story')}",
    f"sound-of-story --version printed {result.stdout!r}",
)
print("console script: --help and --version answer")

# --- the evaluate modules, by their installed paths --------------------------------------------------
import evaluate  # noqa: E402

from sound_of_story.metrics import EVALUATE_MODULES, evaluate_module_path, retrieval_metrics  # noqa: E402

for name in EVALUATE_MODULES:
    folder = Path(evaluate_module_path(name))
    check(folder.resolve().is_relative_to(SITE), f"evaluate module {name} is at {folder}, outside {SITE}")
    check((folder / f"{name}.py").is_file() and (folder / "README.md").is_file(), f"{folder} lacks its script or card")

retrieval = evaluate.load(evaluate_module_path("sos_retrieval"))
similarity = np.eye(6) + np.arange(36).reshape(6, 6) / 3600  # the diagonal wins every row and column
out = retrieval.compute(predictions=similarity.tolist(), references=list(range(6)))
for direction in ("query_to_candidate", "candidate_to_query"):
    check(out[direction]["R@1"] == 100.0 and out[direction]["MdR"] == 1.0, f"sos_retrieval on the identity: {out}")
rng = np.random.default_rng(0)
similarity, permutation = rng.standard_normal((9, 9)), rng.permutation(9)
out = retrieval.compute(predictions=similarity.tolist(), references=permutation.tolist())
check(out == retrieval_metrics(similarity, permutation), "sos_retrieval differs from retrieval_metrics")

fad = evaluate.load(evaluate_module_path("fad"))
t = np.arange(32_000) / 16_000
sines = [np.sin(2 * np.pi * f * t).astype(np.float32) for f in (300, 400, 2500, 3500)]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the random-weights warning, asked for
    same = fad.compute(predictions=sines[:2], references=sines[:2], sampling_rate=16_000, random_weights=True)
    other = fad.compute(predictions=sines[:2], references=sines[2:], sampling_rate=16_000, random_weights=True)
check(same["random_weights"] is True and same["num_pred_embeddings"] == 4, f"fad: {same}")
check(abs(same["fad"]) < 1e-6 < other["fad"], f"fad: {same['fad']} for the same clips, {other['fad']} for others")
print(f"evaluate modules: {', '.join(EVALUATE_MODULES)} load from {SITE} and compute")

# --- a tiny generate ---------------------------------------------------------------------------------
import torch  # noqa: E402

from sound_of_story.pipelines import load_audio  # noqa: E402
from sound_of_story.pipelines.tiny_random import tiny_sosgen  # noqa: E402

pipe = tiny_sosgen()
pipe.save_pretrained(HERE / "tiny-sosgen")
wav = HERE / "out" / "rain.wav"
args = ["--text", "rain on a roof", "--duration", "2.5", "--steps", "3", "--seed", "4", "--window-width", "64"]
result = run("generate", "--model", str(HERE / "tiny-sosgen"), *args, "--out", str(wav), "--quiet", "--device", "cpu")
check(result.returncode == 0, f"sound-of-story generate exited {result.returncode}: {result.stderr[-2000:]}")
audio, sample_rate = load_audio(wav)
check(sample_rate == 8000 and audio.shape == (1, 20_000), f"generate wrote {audio.shape} at {sample_rate} Hz")
pipe.register_to_config(window_width=64)  # what --window-width overrides
expected = pipe(
    "rain on a roof",
    duration_s=2.5,
    num_inference_steps=3,
    guidance_scale=7.0,
    generator=torch.Generator().manual_seed(4),
)
check(bool(np.abs(audio).max() > 0), "generate wrote silence")
check(
    bool(np.allclose(audio, expected.audios[0], atol=1.5 / 32768, rtol=0)),
    "generate's WAV differs from the pipeline's output beyond 16-bit rounding",
)
check(wav.with_suffix(".png").is_file(), "generate wrote no spectrogram PNG")
print("generate: a tiny pipeline's 2.5 s at 8 kHz, equal to the pipeline's own output")
