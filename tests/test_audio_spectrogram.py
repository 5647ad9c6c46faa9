"""The Riffusion-compatible spectrogram converter: golden Riffusion output, torchaudio equivalence, round trips."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio
from PIL import Image, TiffImagePlugin

from sound_of_story.audio.spectrogram import (
    EXIF_MAX_VALUE,
    EXIF_TAGS,
    SpectrogramConverter,
    SpectrogramParams,
    audio_to_image,
    get_converter,
    image_to_audio,
    images_from_pil,
    load_audio,
    save_audio,
)

GOLDEN = Path(__file__).resolve().parent / "golden" / "riffusion"
META = json.loads((GOLDEN / "meta.json").read_text())

# Small parameters for fast checks: 8 kHz, hop 80, window 400 in an 800-sample frame, 32 mels to 3 kHz.
SMALL = SpectrogramParams(
    sample_rate=8000,
    step_size_ms=10,
    window_duration_ms=50,
    padded_duration_ms=100,
    num_frequencies=32,
    max_frequency=3000,
)
SMALL_STEREO = SpectrogramParams(**{**SMALL.to_dict(), "stereo": True})


def torchaudio_mel(params: SpectrogramParams) -> torchaudio.transforms.MelSpectrogram:
    """Riffusion's forward transform, built from torchaudio as Riffusion builds it."""
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=params.sample_rate,
        n_fft=params.n_fft,
        win_length=params.win_length,
        hop_length=params.hop_length,
        f_min=params.min_frequency,
        f_max=params.max_frequency,
        n_mels=params.num_frequencies,
        power=1.0,
        norm=params.mel_scale_norm,
        mel_scale=params.mel_scale_type,
    )


def spectral_convergence(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Golden README's SC = ||S - a S^|| / ||S|| with the least-squares gain a."""
    reference, estimate = reference.double(), estimate.double()
    gain = (reference * estimate).sum() / (estimate * estimate).sum()
    return float((reference - gain * estimate).norm() / reference.norm())


def exif_types(path: Path) -> dict[int, int]:
    raw = Image.open(path).info["exif"]
    data = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    ifd = TiffImagePlugin.ImageFileDirectory_v2(data[:8])
    stream = io.BytesIO(data)
    stream.seek(8)
    ifd.load(stream)
    return dict(ifd.tagtype)


def test_params_are_riffusion_defaults():
    params = SpectrogramParams()
    assert (params.hop_length, params.win_length, params.n_fft, params.num_frequencies) == (441, 4410, 17640, 512)
    assert (params.min_frequency, params.max_frequency, params.power_for_image, params.num_griffin_lim_iters) == (
        0,
        10000,
        0.25,
        32,
    )
    assert params.columns_per_second == 100
    assert params.width_for_num_samples(225792) == 513  # golden case A: 5.12 s -> 513 columns
    assert params.width_for_num_samples(15 * 44100) == 1501
    assert params.num_samples_for_width(512) == 225351  # what Riffusion's inverse returns for 512 columns
    assert SpectrogramParams.from_exif(params.to_exif()) == params
    assert SpectrogramParams.from_dict({**SMALL.to_dict(), "unrelated": 1}) == SMALL


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sample_rate": 0}, "sample_rate"),
        ({"max_frequency": 30000}, "max_frequency"),
        ({"window_duration_ms": 500}, "window_duration_ms"),
        ({"mel_scale_type": "bark"}, "mel_scale_type"),
        ({"power_for_image": 0}, "power_for_image"),
        ({"griffin_lim_momentum": 1.0}, "griffin_lim_momentum"),
    ],
)
def test_params_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpectrogramParams(**kwargs)


