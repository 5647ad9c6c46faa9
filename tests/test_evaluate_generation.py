"""``evaluate generation`` (Table 3) on the dataset built from the sample clips with tiny random pipelines: a killed
run resumes and writes each slice once, identical to an uninterrupted run, and a run with other settings refuses to
resume; the Riffusion baseline denoises only 512-pixel windows (a local folder in its layout loads too); MusicGen
samples at audiocraft's defaults for exactly the slice's length; the table's FAD and KAD equal direct computations
and its settings say whose choice each is; missing/silent/short clips are reported by name; exit-2 errors."""

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
    slice_seed,
)
from sound_of_story.metrics.fad import VGGishEmbedder, fad_from_embeddings
from sound_of_story.metrics.fad.kad import kernel_audio_distance

SECONDS = 1.5
# More codebook entries than transformers' default top-k (50) and fewer than MusicGen's own (250): the two differ.
CODEBOOK = 64
# The sample dataset's generation slices fall mostly in train (the split follows the stories); the harness
# takes any split.
SPLIT = "train"
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*rank-deficient:UserWarning", "ignore:embedder weights are RANDOM:UserWarning"
)


@pytest.fixture(scope="module")
def tiny_pipelines(tmp_path_factory):
    """A tiny SoSgen pipeline, the same components as a StableDiffusionPipeline (Riffusion's layout), and a tiny
    MusicGen model with its tokenizer, saved to folders."""
    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    from sound_of_story.modeling.tiny_random import tiny_clip_tokenizer
    from sound_of_story.pipelines.tiny_random import tiny_components, tiny_sosgen

    root = tmp_path_factory.mktemp("pipelines")
    tiny_sosgen().save_pretrained(root / "sosgen")
    StableDiffusionPipeline(
        **tiny_components("pndm"), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    ).save_pretrained(root / "stable-diffusion")
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
                          upsampling_ratios=[8, 5, 4, 2], codebook_size=CODEBOOK, codebook_dim=8, num_lstm_layers=1)  # fmt: skip
    decoder = MusicgenDecoderConfig(vocab_size=CODEBOOK, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, ffn_dim=32, num_codebooks=audio.num_quantizers,
                                    bos_token_id=CODEBOOK, pad_token_id=CODEBOOK, max_position_embeddings=512)  # fmt: skip
    torch.manual_seed(0)
    musicgen = MusicgenForConditionalGeneration(
        MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())
    )
    musicgen.generation_config.decoder_start_token_id = musicgen.generation_config.pad_token_id = CODEBOOK
    with torch.no_grad():  # EnCodec's codebooks start at zero, where every code decodes to the same sound
        for layer in musicgen.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
    musicgen.save_pretrained(root / "musicgen")
    tokenizer.save_pretrained(root / "musicgen")
    return {"sosgen": root / "sosgen", "musicgen": root / "musicgen", "stable-diffusion": root / "stable-diffusion"}


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


def test_musicgen_samples_at_its_own_defaults_for_the_slice_length(sos_eval_dataset, tiny_pipelines, tmp_path):
    """top-k 250 (audiocraft's, not transformers' 50), guidance 3; ceil(d x 50) frames decoded in K - 1 more
    steps (the delay pattern), cut to exactly d seconds."""
    import torch

    slices = load_generation_split(str(sos_eval_dataset), SPLIT, limit=1)
    pipeline = load_slice_pipeline(f"musicgen={tiny_pipelines['musicgen']}", device="cpu")
    assert pipeline.name == "musicgen" and not pipeline.takes_frames
    assert pipeline.num_codebooks == 3 and pipeline.decoding_steps(SECONDS) == 75 + 2
    (path,) = generate_slices(pipeline, slices, tmp_path, duration_s=SECONDS, progress=False).values()
    audio, rate = sf.read(path)
    assert rate == 16_000 and len(audio) == round(SECONDS * rate) and np.abs(audio).max() > 0

    model, tokenizer = pipeline.model, pipeline.tokenizer
    inputs = tokenizer([slices[0]["text"]], padding=True, return_tensors="pt")

    def sample(**settings):
        torch.manual_seed(slice_seed(0, slices[0]["id"]))
        with torch.inference_mode():
            return model.generate(**inputs, max_new_tokens=77, **settings)[0].numpy()

    own = sample(do_sample=True, top_k=250, top_p=1.0, temperature=1.0, guidance_scale=3.0)
    assert own.shape[-1] == 75 * 320  # 75 EnCodec frames of 320 samples: 77 steps less the delay pattern's 2
    # The WAV holds those samples: libsndfile writes round(32767 x) and reads it back / 32768, within 1.5 / 32768.
    np.testing.assert_allclose(audio, own[0, : round(SECONDS * rate)], rtol=0, atol=1.5 / 32768)
    assert not np.array_equal(own, sample(do_sample=True, guidance_scale=3.0))  # the checkpoint's config: top-k 50
    settings = pipeline.settings(with_frames=False)
    assert settings["sampling"].value == "sampling, top-k 250, no top-p, temperature 1"
    assert settings["guidance scale"].value == 3.0 and "audiocraft" in settings["sampling"].whose
    assert settings["model"].whose.startswith("this package's choice") and "not a size" in settings["model"].whose
    with pytest.raises(ValueError, match="cannot take frames"):
        generate_slices(pipeline, slices, tmp_path, with_frames=True, progress=False)


