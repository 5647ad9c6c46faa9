"""FAD: VGGish against torchvggish's golden outputs, the Fréchet distance against scipy, batching,
the embedding cache, FAD-infinity, per-clip FAD, the CLAP embedder and the evaluate module."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import evaluate
import numpy as np
import pytest
import scipy.linalg
import soundfile as sf
import torch

from sound_of_story.audio import RESAMPLERS, resample
from sound_of_story.metrics import evaluate_module_path
from sound_of_story.metrics.fad import (
    CHECKPOINT_URL,
    ClapEmbedder,
    EmbeddingCache,
    VGGish,
    VGGishEmbedder,
    compute_fad,
    embedding_statistics,
    fad_from_embeddings,
    fad_infinity,
    frechet_distance,
    load_pca_params,
    per_clip_fad,
    random_vggish_state_dict,
    waveform_to_examples,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden" / "vggish"
PCA_FILE = GOLDEN / "random_vggish_pca_params.pth"
# The golden README's tolerance for log-mels, embeddings and the PCA projection. Its evidence: a float64 network
# differs from float32 by at most 1.3e-5 (values up to 11.3), float32 log-mels from float64 ones by 3.1e-6, so two
# float32 implementations, whatever their kernels, processor or thread count, stay well within 1e-4.
GOLDEN_ATOL = 1e-4
MODES = {
    "relu": dict(final_relu=True),
    "norelu": dict(final_relu=False),
    "pca_relu": dict(final_relu=True, pca=True),
    "pca_norelu": dict(final_relu=False, pca=True),
}

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*rank-deficient:UserWarning", "ignore:embedder weights are RANDOM:UserWarning"
)


# ------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_weights() -> dict[str, torch.Tensor]:
    return random_vggish_state_dict(seed=0)


@pytest.fixture(scope="module")
def embedders(random_weights) -> dict[str, VGGishEmbedder]:
    """One embedder per golden mode; the four models share the same weight tensors (no copies)."""
    pca = load_pca_params(PCA_FILE)
    out = {}
    for mode, options in MODES.items():
        model = VGGish.from_state_dict(
            random_weights, final_relu=options["final_relu"], pca_params=pca if options.get("pca") else None
        )
        model.random_weights = True
        out[mode] = VGGishEmbedder(model, weights_name="RANDOM weights, seed 0")
    return out


@pytest.fixture(scope="module")
def case_a() -> tuple[np.ndarray, int]:
    audio, rate = sf.read(GOLDEN / "caseA_input_float32.wav")  # float64 holding the float32 values, as the golden run
    return audio, rate


def sine(seconds: float, freq: float, rate: int = 16_000, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ------------------------------------------------------------------------------------------
# VGGish against torchvggish (golden)
# ------------------------------------------------------------------------------------------


def test_random_weights_reproduce_the_golden_fingerprint(random_weights):
    fingerprint = json.loads((GOLDEN / "random_vggish_weights_fingerprint.json").read_text())
    assert list(random_weights) == list(fingerprint)  # same keys, same file order
    for key, expected in fingerprint.items():
        tensor = random_weights[key]
        assert list(tensor.shape) == expected["shape"] and tensor.dtype == torch.float32
        assert hashlib.sha256(tensor.numpy().astype("<f4").tobytes()).hexdigest() == expected["sha256"], key
        values = tensor.double()
        assert float(values.sum()) == pytest.approx(expected["sum"], rel=1e-9, abs=1e-9)
        assert float((values**2).sum()) == pytest.approx(expected["sum_sq"], rel=1e-9)
        assert tensor.flatten()[:4].tolist() == expected["first4"]


@pytest.mark.parametrize("case", ["caseA", "caseA_1s"])
def test_log_mel_examples_match_torchvggish(case, case_a):
    audio, rate = case_a
    if case == "caseA_1s":
        audio = audio[:16_000]
    expected = np.load(GOLDEN / f"{case}_examples.npy")
    examples = waveform_to_examples(audio, rate)
    assert examples.dtype == torch.float32 and tuple(examples.shape) == expected.shape
    np.testing.assert_allclose(examples.numpy(), expected, rtol=0, atol=GOLDEN_ATOL)


def test_log_mel_examples_of_the_int16_file_match_torchvggish(embedders):
    examples = embedders["relu"].model_inputs(
        sf.read(GOLDEN / "caseA_input_int16.wav", dtype="float32")[0], "caseA_int16"
    )
    np.testing.assert_allclose(
        examples.numpy(), np.load(GOLDEN / "caseA_int16_examples.npy"), rtol=0, atol=GOLDEN_ATOL
    )


def assert_matches_golden(mode: str, ours: np.ndarray, golden: dict[str, np.ndarray]) -> None:
    # torchvggish squeezes a one-example PCA batch to (128,); we keep (1, 128)
    expected = golden[mode].reshape(ours.shape)
    if mode.startswith("pca"):
        # q = round((clamp(p, -2, 2) + 2) * 255 / 4). The projection p is within GOLDEN_ATOL of the golden's, which moves
        # the rounded argument by at most 63.75 * GOLDEN_ATOL: q may differ (by 1) only where the golden's argument lies
        # that close to a rounding boundary (x.5), and must equal the golden everywhere else.
        argument = (np.clip(golden[f"{mode}_prequant"].reshape(ours.shape), -2, 2) + 2) * 255 / 4
        near_boundary = np.abs(argument - np.floor(argument) - 0.5) <= 255 / 4 * GOLDEN_ATOL
        delta = np.abs(ours - expected)
        assert delta.max() <= 1.0 and not delta[~near_boundary].any(), (
            f"{mode}: max |Δ| {delta.max()}; entries away from a rounding boundary that differ: "
            f"{np.argwhere((delta > 0) & ~near_boundary).tolist()}"
        )
        assert set(np.unique(ours)) <= set(range(256))
    else:
        np.testing.assert_allclose(ours, expected, rtol=GOLDEN_ATOL, atol=GOLDEN_ATOL, err_msg=mode)


def golden_case_clip(case: str, case_a: tuple[np.ndarray, int]) -> np.ndarray | Path:
    audio, _ = case_a
    return {"caseA": audio, "caseA_1s": audio[:16_000], "caseA_int16": GOLDEN / "caseA_input_int16.wav"}[
        case
    ]  # the int16 case is read from its path


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case", ["caseA", "caseA_int16", "caseA_1s"])
def test_embeddings_match_torchvggish_in_every_mode(case, mode, embedders, case_a):
    golden = np.load(GOLDEN / f"{case}_embeddings.npz")
    (ours,) = embedders[mode].embed([golden_case_clip(case, case_a)], sample_rate=case_a[1])
    assert ours.shape == ((1 if case == "caseA_1s" else 3), 128)
    assert_matches_golden(mode, ours, golden)


@pytest.mark.parametrize("mode", ["pca_relu", "pca_norelu"])
@pytest.mark.parametrize("case", ["caseA", "caseA_int16", "caseA_1s"])
def test_pca_projection_before_quantisation_matches_torchvggish(case, mode, embedders, case_a):
    """The premise of the quantised comparison above: the projection is within GOLDEN_ATOL of the golden's."""
    (raw,) = embedders[mode.removeprefix("pca_")].embed([golden_case_clip(case, case_a)], sample_rate=case_a[1])
    with torch.inference_mode():
        projected = embedders[mode].model.pproc.project(torch.from_numpy(raw)).numpy()
    golden = np.load(GOLDEN / f"{case}_embeddings.npz")[f"{mode}_prequant"]
    np.testing.assert_allclose(projected, golden, rtol=0, atol=GOLDEN_ATOL)