def filterbank_allowance(audio: np.ndarray, params: SpectrogramParams) -> np.ndarray:
    """How far each mel amplitude ``(mels, frames)`` may move between two float32 builds of the filterbank.

    The converter, like Riffusion, uses torchaudio's float32 ``melscale_fbanks``, whose weights carry rounding errors
    of up to ~5e-5 (Hz values near 10 kHz rounded to 1e-3 Hz, in triangles 57 Hz wide) that depend on torch's CPU
    kernels: the AVX2 and AVX-512 ones give the golden's weights, the scalar ones (ATEN_CPU_CAPABILITY=default, as on
    processors without AVX2) move 908 of them by up to 6.8e-5. Two float32 builds thus differ by at most delta = twice
    this build's largest error against float64, and a mel amplitude, a sum of |X| over its triangle's bins, by at most
    delta times that sum.
    """
    args = (params.n_fft // 2 + 1, float(params.min_frequency), float(params.max_frequency), params.num_frequencies,
            params.sample_rate, params.mel_scale_norm, params.mel_scale_type)  # fmt: skip
    float32 = torchaudio.functional.melscale_fbanks(*args).double()
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        float64 = torchaudio.functional.melscale_fbanks(*args)
    finally:
        torch.set_default_dtype(default_dtype)
    delta = 2 * float((float32 - float64).abs().max())
    stft = torchaudio.transforms.Spectrogram(
        n_fft=params.n_fft, win_length=params.win_length, hop_length=params.hop_length, power=1.0
    )
    magnitude = stft(torch.from_numpy(audio[0]).double())  # (bins, frames) of the first channel
    support = float64 > -delta  # every weight that either build may leave above 0
    return delta * (support.double().T @ magnitude).numpy()


def test_golden_riffusion_image(tmp_path):
    """audio -> image reproduces Riffusion's caseA.png within the golden README's tolerance."""
    golden = np.load(GOLDEN / "caseA.npz")
    audio, sample_rate = load_audio(GOLDEN / "caseA_input.wav")
    np.testing.assert_array_equal(np.round(audio * 32768).astype(np.int16), golden["input_samples_int16"])

    image = audio_to_image(audio, sample_rate)
    pixels = np.asarray(image)
    assert pixels.shape == tuple(META["cases"]["caseA"]["image_shape_HWC"])
    difference = np.abs(pixels[..., 0].astype(int) - golden["image_uint8"][..., 0].astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() <= 1e-3
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 0] == pixels[..., 2]).all()  # mono: R = G = B

    # Floats before quantisation, from the converter, within the golden README's tolerances (1e-5 on mel / max, 2e-3
    # before quantisation: what two float32 pipelines with the same filterbank differ by) plus what the filterbank
    # may move: see filterbank_allowance.
    mel = get_converter().audio_to_mel(torch.from_numpy(audio))[0].double().numpy()
    amplitude = mel / mel.max()
    allowance = filterbank_allowance(audio, SpectrogramParams()) / mel.max()
    allowance = allowance + amplitude * allowance.flat[mel.argmax()]  # the maximum it is divided by moves too
    tolerance = 1e-5 + allowance
    golden_amplitude = golden["mel_amplitudes"][0] / golden["max_value"]
    assert (np.abs(amplitude - golden_amplitude) <= tolerance).all(), np.abs(amplitude - golden_amplitude).max()
    pre_quantization = 255 - 255 * amplitude**0.25
    # x -> x^(1/4) is increasing: the golden's value lies between those of amplitude -/+ tolerance.
    spread = 255 * ((amplitude + tolerance) ** 0.25 - np.clip(amplitude - tolerance, 0, None) ** 0.25)
    assert (np.abs(pre_quantization - golden["pre_quantization"][0]) <= 2e-3 + spread).all()

    # EXIF: tags 11000-11070 exactly, 11080 in Riffusion's units, same TIFF types; kept by a plain save.
    path = tmp_path / "caseA.png"
    image.save(path)
    exif = Image.open(path).getexif()
    golden_exif = {int(tag): value for tag, value in META["cases"]["caseA"]["exif"].items()}
    for tag in EXIF_TAGS.values():
        assert exif[tag] == golden_exif[tag]
    np.testing.assert_allclose(exif[EXIF_MAX_VALUE], float(golden["max_value"]), rtol=1e-5 + allowance.max())
    assert exif_types(path) == {int(tag): kind for tag, kind in META["cases"]["caseA"]["exif_tiff_types"].items()}
    np.testing.assert_array_equal(np.asarray(Image.open(path)), pixels)
    # 16-bit samples as Riffusion reads them: same pixels and max value.
    from_int16 = audio_to_image(golden["input_samples_int16"], sample_rate)
    np.testing.assert_array_equal(np.asarray(from_int16), pixels)
    assert from_int16.getexif()[EXIF_MAX_VALUE] == image.getexif()[EXIF_MAX_VALUE]


