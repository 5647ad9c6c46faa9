"""``evaluate generation`` (Table 3) on the dataset built from the sample clips with tiny random pipelines: a killed
run resumes and writes each slice once, identical to an uninterrupted run; the MusicGen baseline runs; the table's
FAD and KAD equal direct computations; missing/silent/short clips are reported by name; exit-2 errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from evaluation_fixtures import sos_eval_dataset  # noqa: F401 (fixture)

from sound_of_story.app.cli import main
from sound_of_story.evaluation.generation import (
    check_generated_clips,
    generate_slices,
    load_generation_split,
    load_slice_pipeline,
    reference_audio,
)
from sound_of_story.metrics.fad import VGGishEmbedder, fad_from_embeddings
from sound_of_story.metrics.fad.kad import kernel_audio_distance

SECONDS = 1.5
# The sample dataset's generation slices fall mostly in train (the split follows the stories); the harness
# takes any split.
SPLIT = "train"
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*rank-deficient:UserWarning", "ignore:embedder weights are RANDOM:UserWarning"
)


@pytest.fixture(scope="module")
def tiny_pipelines(tmp_path_factory):
    """A tiny SoSgen pipeline and a tiny MusicGen model with its tokenizer, saved to folders."""
    import torch
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    from sound_of_story.modeling.tiny_random import tiny_clip_tokenizer
    from sound_of_story.pipelines.tiny_random import tiny_sosgen

    root = tmp_path_factory.mktemp("pipelines")
    tiny_sosgen().save_pretrained(root / "sosgen")
    tokenizer = tiny_clip_tokenizer()
    text = T5Config(
        vocab_size=len(tokenizer),
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    audio = EncodecConfig(target_bandwidths=[1.0], sampling_rate=16_000, audio_channels=1, hidden_size=8, num_filters=4, num_residual_layers=1,
                          upsampling_ratios=[8, 5, 4, 2], codebook_size=16, codebook_dim=8, num_lstm_layers=1)  # fmt: skip
    decoder = MusicgenDecoderConfig(vocab_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, ffn_dim=32, num_codebooks=audio.num_quantizers,
                                    bos_token_id=16, pad_token_id=16, max_position_embeddings=512)  # fmt: skip
    torch.manual_seed(0)
    musicgen = MusicgenForConditionalGeneration(
        MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())
    )
    musicgen.generation_config.decoder_start_token_id = musicgen.generation_config.pad_token_id = 16
    musicgen.save_pretrained(root / "musicgen")
    tokenizer.save_pretrained(root / "musicgen")
    return {"sosgen": root / "sosgen", "musicgen": root / "musicgen"}


class Interrupted(Exception):
    pass


class CountingPipeline:
    """Wraps a slice pipeline: counts generations, and raises after ``stop_after`` (a killed run)."""

    def __init__(self, inner, stop_after=None):
        self.inner, self.stop_after, self.calls = inner, stop_after, []
        self.name, self.takes_frames = inner.name, inner.takes_frames

    def generate(self, text, duration_s, seed, frames=None, frame_times=None):
        if self.stop_after is not None and len(self.calls) == self.stop_after:
            raise Interrupted
        self.calls.append(seed)
        return self.inner.generate(text, duration_s, seed, frames, frame_times)


def test_killed_run_resumes_and_writes_each_slice_once(sos_eval_dataset, tiny_pipelines, tmp_path):
    """...and gives the same files as an uninterrupted run."""
    slices = load_generation_split(str(sos_eval_dataset), SPLIT, limit=3)
    assert len(slices) == 3
    pipeline = load_slice_pipeline(str(tiny_pipelines["sosgen"]), num_inference_steps=2, device="cpu")
    killed = CountingPipeline(pipeline, stop_after=1)
    with pytest.raises(Interrupted):
        generate_slices(killed, slices, tmp_path / "resumed", duration_s=SECONDS, progress=False)
    assert len(list((tmp_path / "resumed" / "audio").glob("*.wav"))) == 1 and not list(
        (tmp_path / "resumed" / "audio").glob(".*")
    )
    resumed = CountingPipeline(pipeline)
    paths = generate_slices(resumed, slices, tmp_path / "resumed", duration_s=SECONDS, progress=False)
    assert (
        len(resumed.calls) == 2 and len(set(killed.calls + resumed.calls)) == 3
    )  # each slice once, each its own seed
    fresh = generate_slices(pipeline, slices, tmp_path / "fresh", duration_s=SECONDS, progress=False)
    for sid, path in paths.items():
        assert path.read_bytes() == fresh[sid].read_bytes(), sid
        assert (tmp_path / "resumed" / "spectrograms" / f"{sid}.png").is_file()
    assert (
        generate_slices(CountingPipeline(pipeline, stop_after=0), slices, tmp_path / "fresh", progress=False) == fresh
    )  # nothing left to do


def test_musicgen_baseline_generates_through_the_same_harness(sos_eval_dataset, tiny_pipelines, tmp_path):
    slices = load_generation_split(str(sos_eval_dataset), SPLIT, limit=1)
    pipeline = load_slice_pipeline(str(tiny_pipelines["musicgen"]), device="cpu")
    assert not pipeline.takes_frames
    (path,) = generate_slices(pipeline, slices, tmp_path, duration_s=SECONDS, progress=False).values()
    audio, rate = sf.read(path)
    assert rate == 16_000 and abs(len(audio) / rate - SECONDS) < 0.1 and np.abs(audio).max() > 0
    with pytest.raises(ValueError, match="cannot take frames"):
        generate_slices(pipeline, slices, tmp_path, with_frames=True, progress=False)


def test_table3_equals_direct_scores_and_names_bad_clips(sos_eval_dataset, tiny_pipelines, tmp_path, capsys):
    out = tmp_path / "out"
    slices = load_generation_split(str(sos_eval_dataset), SPLIT, limit=4)
    ids = list(slices["id"])
    # Pre-existing outputs are kept (resume): one silent and one too short clip.
    (out / "sosgen" / "audio").mkdir(parents=True)
    sf.write(out / "sosgen" / "audio" / f"{ids[0]}.wav", np.zeros(32_000), 16_000)
    sf.write(out / "sosgen" / "audio" / f"{ids[1]}.wav", 0.3 * np.ones(8_000), 16_000)
    argv = ["evaluate", "generation", "--pipeline", str(tiny_pipelines["sosgen"]), "--dataset", str(sos_eval_dataset), "--split", SPLIT, "--out", str(out), "--limit", "4",
            "--steps", "2", "--duration", str(SECONDS), "--random-weights", "--bootstrap", "200", "--quiet", "--model-card", str(tmp_path / "README.md")]  # fmt: skip
    assert main(argv) == 0
    row = json.loads((out / "table3.json").read_text())["sosgen"]
    assert row["excluded"][ids[0]].startswith("silent") and row["excluded"][ids[1]].startswith("too short")
    assert f"sosgen/{ids[0]}: silent" in (out / "table3.md").read_text()
    usable = check_generated_clips({sid: out / "sosgen" / "audio" / f"{sid}.wav" for sid in ids}).usable
    assert sorted(usable) == sorted(ids[2:]) and row["num_generated"] == 2
    embedder = VGGishEmbedder.from_random_weights()
    pred = np.concatenate(embedder.embed(list(usable.values())))
    refs = reference_audio(slices)
    ref = np.concatenate(embedder.embed([a for a, _ in refs], [r for _, r in refs]))
    assert row["FAD"] == pytest.approx(fad_from_embeddings(pred, ref), rel=1e-6)
    assert row["KAD"] == pytest.approx(kernel_audio_distance(pred, ref), rel=1e-6)
    assert row["FAD_ci"][0] <= row["FAD_ci"][1] and row["random_weights"] is True
    assert "model-index" in (tmp_path / "README.md").read_text() and "fad" in (tmp_path / "README.md").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(argv[:-2] + ["--with-frames"])
    assert exit_info.value.code == 2 and "cannot take frames" in capsys.readouterr().err