def test_checkpoint_file_round_trip_with_weights_only(random_weights, embedders, case_a, tmp_path):
    checkpoint = tmp_path / "vggish-10086976.pth"
    torch.save(random_weights, checkpoint)  # the release file's format: a plain state dict
    loaded = VGGishEmbedder.from_checkpoint(checkpoint)
    assert not loaded.random_weights and "vggish-10086976.pth" in loaded.description
    audio, rate = case_a
    np.testing.assert_array_equal(loaded.embed([audio], rate)[0], embedders["norelu"].embed([audio], rate)[0])
    # A file that is not a VGGish state dict is named in the error
    bad = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(64, 1, 3, 3)}, bad)
    with pytest.raises(ValueError, match=r"other\.pth.*missing keys"):
        VGGishEmbedder.from_checkpoint(bad)


def test_missing_checkpoint_says_where_the_weights_come_from(tmp_path):
    with pytest.raises(ValueError, match="vggish-10086976.pth") as err:
        VGGishEmbedder.from_checkpoint(None)
    assert CHECKPOINT_URL in str(err.value) and "random weights" in str(err.value)
    with pytest.raises(FileNotFoundError, match=CHECKPOINT_URL):
        VGGishEmbedder.from_checkpoint(tmp_path / "nowhere.pth")