def test_riffusion_denoises_only_its_512_pixel_windows(tiny_pipelines):
    """A 6 s slice (608 px) is two 512-px windows overlapping by 256 px, a 2 s slice (208 px) one 512-px window:
    the UNet never sees another width; the audio is the documented windowed call's, cut to the slice's length."""
    import torch

    from sound_of_story.pipelines import SoSgenPipeline

    pipeline = load_slice_pipeline(f"riffusion={tiny_pipelines['sosgen']}", num_inference_steps=2, device="cpu")
    assert pipeline.name == "riffusion" and pipeline.pipe.config.griffin_lim_method == "exact"
    widths = []
    hook = pipeline.pipe.unet.register_forward_pre_hook(lambda module, args: widths.append(args[0].shape[-1]))
    scale = pipeline.pipe.vae_scale_factor
    try:
        long_clip = pipeline.generate("rain on a roof", 6.0, seed=7)
        assert set(widths) == {512 // scale} and len(widths) == 2 * 2 * 1  # 2 windows x 2 steps (CFG batched)
        widths.clear()
        short_clip = pipeline.generate("rain on a roof", 2.0, seed=7)
        assert set(widths) == {512 // scale} and len(widths) == 2
    finally:
        hook.remove()
    rate = long_clip.sample_rate
    assert long_clip.audio.shape == (1, 6 * rate) and short_clip.audio.shape == (1, 2 * rate)
    assert long_clip.spectrogram.size == (608, 32) and short_clip.spectrogram.size == (512, 32)

    direct = SoSgenPipeline.from_pretrained(tiny_pipelines["sosgen"], window_width=512, window_overlap=256)
    direct.register_to_config(griffin_lim_method="exact")
    direct.set_progress_bar_config(disable=True)
    out = direct("rain on a roof", width=608, num_inference_steps=2, generator=torch.Generator().manual_seed(7))
    np.testing.assert_array_equal(long_clip.audio, out.audios[0][:, : 6 * rate])

    settings = pipeline.settings(with_frames=False)
    assert settings["window width"].value == "512 px = 5.12 s" and "Riffusion" in settings["window width"].whose
    assert settings["Griffin-Lim"].value.startswith("exact: 8 iterations on the 800-point FFT grid, momentum 0.99")
    assert settings["model"].value == "local folder 'sosgen'" and settings["scheduler"].value == "DDIMScheduler"
    assert all(not s.whose.startswith("the paper") for k, s in settings.items() if k != "condition")


def test_riffusion_layout_folders_load_as_the_riffusion_baseline(tiny_pipelines, tmp_path):
    """A StableDiffusionPipeline folder (riffusion-model-v1's layout): by riffusion=FOLDER or on its own."""
    for spec, name in [
        (f"riffusion={tiny_pipelines['stable-diffusion']}", "riffusion"),
        (str(tiny_pipelines["stable-diffusion"]), "stable-diffusion"),
    ]:
        pipeline = load_slice_pipeline(spec, griffin_lim_method="refined", device="cpu")
        assert pipeline.name == name and pipeline.baseline == "riffusion" and pipeline.min_width == 512
        config = pipeline.pipe.config
        assert (config.window_width, config.window_overlap, config.griffin_lim_method) == (512, 256, "refined")
        settings = pipeline.settings(with_frames=False)
        # riffusion-model-v1 carries no spectrogram parameters: Riffusion's, whose refined schedule is 40 + 8.
        assert settings["Griffin-Lim"].value == (
            "refined: 40 iterations on the 4410-point FFT grid, then 8 on the full 17640-point grid (for 32 asked)"
        )
        assert settings["scheduler"].value == "PNDMScheduler"
    with pytest.raises(ValueError, match="not a Riffusion-layout pipeline"):
        load_slice_pipeline(f"riffusion={tiny_pipelines['musicgen']}")
    with pytest.raises(ValueError, match="no config.json of model_type 'musicgen'"):
        load_slice_pipeline(f"musicgen={tiny_pipelines['sosgen']}")
    with pytest.raises(ValueError, match="names a baseline"):
        load_slice_pipeline(f"sosgen={tiny_pipelines['sosgen']}")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_slice_pipeline(f"riffusion={tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="riffusion=FOLDER"):  # the Hub is out of reach in the tests
        load_slice_pipeline("riffusion")


def test_table3_equals_direct_scores_and_names_bad_clips(sos_eval_dataset, tiny_pipelines, tmp_path, capsys):
    out = tmp_path / "out"
    slices = load_generation_split(str(sos_eval_dataset), SPLIT, limit=4)
    ids = list(slices["id"])
    argv = ["evaluate", "generation", "--pipeline", str(tiny_pipelines["sosgen"]), "--dataset", str(sos_eval_dataset), "--split", SPLIT, "--out", str(out), "--limit", "4",
            "--steps", "2", "--duration", str(SECONDS), "--random-weights", "--bootstrap", "200", "--quiet", "--model-card", str(tmp_path / "README.md")]  # fmt: skip
    assert main(argv) == 0
    # A resumed run keeps what is there: here one silent and one too short clip.
    sf.write(out / "sosgen" / "audio" / f"{ids[0]}.wav", np.zeros(32_000), 16_000)
    sf.write(out / "sosgen" / "audio" / f"{ids[1]}.wav", 0.3 * np.ones(8_000), 16_000)
    assert main(argv) == 0
    row = json.loads((out / "table3.json").read_text())["sosgen"]
    assert row["excluded"][ids[0]].startswith("silent") and row["excluded"][ids[1]].startswith("too short")
    table_md = (out / "table3.md").read_text()
    assert f"sosgen/{ids[0]}: silent" in table_md
    usable = check_generated_clips({sid: out / "sosgen" / "audio" / f"{sid}.wav" for sid in ids}).usable
    assert sorted(usable) == sorted(ids[2:]) and row["num_generated"] == 2
    embedder = VGGishEmbedder.from_random_weights()
    pred = np.concatenate(embedder.embed(list(usable.values())))
    refs = reference_audio(slices)
    ref = np.concatenate(embedder.embed([a for a, _ in refs], [r for _, r in refs]))
    assert row["FAD"] == pytest.approx(fad_from_embeddings(pred, ref), rel=1e-6)
    assert row["KAD"] == pytest.approx(kernel_audio_distance(pred, ref), rel=1e-6)
    assert row["FAD_ci"][0] <= row["FAD_ci"][1] and row["random_weights"] is True
    card = (tmp_path / "README.md").read_text()
    assert "model-index" in card and "fad" in card and "; Griffin-Lim exact)" in card
    assert str(sos_eval_dataset) not in card  # rewritten by the resumed run too: the dataset folder is not published

    # Every setting is stated with whose choice it is; the paper's only where it says so.
    settings, scoring = row["settings"], row["scoring"]
    assert (
        settings["Griffin-Lim"]["value"].startswith("exact: 8 iterations")
        and "--griffin-lim exact" in settings["Griffin-Lim"]["whose"]
    )
    assert settings["inference steps"]["value"] == 2 and settings["guidance scale"]["value"] == 7.0
    assert scoring["audio length"]["value"] == "1.5 s (--duration)" and scoring["base seed"]["value"] == 0
    assert scoring["embedder"]["whose"].startswith("the paper (FAD of VGGish embeddings")
    assert [k for k, v in settings.items() if v["whose"].startswith("the paper")] == ["condition"]
    assert "## Settings" in table_md and "### sosgen" in table_md and "| window width | 128 px = 1.28 s |" in table_md
    assert "| base seed | 0 | --seed: this package's choice |" in table_md

    # Clips of other settings are never mixed into one number.
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--griffin-lim", "refined"])
    err = capsys.readouterr().err
    assert (
        exit_info.value.code == 2 and 'other settings (Griffin-Lim: was "exact: 8' in err and 'now "refined: 10' in err
    )
    with pytest.raises(SystemExit) as exit_info:
        main(argv[:-2] + ["--with-frames"])
    assert exit_info.value.code == 2 and "cannot take frames" in capsys.readouterr().err


def test_clips_of_unknown_settings_are_not_resumed(tmp_path):
    from sound_of_story.evaluation.generation import Setting, check_settings

    settings = {"steps": Setting(50, "x"), "Griffin-Lim": Setting("exact", "y")}
    (tmp_path / "old" / "audio").mkdir(parents=True)
    sf.write(tmp_path / "old" / "audio" / "a.wav", np.zeros(100), 16_000)
    with pytest.raises(ValueError, match="no settings.json, so their settings are unknown"):
        check_settings(tmp_path / "old", settings)
    check_settings(tmp_path / "new", settings)  # a fresh folder records them ...
    assert json.loads((tmp_path / "new" / "settings.json").read_text()) == {"steps": 50, "Griffin-Lim": "exact"}
    check_settings(tmp_path / "new", {**settings, "steps": Setting(50, "whose changes nothing")})  # ... and resumes
    with pytest.raises(ValueError, match="steps: was 50, now 30"):
        check_settings(tmp_path / "new", {**settings, "steps": Setting(30, "x")})