def test_golden_riffusion_inverse():
    """image -> audio of caseA.png: at least the golden spectral convergence, and Riffusion's own output for seed 0."""
    audio_in, _ = load_audio(GOLDEN / "caseA_input.wav")
    audio_out, sample_rate = image_to_audio(GOLDEN / "caseA.png", generator=torch.Generator().manual_seed(0))
    assert sample_rate == 44100 and audio_out.shape == (1, 441 * 512)

    params = SpectrogramParams()
    mel = torchaudio_mel(params)
    stft = torchaudio.transforms.Spectrogram(
        n_fft=params.n_fft, win_length=params.win_length, hop_length=params.hop_length, power=1.0
    )
    spectra = {"mel": lambda x: mel(torch.from_numpy(x)), "lin": lambda x: stft(torch.from_numpy(x))[:, :4001]}

    # Same seed, same initial phases: the waveform is Riffusion's, up to its gain. Griffin-Lim's momentum (0.99)
    # amplifies the float32 round-off in which two implementations, or one on two processors' kernels, differ: 3.4e-4
    # from Riffusion's with torch's AVX2 and AVX-512 kernels, 1.6e-3 with its scalar ones. An estimate from other
    # initial phases is uncorrelated with Riffusion's, at a distance near 1 (seed 1: 0.99). 0.05 tells the two apart
    # on any processor.
    riffusion, _ = load_audio(GOLDEN / "caseA_reconstructed_seed0.wav")
    riffusion = riffusion * float((audio_out * riffusion).sum() / (riffusion * riffusion).sum())
    assert np.linalg.norm(audio_out - riffusion) / np.linalg.norm(audio_out) < 0.05
    for name, golden_sc, bound in (("mel", "sc_mel_ls_aligned", 0.09), ("lin", "sc_lin_0_10k_ls_aligned", 0.12)):
        reference, ours, theirs = (spectra[name](x).double() for x in (audio_in, audio_out, riffusion))
        sc = spectral_convergence(reference, ours)
        # At least Riffusion's own spectral convergence (the golden's figure, recomputed here with this machine's
        # transforms), up to how far our estimate is from Riffusion's: SC(ours) <= SC(theirs) + a ||ours - theirs|| /
        # ||reference||, a Riffusion's least-squares gain (the triangle inequality); and the README's absolute bound.
        theirs_sc = spectral_convergence(reference, theirs)
        gain = float((reference * theirs).sum() / (theirs * theirs).sum())
        slack = gain * float((ours - theirs).norm() / reference.norm())
        # A relative error e of both spectra moves SC by at most 2 e / SC; the filterbank's kernel-dependent e is
        # below 3e-5 (test_golden_riffusion_image), so 2 * 3e-5 / 0.068 < 1e-3 (measured: 3e-7).
        assert theirs_sc == pytest.approx(META["inverse_caseA"][golden_sc], rel=1e-3)
        assert sc <= theirs_sc + slack and sc <= bound, (name, sc, theirs_sc, slack)
    # caseA.png carries Riffusion's max value (EXIF 11080), so the input's level comes back.
    level = np.sqrt(np.mean(audio_out**2)) / np.sqrt(np.mean(audio_in**2))
    assert 0.95 < level < 1.05