def test_pca_params_from_npz_equal_the_torchvggish_file(tmp_path):
    eigen_vectors, means = load_pca_params(PCA_FILE)
    assert eigen_vectors.shape == (128, 128) and means.shape == (128,) and eigen_vectors.dtype == np.float64
    np.savez(tmp_path / "vggish_pca_params.npz", pca_eigen_vectors=eigen_vectors, pca_means=means)  # Google's format
    loaded = load_pca_params(tmp_path / "vggish_pca_params.npz")
    np.testing.assert_array_equal(loaded[0], eigen_vectors)
    np.testing.assert_array_equal(loaded[1], means)


# ------------------------------------------------------------------------------------------
# Input handling
# ------------------------------------------------------------------------------------------


def test_short_clips_are_an_error_unless_padding_is_asked(embedders):
    embedder = embedders["norelu"]
    with pytest.raises(ValueError, match=r"array clip 1 is 0\.975 s.*at least 15600"):
        embedder.embed([sine(2.0, 440), np.zeros(15_599, np.float32)], sample_rate=16_000)
    assert embedder.embed([np.zeros(15_600, np.float32) + 0.1], sample_rate=16_000)[0].shape == (1, 128)
    short = sine(0.5, 440)
    padded = VGGishEmbedder(embedder.model, weights_name="same", pad_short_clips=True).embed(
        [short], sample_rate=16_000
    )[0]
    np.testing.assert_allclose(
        padded, embedder.embed([np.pad(short, (0, 8_000))], sample_rate=16_000)[0], rtol=0, atol=1e-5
    )


def test_stereo_is_averaged_and_samples_first_is_refused(embedders):
    embedder = embedders["norelu"]
    left, right = sine(2.0, 440), sine(2.0, 950)
    stereo = np.stack([left, right])  # (channels, samples), the package's layout
    np.testing.assert_allclose(
        embedder.embed([stereo], 16_000)[0], embedder.embed([(left + right) / 2], 16_000)[0], rtol=0, atol=1e-5
    )
    with pytest.raises(ValueError, match=r"looks like \(samples, channels\)"):
        embedder.embed([stereo.T], 16_000)


def test_44k_stereo_gives_torchvggish_examples_with_resampy(embedders, tmp_path):
    """torchvggish reads a file as (samples, channels) int16 / 32768, averages the channels
    (axis 1) and calls resampy.resample(x, 44100, 16000): our default path is that, exactly."""
    import resampy

    from sound_of_story.metrics.fad.vggish import log_mel_spectrogram

    rate = 44_100
    t = np.arange(int(2.3 * rate)) / rate
    stereo = np.stack([0.3 * np.sin(2 * np.pi * (300 * t + 500 * t**2)), 0.2 * np.sin(2 * np.pi * 2500 * t)], axis=1)
    sf.write(tmp_path / "stereo_44k.wav", stereo, rate, subtype="PCM_16")
    data, _ = sf.read(tmp_path / "stereo_44k.wav", dtype="int16")
    torchvggish_wave = resampy.resample(np.mean(data / 32768.0, axis=1), rate, 16_000)  # vggish_input.py, float64
    ours = embedders["norelu"].embed([tmp_path / "stereo_44k.wav"])[0]
    expected = embedders["norelu"].embed([torchvggish_wave.astype(np.float32)], 16_000)[0]  # no resampling at 16 kHz
    np.testing.assert_allclose(ours, expected, rtol=GOLDEN_ATOL, atol=GOLDEN_ATOL)
    assert np.abs(log_mel_spectrogram(torchvggish_wave)).max() > 1.0
    # torchaudio's Kaiser sinc is the faster option; it moves the embeddings, which the module card states
    fast = VGGishEmbedder(embedders["norelu"].model, weights_name="same", resampler="torchaudio").embed(
        [tmp_path / "stereo_44k.wav"]
    )[0]
    assert 1e-4 < np.abs(fast - expected).max() < 0.5


def test_float_wav_files_are_read_at_their_real_scale(embedders, case_a, tmp_path):
    audio, rate = case_a
    sf.write(tmp_path / "float.wav", audio.astype(np.float32), rate, subtype="FLOAT")
    embedder = embedders["norelu"]
    np.testing.assert_allclose(
        embedder.embed([tmp_path / "float.wav"])[0], embedder.embed([audio], rate)[0], rtol=0, atol=1e-5
    )


def test_resampling_removes_aliases_and_keeps_the_band():
    """A band-limited signal made at 48 kHz with a 12 kHz tone on top, resampled to 16 kHz,
    gives the log-mels of the same signal made directly at 16 kHz (naive decimation would fold
    the 12 kHz tone onto 4 kHz)."""

    def signal(rate: int, alias_tone: bool) -> np.ndarray:
        t = np.arange(int(3.5 * rate)) / rate
        x = 0.3 * np.sin(2 * np.pi * (200 * t + 400 * t**2)) + 0.2 * np.sin(2 * np.pi * 1000 * t) * (
            0.5 + 0.5 * np.cos(2 * np.pi * 0.7 * t)
        )
        return (x + (0.2 * np.sin(2 * np.pi * 12_000 * t) if alias_tone else 0)).astype(np.float32)

    direct = waveform_to_examples(signal(16_000, False)).numpy()
    for method in RESAMPLERS:
        resampled = resample(signal(48_000, True), 48_000, 16_000, method=method)
        assert resampled.shape == (56_000,)  # floor(n * 16000 / 48000), as resampy
        delta = np.abs(waveform_to_examples(resampled).numpy() - direct)
        assert delta.mean() < 2e-3 and delta.max() < 0.1, method  # resampy: 1.04e-3, torchaudio: below 1e-3
    naive = np.abs(waveform_to_examples(signal(48_000, True)[::3]).numpy() - direct)
    assert naive.mean() > 100 * delta.mean()


def test_bad_inputs_are_named(embedders, tmp_path):
    embedder = embedders["norelu"]
    with pytest.raises(ValueError, match="array clip 0 is an array: pass its sample_rate"):
        embedder.embed([sine(1.0, 440)])
    with pytest.raises(ValueError, match="NaN or inf"):
        embedder.embed([np.full(16_000, np.nan, np.float32)], 16_000)
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        embedder.embed([tmp_path / "missing.wav"])
    (tmp_path / "notaudio.wav").write_bytes(b"not a wav file")
    with pytest.raises(ValueError, match="notaudio.wav"):
        embedder.embed([tmp_path / "notaudio.wav"])


# ------------------------------------------------------------------------------------------
# Batching and caching
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_clips(tmp_path_factory) -> list:
    """Clips of different lengths and rates: 16 kHz arrays, a 22.05 kHz stereo file, a 44.1 kHz file."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    clips: list = [
        sine(1.2, 300) + 0.01 * rng.standard_normal(19_200).astype(np.float32),
        sine(2.5, 520),
        sine(3.3, 1200),
    ]
    stereo = np.stack([sine(2.1, 700, 22_050), sine(2.1, 140, 22_050)], axis=1)  # soundfile writes (samples, channels)
    sf.write(folder / "stereo_22k.wav", stereo, 22_050, subtype="PCM_16")
    sf.write(folder / "mono_44k.flac", sine(1.7, 880, 44_100), 44_100)
    return clips + [folder / "stereo_22k.wav", folder / "mono_44k.flac"]


class CountingEmbedder(VGGishEmbedder):
    """Counts forward passes, to see what batching and the cache spare."""

    forwards = 0

    def forward_batch(self, inputs):
        self.forwards += 1
        return super().forward_batch(inputs)


@pytest.fixture(scope="module")
def float64_embedder(random_weights) -> VGGishEmbedder:
    """The norelu embedder with its network in float64; embed() still returns float32 embeddings."""

    class Float64Embedder(CountingEmbedder):
        def forward_batch(self, inputs):
            return super().forward_batch(inputs.double())

    model = VGGish.from_state_dict(random_weights, final_relu=False).double()
    model.random_weights = True
    return Float64Embedder(model, weights_name="RANDOM weights, seed 0, float64")


# A float32 network's output for an example depends on the batch it runs in and on the processor (the kernels block
# and sum in other orders), by up to ~1e-5 for VGGish. In float64 two orders differ by round-off: at most
# 2 K u sum|terms| for sums of K <= 12288 terms (VGGish's longest; u = 2**-53), under 1e-9 (measured: 2e-14). The
# embedders round their outputs to float32, which adds at most one float32 ulp (rtol 2**-22 covers a binade edge).
FLOAT64_BATCH_ATOL, FLOAT32_ROUNDING_RTOL = 1e-9, 2.0**-22


def test_batched_embeddings_equal_one_clip_at_a_time(float64_embedder, mixed_clips):
    embedder = float64_embedder
    embedder.forwards = 0
    batched = embedder.embed(mixed_clips, sample_rate=16_000, batch_size=4)
    assert [e.shape[0] for e in batched] == [1, 2, 3, 2, 1]
    assert embedder.forwards == 3  # 9 examples in passes of 4, 4 and 1: clips share passes, clip 2 spans two
    for clip, together in zip(mixed_clips, batched):
        (alone,) = embedder.embed([clip], sample_rate=16_000, batch_size=64)
        assert together.dtype == np.float32
        np.testing.assert_allclose(together, alone, rtol=FLOAT32_ROUNDING_RTOL, atol=FLOAT64_BATCH_ATOL)
    assert embedder.forwards == 3 + 5


def test_cache_hits_return_the_same_without_recomputing(embedders, mixed_clips, tmp_path):
    model = embedders["norelu"].model
    cache = EmbeddingCache(tmp_path / "cache")
    first = CountingEmbedder(model, weights_name="random")
    computed = first.embed(mixed_clips, sample_rate=16_000, cache=cache)
    assert first.forwards > 0
    second = CountingEmbedder(model, weights_name="random")
    cached = second.embed(mixed_clips, sample_rate=16_000, cache=cache)
    assert second.forwards == 0
    for a, b in zip(computed, cached):
        np.testing.assert_array_equal(a, b)
    # keyed by content: a renamed copy hits, an edited file misses
    copy = tmp_path / "renamed.wav"
    shutil.copy(mixed_clips[3], copy)
    np.testing.assert_array_equal(second.embed([copy], cache=cache)[0], computed[3])
    assert second.forwards == 0
    audio, rate = sf.read(copy)
    sf.write(copy, audio * 0.5, rate, subtype="PCM_16")
    second.embed([copy], cache=cache)
    assert second.forwards == 1
    # a different embedder configuration never reads these entries
    other = CountingEmbedder(embedders["relu"].model, weights_name="random")
    assert other.fingerprint() != second.fingerprint()
    other.embed(mixed_clips[:1], sample_rate=16_000, cache=cache)
    assert other.forwards == 1


# ------------------------------------------------------------------------------------------
# Fréchet distance
# ------------------------------------------------------------------------------------------


def scipy_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """frechet-audio-distance's formula (scipy sqrtm of the non-symmetric product)."""
    covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2).astype(complex))
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean).real)