@pytest.mark.parametrize(
    "seed", [3]
)  # the exact method's best seed: the hardest comparison; seed 0 gives 0.063 vs 0.078
def test_fast_griffin_lim_converges_at_least_as_well_as_exact_on_case_a(seed):
    """The fast inverse (method="fast", opt-in in the pipelines) on caseA.png: mel spectral convergence (the benchmark's SC) at
    least as good as the exact method's with the same seed. The exact method's figures are the golden seed spread:
    it is Riffusion's inverse, which test_golden_riffusion_inverse reproduces for a seed (seed 3 is the exact
    method's best of seeds 0-4). On the linear 0-10 kHz bins the fast method is better for seed 0 (0.090 against
    0.108) but not for every seed (seed 3: 0.102 against 0.098): it must beat the exact method's mean over seeds."""
    audio_in, _ = load_audio(GOLDEN / "caseA_input.wav")
    audio_out, _ = image_to_audio(GOLDEN / "caseA.png", generator=torch.Generator().manual_seed(seed), method="fast")
    assert audio_out.shape == (1, 441 * 512)
    params = SpectrogramParams()
    mel = torchaudio_mel(params)
    sc_mel = spectral_convergence(mel(torch.from_numpy(audio_in)), mel(torch.from_numpy(audio_out)))
    stft = torchaudio.transforms.Spectrogram(
        n_fft=params.n_fft, win_length=params.win_length, hop_length=params.hop_length, power=1.0
    )
    sc_lin = spectral_convergence(
        stft(torch.from_numpy(audio_in))[:, :4001], stft(torch.from_numpy(audio_out))[:, :4001]
    )
    spread = META["inverse_caseA"]["seed_spread"]
    assert sc_mel <= spread[str(seed)]["sc_mel"]
    assert sc_lin <= np.mean([exact["sc_lin_0_10k"] for exact in spread.values()])


def test_refined_griffin_lim_beats_riffusion_on_case_a():
    """The pipelines' default inverse (method="refined") on caseA.png, seed 0: mel and linear 0-10 kHz spectral
    convergence below Riffusion's own (torchaudio InverseMelScale + GriffinLim as Riffusion configures them) for
    every golden seed 0-4, i.e. below its best (seed 3: SC_mel 0.0679, SC_lin_0_10k 0.0976)."""
    audio_in, _ = load_audio(GOLDEN / "caseA_input.wav")
    audio_out, _ = image_to_audio(GOLDEN / "caseA.png", generator=torch.Generator().manual_seed(0), method="refined")
    assert audio_out.shape == (1, 441 * 512)
    params = SpectrogramParams()
    mel = torchaudio_mel(params)
    sc_mel = spectral_convergence(mel(torch.from_numpy(audio_in)), mel(torch.from_numpy(audio_out)))
    stft = torchaudio.transforms.Spectrogram(
        n_fft=params.n_fft, win_length=params.win_length, hop_length=params.hop_length, power=1.0
    )
    sc_lin = spectral_convergence(
        stft(torch.from_numpy(audio_in))[:, :4001], stft(torch.from_numpy(audio_out))[:, :4001]
    )
    riffusion = META["inverse_caseA"]["seed_spread"].values()
    assert sc_mel <= min(seed["sc_mel"] for seed in riffusion)
    assert sc_lin <= min(seed["sc_lin_0_10k"] for seed in riffusion)


def test_refined_griffin_lim_is_deterministic_and_counts_its_steps():
    """Same generator seed, same audio (twice, bit for bit); another seed, other audio; 1.25 + 0.25 steps per iteration."""
    converter = get_converter(SMALL)
    magnitude = converter.mel_to_linear(converter.audio_to_mel(torch.from_numpy(_tones([440, 1300], 0.5, 8000))))
    steps = []

    def run(seed):
        return converter.griffin_lim(
            magnitude,
            num_iters=8,
            generator=torch.Generator().manual_seed(seed),
            callback=steps.append,
            method="refined",
        )

    first, again, other = run(0), run(0), run(1)
    assert torch.equal(first, again) and not torch.allclose(first, other)
    assert converter.num_griffin_lim_steps(8, "refined") == 10 + 2 and steps == list(range(12)) * 3
    assert get_converter().num_griffin_lim_steps(32, "refined") == 40 + 8
    assert get_converter().num_griffin_lim_steps(32, "fast") == 48  # unchanged