def exact_frechet(first: np.ndarray, second: np.ndarray) -> float:
    """FD of two embedding sets of any rank, with no matrix square root.

    With A and B the centred sets divided by sqrt(n - 1), the covariances are A^T A and B^T B, and
    tr (A^T A B^T B)^(1/2) is the sum of the singular values of A B^T (n1 x n2). The SVD is backward stable at any
    rank, where scipy's sqrtm of a singular product is ill-conditioned: on the rank-deficient sets below it is off
    by 1e-9 to 4e-8 relative, by amounts that change with the BLAS kernels (processor, thread count).
    """
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    a = (first - first.mean(0)) / np.sqrt(len(first) - 1)
    b = (second - second.mean(0)) / np.sqrt(len(second) - 1)
    diff = first.mean(0) - second.mean(0)
    return float(diff @ diff + (a * a).sum() + (b * b).sum() - 2 * np.linalg.svd(a @ b.T, compute_uv=False).sum())


# The package (eigh of symmetric matrices, eigenvalues within d eps of 0 set to 0) and exact_frechet are both float64
# and backward stable: they agree to round-off, ~1e-15 relative here. A square root taken of a round-off eigenvalue
# (what rank-deficient covariances invite) would add about sqrt(eps) ~ 1.5e-8 relative; 1e-9 catches that.
EXACT_FRECHET_RTOL = 1e-9


@pytest.mark.parametrize("dim,n1,n2", [(16, 200, 300), (64, 400, 250), (128, 600, 700)])
def test_frechet_distance_agrees_with_scipy_sqrtm(dim, n1, n2):
    rng = np.random.default_rng(dim)
    mix = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    first = rng.standard_normal((n1, dim)) @ mix
    second = rng.standard_normal((n2, dim)) @ (mix + 0.3 * rng.standard_normal((dim, dim)) / np.sqrt(dim)) + 0.2
    stats1, stats2 = embedding_statistics(first), embedding_statistics(second)
    np.testing.assert_allclose(stats1[1], np.cov(first, rowvar=False), rtol=1e-12)
    ours = frechet_distance(*stats1, *stats2)
    # Full-rank covariances: sqrtm is well-conditioned here, and the module documents agreement to 1e-6 relative.
    assert ours == pytest.approx(scipy_frechet(*stats1, *stats2), rel=1e-6)
    assert fad_from_embeddings(first, second) == ours
    assert frechet_distance(*stats2, *stats1) == pytest.approx(ours, rel=1e-9)


def test_frechet_distance_is_stable_for_rank_deficient_covariances():
    rng = np.random.default_rng(1)
    dim = 32
    q = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    a = np.where(np.arange(dim) < 10, rng.uniform(0.5, 2.0, dim), 0.0)  # rank 10
    b = np.where(np.arange(dim) < 6, rng.uniform(0.5, 2.0, dim), 0.0)  # rank 6
    sigma1, sigma2 = (q * a) @ q.T, (q * b) @ q.T
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
    # Commuting covariances: tr (S1 S2)^(1/2) = sum sqrt(a_i b_i), so FD has a closed form.
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-9)
    # Few embeddings in many dimensions: finite, symmetric, zero against itself.
    few = rng.standard_normal((20, 128))
    other = rng.standard_normal((25, 128)) + 0.1
    with pytest.warns(UserWarning, match="rank-deficient"):
        stats = embedding_statistics(few)
    value = fad_from_embeddings(few, other)
    assert np.isfinite(value) and value > 0
    assert fad_from_embeddings(other, few) == pytest.approx(value, rel=1e-9)
    assert frechet_distance(*stats, *stats) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_errors_are_clear():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="at least two embeddings"):
        embedding_statistics(rng.standard_normal((1, 8)))
    with pytest.raises(ValueError, match="at least two embeddings"):
        fad_from_embeddings(rng.standard_normal((10, 8)), rng.standard_normal((1, 8)))
    with pytest.raises(ValueError, match="NaN or inf"):
        embedding_statistics(np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 1.0]]))
    with pytest.raises(ValueError, match="different embedding dimensions"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="not positive semi-definite"):
        frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))


def test_fad_infinity_removes_the_small_sample_bias():
    rng = np.random.default_rng(3)
    dim = 8
    samples = rng.standard_normal((3000, dim))  # true distribution N(0, I): the true FD is 0
    reference_mu, reference_sigma = np.zeros(dim), np.eye(dim)
    plain = frechet_distance(*embedding_statistics(samples[:300]), reference_mu, reference_sigma)
    result = fad_infinity(samples, reference_mu, reference_sigma, steps=10, min_n=100, seed=0)
    assert plain > 0.02 and abs(result.value) < plain / 4  # bias ~ dim^2/(2n) gone
    assert result.slope > 0 and 0.0 <= result.r2 <= 1.0
    ns = [n for n, _ in result.points]
    assert ns[0] == 100 and ns[-1] == 3000 and len(ns) == 10
    slope, intercept = np.polyfit(1.0 / np.array(ns), [v for _, v in result.points], 1)
    assert (result.value, result.slope) == pytest.approx((intercept, slope), rel=1e-9)
    assert fad_infinity(samples, reference_mu, reference_sigma, steps=10, min_n=100, seed=0) == result  # seeded
    with pytest.raises(ValueError, match="more than min_n"):
        fad_infinity(samples[:50], reference_mu, reference_sigma, min_n=500)


def test_per_clip_fad_is_each_clips_distance_to_the_reference():
    rng = np.random.default_rng(4)
    reference = rng.standard_normal((200, 6))
    clips = [rng.standard_normal((n, 6)) + shift for n, shift in [(5, 0.0), (9, 1.0), (3, -2.0)]]
    mu, sigma = embedding_statistics(reference)
    scores = per_clip_fad(clips, mu, sigma)
    np.testing.assert_allclose(scores, [exact_frechet(c, reference) for c in clips], rtol=EXACT_FRECHET_RTOL)
    assert scores[0] < scores[1] and scores[0] < scores[2]
    with pytest.raises(ValueError, match="short.wav"):
        per_clip_fad([clips[0], rng.standard_normal((1, 6))], mu, sigma, names=["ok.wav", "short.wav"])


# ------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------


def test_compute_fad_equals_an_independent_computation(embedders, float64_embedder, mixed_clips):
    embedder = float64_embedder  # batches of 8 below, of one clip in the independent path: see FLOAT64_BATCH_ATOL
    rng = np.random.default_rng(5)
    references = [sine(3.0, f) + 0.02 * rng.standard_normal(48_000).astype(np.float32) for f in (220, 330, 440, 660)]
    result = compute_fad(mixed_clips, references, embedder, sample_rate=16_000, batch_size=8)
    # independent path: the network directly on torchvggish examples, the FD from singular values
    with torch.inference_mode():
        ref_frames = np.concatenate(
            [embedder.model(waveform_to_examples(r).double()).float().numpy() for r in references]
        )
    pred_frames = np.concatenate(embedder.embed(mixed_clips, 16_000))
    # Both sides' embeddings are float64 results rounded to float32, equal but for a rare one-ulp (2**-23 relative)
    # difference; the FD, a squared distance of the two sets, moves by about twice a relative change of the embeddings.
    assert result.fad == pytest.approx(exact_frechet(pred_frames, ref_frames), rel=1e-6)
    assert (result.num_pred_clips, result.num_ref_clips, result.num_pred_embeddings, result.num_ref_embeddings) == (
        5,
        4,
        9,
        12,
    )
    assert result.random_weights and "RANDOM" in result.warning and "RANDOM" in result.embedder
    # The same set on both sides: an FD of round-off only, of order d u tr(2 Sigma) ~ 2e-12 (tr Sigma = 73 here); a
    # square root of a round-off eigenvalue would leave ~1e-7.
    same = compute_fad(references, references, embedders["norelu"], sample_rate=16_000)
    assert same.fad == pytest.approx(0.0, abs=1e-9)