def test_forward_at_riffusion_parameters_matches_torchaudio():
    """The banded mel product and the scipy FFT give torchaudio's MelSpectrogram (Riffusion's forward) at Riffusion's
    parameters: mel to 1e-5, images within 1 grey level on at most 0.01% of pixels; the banded product equals the
    dense filterbank product."""
    params = SpectrogramParams()
    rng = np.random.default_rng(4)
    t = np.arange(3 * params.sample_rate) / params.sample_rate
    clip = 0.4 * np.sin(2 * np.pi * (150 * t + 900 * t**2)) + 0.2 * np.sin(2 * np.pi * 3100 * t) * (t > 1)
    clip = torch.from_numpy((clip + 0.02 * rng.standard_normal(t.size)).astype(np.float32))[None]
    converter = get_converter(params)
    mel = converter.audio_to_mel(clip)
    reference = torchaudio_mel(params)(clip)
    # Two float32 pipelines (scipy's and torch's FFTs, banded and dense products) with the same filterbank: each FFT
    # errs by ~u log2(n_fft) of the spectrum's scale (u = 6e-8, n_fft = 17640: 1e-6), the mel sums by a few u more.
    assert float((mel - reference).abs().max() / reference.abs().max()) < 1e-5

    images, max_values = converter.audio_to_images(clip[None])
    expected, expected_max = converter.mel_to_images(reference[None])  # Riffusion's image steps on torchaudio's mel
    difference = (images.int() - expected.int()).abs()
    assert int(difference.max()) <= 1 and float((difference > 0).float().mean()) <= 1e-4
    torch.testing.assert_close(max_values, expected_max, rtol=1e-5, atol=0)

    magnitude = torch.rand(2, 7, converter.num_bins, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(converter._mel_product(magnitude), magnitude @ converter.mel_filterbank)


@pytest.mark.parametrize(
    "params",
    [
        SMALL,
        SpectrogramParams(
            sample_rate=8000,
            step_size_ms=10,
            window_duration_ms=40,
            padded_duration_ms=40,
            num_frequencies=24,
            max_frequency=4000,
        ),
    ],
)
def test_transforms_equal_torchaudio(params):
    """Forward mel, least-squares inverse mel and Griffin-Lim equal torchaudio's MelSpectrogram, InverseMelScale and GriffinLim."""
    converter = SpectrogramConverter(params)
    audio = torch.randn(3, 7919, generator=torch.Generator().manual_seed(1))
    mel = converter.audio_to_mel(audio)
    reference = torchaudio_mel(params)(audio)
    assert mel.shape == reference.shape == (3, params.num_frequencies, 1 + 7919 // params.hop_length)
    assert float((mel - reference).abs().max() / reference.abs().max()) < 1e-5  # as at Riffusion's parameters

    inverse = torchaudio.transforms.InverseMelScale(
        n_stft=params.n_fft // 2 + 1,
        n_mels=params.num_frequencies,
        sample_rate=params.sample_rate,
        f_min=params.min_frequency,
        f_max=params.max_frequency,
    )
    linear_reference = inverse(mel)  # (3, freq, frames), torch.linalg.lstsq with driver gels
    linear = converter.mel_to_linear(mel)  # (3, frames, bins the filterbank covers)
    assert float(linear_reference[:, converter.num_bins :].abs().max()) == 0.0
    assert float((linear - linear_reference[:, : converter.num_bins].transpose(1, 2)).norm() / linear.norm()) < 1e-5

    griffin_lim = torchaudio.transforms.GriffinLim(
        n_fft=params.n_fft,
        n_iter=8,
        win_length=params.win_length,
        hop_length=params.hop_length,
        power=1.0,
        momentum=0.99,
        rand_init=True,
    )
    torch.manual_seed(3)
    expected = griffin_lim(linear_reference)
    actual = converter.griffin_lim(linear, num_iters=8, generator=torch.Generator().manual_seed(3))
    assert actual.shape == expected.shape == (3, params.hop_length * (mel.shape[-1] - 1))
    # Same initial phases: the momentum (0.99) amplifies the round-off in which the two inputs (the least-squares
    # inverses, 2.4e-7 apart) and the two FFTs differ, to 4e-6 and 1.3e-5 with torch's AVX2 and AVX-512 kernels and
    # 2.5e-5 with its scalar ones; other phases (seed 4) land 1.4 away. 1e-3 tells the two apart on any processor.
    assert float((actual - expected).norm() / expected.norm()) < 1e-3


def _tones(frequencies_hz, seconds, sample_rate, seed=0):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    rng = np.random.default_rng(seed)
    return np.stack(
        [0.5 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(t.size) for f in frequencies_hz]
    ).astype(np.float32)


@pytest.mark.parametrize("num_samples", [3000, 8000, 20555])
def test_stereo_round_trip_any_width(num_samples, tmp_path):
    """Stereo audio -> image (R = 0, left in G, right in B) -> audio keeps each channel's spectrum, at any width."""
    params = SMALL_STEREO
    audio = _tones([500, 1800], num_samples / 8000, 8000)
    image = audio_to_image(audio, 8000, params)
    width = params.width_for_num_samples(num_samples)
    assert image.size == (width, params.num_frequencies)
    pixels = np.asarray(image)
    assert (pixels[..., 0] == 0).all()
    # The loudest row of each channel is the tone's mel bin (flipped: row 0 = highest bin).
    mel_frequencies = torchaudio.functional.melscale_fbanks(
        params.n_fft // 2 + 1, 0, 3000, params.num_frequencies, 8000, None, "htk"
    )
    peak_hz = (mel_frequencies * torch.linspace(0, 4000, params.n_fft // 2 + 1)[:, None]).sum(0) / mel_frequencies.sum(
        0
    )
    for channel, tone in ((1, 500), (2, 1800)):
        row = int(np.argmin(pixels[:, :, channel].astype(float).mean(axis=1)))
        assert abs(float(peak_hz[params.num_frequencies - 1 - row]) - tone) < 120

    path = tmp_path / "stereo.png"
    image.save(path)
    restored, sample_rate = image_to_audio(path, generator=torch.Generator().manual_seed(0))
    assert sample_rate == 8000 and restored.shape == (2, params.num_samples_for_width(width))
    mel = torchaudio_mel(params)
    n = restored.shape[1]
    original_mel, restored_mel = mel(torch.from_numpy(audio[:, :n])), mel(torch.from_numpy(restored))
    for c in range(2):
        assert spectral_convergence(original_mel[c], restored_mel[c]) < 0.2
        assert spectral_convergence(original_mel[c], restored_mel[1 - c]) > 0.8  # channels not swapped or mixed


def test_mono_parameters_mix_stereo_to_mono_and_width_pads():
    stereo = _tones([500, 1800], 1.0, 8000)
    converter = get_converter(SMALL)
    mixed = converter.audio_to_mel(torch.from_numpy(stereo.mean(axis=0, keepdims=True)))
    image = audio_to_image(stereo, 8000, SMALL)
    expected, _ = converter.mel_to_images(mixed[None])
    np.testing.assert_array_equal(np.asarray(image), expected[0].permute(1, 2, 0).numpy())
    assert audio_to_image(stereo, 8000, SMALL, width=64).size == (64, 32)  # trims
    assert audio_to_image(stereo[:, :800], 8000, SMALL, width=64).size == (64, 32)  # pads with silence


def test_resamples_to_the_parameters_rate():
    tone_16k = _tones([1000], 1.0, 16000)
    pixels = np.asarray(audio_to_image(tone_16k, 16000, SMALL))[..., 0].astype(float)
    resampled = torchaudio.functional.resample(torch.from_numpy(tone_16k), 16000, 8000)
    np.testing.assert_array_equal(pixels, np.asarray(audio_to_image(resampled.numpy(), 8000, SMALL))[..., 0])


def test_batched_conversion_equals_per_clip():
    converter = get_converter(SMALL)
    clips = torch.from_numpy(np.stack([_tones([f], 1.0, 8000, seed=f) for f in (300, 900, 2500)]))  # (3, 1, 8000)
    images, max_values = converter.audio_to_images(clips)
    for k in range(3):
        single, single_max = converter.audio_to_images(clips[k : k + 1])
        assert torch.equal(images[k], single[0]) and torch.equal(max_values[k], single_max[0])
    # uint8 and [0, 1] float images give the same amplitudes max_value * d^4 of the darkness d <= 1, up to rounding:
    # (255 - x) / 255 and 1 - x / 255 differ by at most 3 u (u = 2**-24), which d^4 turns into 12 u; each side's power
    # and product add a rounding or two (2 u each): 20 u max_value in all.
    mel_uint8 = converter.images_to_mel(images, max_values)
    mel_float = converter.images_to_mel(images.float() / 255, max_values)
    torch.testing.assert_close(mel_uint8, mel_float, atol=20 * 2**-24 * float(max_values.max()), rtol=0)
    # The darkest pixel of each image is 0 (its maximum), d = 1 exactly: the amplitude is max_value exactly.
    assert torch.equal(mel_uint8.amax(dim=(1, 2, 3)), max_values)


def test_silence_gives_a_white_image_and_silence_back():
    image = audio_to_image(np.zeros((1, 4000), np.float32), 8000, SMALL)
    assert (np.asarray(image) == 255).all()
    audio, _ = image_to_audio(image, num_iters=2)
    assert np.isfinite(audio).all() and np.abs(audio).max() == 0


def test_converter_errors():
    converter = get_converter(SMALL)
    with pytest.raises(ValueError, match="num_frequencies=32"):
        converter.images_to_mel(torch.zeros(1, 3, 16, 40, dtype=torch.uint8))
    with pytest.raises(ValueError, match="too short"):
        converter.audio_to_mel(torch.zeros(1, 100))
    with pytest.raises(ValueError, match=r"2 channel\(s\)"):
        converter.mel_to_images(torch.ones(1, 2, 32, 10))
    with pytest.raises(ValueError, match="1 or 2 channels"):
        audio_to_image(np.zeros((3, 4000), np.float32), 8000, SMALL)
    with pytest.raises(ValueError, match="one size"):
        images_from_pil([Image.new("RGB", (10, 32)), Image.new("RGB", (12, 32))])


def test_audio_files_round_trip(tmp_path):
    audio = _tones([440, 660], 0.5, 8000)
    path = save_audio(tmp_path / "a.wav", audio, 8000)
    loaded, sample_rate = load_audio(path)
    assert sample_rate == 8000 and loaded.shape == audio.shape and loaded.dtype == np.float32
    # 16-bit PCM, read back as k / 32768: this libsndfile writes k = trunc(32768 x), an error below one step; builds
    # that write round(32767 x) err by at most (0.5 + |x|) / 32768.
    np.testing.assert_allclose(loaded, audio, atol=max(1.0, 0.5 + float(np.abs(audio).max())) / 32768)


def test_scipy_ffts_follow_torch_threads_with_the_same_values():
    """The converter's CPU FFTs use torch's thread count (a builder worker pinned to one thread stays on one),
    never more threads than transforms, and give the same values on one thread as on two, equal to torch's FFT."""
    from sound_of_story.audio import spectrogram

    frames = torch.from_numpy(np.random.default_rng(0).standard_normal((3, 40, 4410)).astype(np.float32))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert spectrogram._fft_workers(frames) == 1
        one = spectrogram._rfft(frames, 17640)
        torch.set_num_threads(2)
        assert spectrogram._fft_workers(frames) == 2 and spectrogram._fft_workers(frames[0, :1]) == 1
        two = spectrogram._rfft(frames, 17640)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    torch.testing.assert_close(one, torch.fft.rfft(frames, n=17640), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(spectrogram._irfft(two, 17640)[..., :4410], frames, rtol=1e-4, atol=1e-4)