def test_compute_fad_per_clip_and_fad_infinity(embedders, mixed_clips):
    embedder = embedders["norelu"]
    references = [sine(3.0, f) for f in (220, 330, 440, 660)]
    with pytest.raises(
        ValueError, match=r"too short: array clip 0, .*mono_44k\.flac"
    ):  # 1.2 s and 1.7 s give one example each
        compute_fad(mixed_clips, references, embedder, sample_rate=16_000, per_clip=True)
    result = compute_fad(
        mixed_clips[1:4],
        references,
        embedder,
        sample_rate=16_000,
        per_clip=True,
        fad_inf=True,
        fad_inf_min_n=2,
        fad_inf_steps=4,
    )
    frames = embedder.embed(mixed_clips[1:4], 16_000)  # the batches compute_fad ran: the same embeddings
    ref_frames = np.concatenate(embedder.embed(references, 16_000))
    ref_stats = embedding_statistics(ref_frames)
    np.testing.assert_allclose(
        result.per_clip_fad, [exact_frechet(f, ref_frames) for f in frames], rtol=EXACT_FRECHET_RTOL
    )
    assert result.pred_clip_names[2].endswith("stereo_22k.wav")
    expected_inf = fad_infinity(np.concatenate(frames), *ref_stats, steps=4, min_n=2, seed=0)
    assert result.fad_infinity == expected_inf and [n for n, _ in expected_inf.points] == [2, 3, 5, 7]


# ------------------------------------------------------------------------------------------
# CLAP through the same interface
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_clap():
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    audio = dict(spec_size=64, patch_size=4, patch_stride=(4, 4), hidden_size=16, patch_embeds_hidden_size=8, depths=[1, 1], num_attention_heads=[1, 1],
                 window_size=4, num_mel_bins=16, projection_dim=16, enable_fusion=False, mlp_ratio=1.0)  # fmt: skip
    text = dict(
        vocab_size=99,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=8,
        projection_dim=16,
        max_position_embeddings=40,
    )

    class Float64ClapModel(ClapModel):
        """Runs in float64 on the feature extractor's float32 features (see FLOAT64_BATCH_ATOL)."""

        def get_audio_features(self, input_features, *args, **kwargs):
            return super().get_audio_features(input_features.double(), *args, **kwargs)

    torch.manual_seed(0)
    model = Float64ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=16)).double().eval()
    # 1 s windows at 16 kHz (the real checkpoint: 10 s at 48 kHz), 16 mel bands to fit the tiny model
    features = ClapFeatureExtractor(
        feature_size=16, sampling_rate=16_000, hop_length=160, max_length_s=1, fft_window_size=256, frequency_max=7000
    )
    return model, features


def test_clap_embedder_windows_batches_and_matches_the_model(tiny_clap, tmp_path):
    model, features = tiny_clap
    embedder = ClapEmbedder(model, features, model_name="tiny-clap", hop_seconds=0.5, random_weights=True)
    assert embedder.sample_rate == 16_000 and embedder.embedding_dim == 16 and "RANDOM" in embedder.description
    clips = [sine(1.0, 440), sine(1.7, 300, 32_000), sine(0.4, 900)]
    rates = [16_000, 32_000, 16_000]
    batched = embedder.embed(clips, sample_rate=rates, batch_size=3)
    assert [e.shape for e in batched] == [(2, 16), (4, 16), (1, 16)]  # windows start every 0.5 s
    for clip, rate, together in zip(clips, rates, batched):
        alone = embedder.embed([clip], sample_rate=rate)[0]
        np.testing.assert_allclose(together, alone, rtol=FLOAT32_ROUNDING_RTOL, atol=FLOAT64_BATCH_ATOL)
    # the first window of the first clip, straight through transformers (float64, not rounded)
    quantised = (clips[0] * 32767.0).astype(np.int16).astype(np.float32) / 32767.0
    inputs = features([quantised], sampling_rate=16_000, truncation="rand_trunc", return_tensors="pt")
    with torch.inference_mode():
        direct = model.get_audio_features(**inputs).pooler_output.numpy()
    np.testing.assert_allclose(batched[0][:1], direct, rtol=FLOAT32_ROUNDING_RTOL, atol=FLOAT64_BATCH_ATOL)
    # unit vectors in float64, each entry then rounded to float32 (relative error <= 2**-24): the norm is 1 within that
    np.testing.assert_allclose(np.linalg.norm(batched[1].astype(np.float64), axis=1), 1.0, rtol=FLOAT32_ROUNDING_RTOL)
    result = compute_fad(
        clips[:2],
        [sine(1.5, 200), sine(1.5, 250)],
        embedder,
        sample_rate=[16_000, 32_000],
        reference_sample_rate=16_000,
    )
    assert result.fad > 0 and result.num_pred_embeddings == 6 and result.random_weights
    # the cache works the same for CLAP, keyed apart from any VGGish entry
    cache = EmbeddingCache(tmp_path / "cache")
    first = embedder.embed(clips, sample_rate=rates, cache=cache)
    assert len(list((tmp_path / "cache" / embedder.fingerprint()[:16]).glob("*.npy"))) == 3
    for a, b in zip(first, embedder.embed(clips, sample_rate=rates, cache=cache)):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------
# evaluate module
# ------------------------------------------------------------------------------------------


def test_evaluate_fad_module_matches_the_function(embedders, mixed_clips, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    fad = evaluate.load("metrics/fad")
    references = [sine(2.0, f) for f in (250, 500, 750)]
    predictions = mixed_clips[1:3]  # 2.5 s and 3.3 s arrays: at least two frames each, for per-clip FAD
    embedder = embedders["norelu"]
    out = fad.compute(
        predictions=predictions, references=references, sampling_rate=16_000, embedder=embedder, per_clip=True
    )
    expected = compute_fad(predictions, references, embedder, sample_rate=16_000, per_clip=True)
    assert out["fad"] == pytest.approx(expected.fad, rel=1e-6)
    assert out["per_clip_fad"] == pytest.approx(expected.per_clip_fad, rel=1e-6)
    assert out["random_weights"] is True and "RANDOM" in out["warning"]
    # file paths as predictions, streamed with add_batch; absolute-path loading
    by_path = evaluate.load(evaluate_module_path("fad"))
    by_path.add_batch(predictions=[str(mixed_clips[3]), str(mixed_clips[4])])
    out = by_path.compute(references=references, sampling_rate=16_000, embedder=embedder)
    assert out["fad"] == pytest.approx(
        compute_fad(mixed_clips[3:], references, embedder, sample_rate=16_000).fad, rel=1e-6
    )
    with pytest.raises(ValueError, match="compute\\(references="):
        by_path.add_batch(predictions=[str(mixed_clips[3])], references=[str(mixed_clips[4])])


def test_evaluate_fad_module_needs_a_checkpoint_or_explicit_random_weights(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    fad = evaluate.load("metrics/fad")
    predictions, references = [sine(2.0, 300), sine(2.0, 400)], [sine(2.0, 500), sine(2.0, 600)]
    with pytest.raises(ValueError, match="vggish-10086976.pth") as err:
        fad.compute(predictions=predictions, references=references, sampling_rate=16_000)
    assert CHECKPOINT_URL in str(err.value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fad.compute(predictions=predictions, references=references, sampling_rate=16_000, random_weights=True)
    assert out["random_weights"] is True and "RANDOM" in out["embedder"] and "not comparable" in out["warning"]
    assert out["num_pred_embeddings"] == 4 and out["fad"] > 0


def test_make_embedder_builds_by_name_and_refuses_options_it_would_ignore():
    """The one choice of embedder behind `evaluate fad`, Table 3 and the evaluate module: VGGish's options build the
    same embedder as the class method, and options that do not apply raise instead of being dropped."""
    from sound_of_story.metrics.fad import make_embedder

    by_name = make_embedder("vggish", random_weights=True, pad_short_clips=True, final_relu=True)
    direct = VGGishEmbedder.from_random_weights(pad_short_clips=True, final_relu=True)
    assert by_name.fingerprint() == direct.fingerprint()
    assert by_name.random_weights and by_name.pad_short_clips
    with pytest.raises(ValueError, match="random_weights, pad_short_clips: VGGish options"):
        make_embedder("clap", random_weights=True, pad_short_clips=True)
    with pytest.raises(ValueError, match="not both"):
        make_embedder("vggish", random_weights=True, vggish_checkpoint="vggish.pth")
    with pytest.raises(ValueError, match="one of vggish, clap"):
        make_embedder("pann")
