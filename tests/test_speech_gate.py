"""The build's VAD (silero-vad's sequence ONNX model) and the speech-gated centre separator,
on the sample clips and on a mix made from a real music recording (gradio's sax.wav)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sound_of_story.dataset_builder import speech_removal, voice_activity
from sound_of_story.dataset_builder.dialogue_mix import dialogue_over_music
from sound_of_story.dataset_builder.media import decode_audio

# The ONNX engine's ratios against silero's TorchScript model: the stated tolerance.
RATIO_TOLERANCE = 0.002


@pytest.fixture(scope="module")
def panned_mix():
    return dialogue_over_music(pan=-0.5)


@pytest.fixture(scope="module")
def centred_mix():
    return dialogue_over_music(pan=0.0)


@pytest.fixture(scope="module")
def sample_mix(cmd_samples):
    folder, records = cmd_samples
    mix, rate = decode_audio(folder / records[0]["files"]["video"])
    return mix, rate


def test_onnx_vad_equals_silero_torchscript(sample_mix, panned_mix):
    for audio, rate in (sample_mix, (panned_mix.mix, panned_mix.sample_rate)):
        onnx = voice_activity.speech_probabilities(audio, sample_rate=rate)
        reference = voice_activity.speech_probabilities(audio, sample_rate=rate, engine="torch")
        assert onnx.shape == reference.shape and onnx.size == -(-audio.shape[1] * 16_000 // rate // 512)
        assert np.max(np.abs(onnx - reference)) < 1e-3
        assert voice_activity.ratio_of(onnx) == pytest.approx(voice_activity.ratio_of(reference), abs=RATIO_TOLERANCE)
    assert (
        voice_activity.ratio_of(voice_activity.speech_probabilities(sample_mix[0], sample_rate=sample_mix[1])) > 0.15
    )  # the clip has dialogue
    with pytest.raises(ValueError, match="VAD engine must be one of"):
        voice_activity.speech_probabilities(sample_mix[0], sample_rate=sample_mix[1], engine="jit")


def test_speech_gate_opens_around_speech_and_fades():
    per_second = voice_activity.VAD_SAMPLE_RATE / voice_activity.VAD_WINDOW  # 31.25 windows
    probs = np.zeros(int(10 * per_second))
    probs[int(4 * per_second) : int(5 * per_second)] = 0.9  # speech from 4 s to 5 s
    times = np.arange(0, 10, 0.01)
    gate = voice_activity.speech_gate(probs, times, padding_s=0.5, fade_s=0.2)
    assert np.all(gate[(times > 3.7) & (times < 5.3)] == 1.0)
    assert np.all(gate[(times < 3.3) | (times > 5.7)] == 0.0)
    assert np.all((gate >= 0) & (gate <= 1))
    # probabilities at or below half the threshold (music alone stays there) never open it
    assert not voice_activity.speech_gate(np.full(100, 0.25), times).any()
    assert voice_activity.speech_gate(np.zeros(0), times).shape == times.shape


def test_gated_centre_meets_the_targets_on_real_music(panned_mix):
    """Mono downmix SI-SDR gain >= +6 dB over the mix, residual speech ratio <= 10% of the original."""
    m = panned_mix
    assert 0.35 <= m.speech_share <= 0.45
    reference = m.music.mean(axis=0)
    separated = speech_removal.remove_speech_and_measure(m.mix, m.sample_rate)
    gain = speech_removal.si_sdr(separated.background.mean(axis=0), reference) - speech_removal.si_sdr(
        m.mix.mean(axis=0), reference
    )
    assert gain >= 6.0, f"SI-SDR gain {gain:.2f} dB"
    assert separated.speech_ratio_before > 0.3
    assert separated.speech_ratio_after <= 0.10 * separated.speech_ratio_before, (
        separated.speech_ratio_before,
        separated.speech_ratio_after,
    )


def test_centred_music_where_nobody_speaks_is_kept(centred_mix):
    m = centred_mix
    probs = voice_activity.speech_probabilities(m.mix, sample_rate=m.sample_rate)
    gated = speech_removal.remove_speech(m.mix, m.sample_rate, speech=probs)
    ungated = speech_removal.remove_speech(m.mix, m.sample_rate, speech_removal.SpeechRemovalParams(speech_gate=False))
    # where the gate is shut, the output is the input (the music), to float precision
    hop = speech_removal.SpeechRemovalParams().hop
    times = np.arange(m.mix.shape[1]) / m.sample_rate
    shut = voice_activity.speech_gate(probs, times) == 0
    shut &= np.convolve(shut, np.ones(4 * hop + 1), mode="same") > 4 * hop  # away from the frames that reach open ones
    assert shut.mean() > 0.15  # silero also hears the saxophone now and then, and the gate opens 0.5 s early and late
    np.testing.assert_allclose(gated[:, shut], m.mix[:, shut], atol=1e-5)
    # without the gate a centred instrument is taken for dialogue and removed everywhere
    reference = m.music.mean(axis=0)
    assert (
        speech_removal.si_sdr(gated.mean(axis=0), reference)
        > speech_removal.si_sdr(ungated.mean(axis=0), reference) + 30
    )


def _dense_gated_centre(audio, rate, params, gate):
    """The gated centre mask over the whole STFT, straight from the definition (no runs)."""
    x = torch.from_numpy(audio)
    window = torch.hann_window(params.n_fft)
    spec = torch.stft(x, params.n_fft, params.hop, window=window, center=True, pad_mode="reflect", return_complex=True)
    left, right = spec[0], spec[1]

    def smooth(v):
        return torch.nn.functional.avg_pool1d(
            v[:, None], params.smoothing_frames, 1, params.smoothing_frames // 2, count_include_pad=False
        )[:, 0]

    cross = smooth((left * right.conj()).real)
    mid = 0.5 * (left + right)
    gain = (cross / smooth(mid.abs().square()).clamp_min(1e-20)).clamp(
        0, 1
    ) ** params.gain_exponent * torch.from_numpy(gate.astype(np.float32))
    freqs = torch.fft.rfftfreq(params.n_fft, 1.0 / rate)
    gain[(freqs < params.speech_band_hz[0]) | (freqs > params.speech_band_hz[1])] = 0
    centre = gain * mid
    return torch.istft(
        torch.stack([left - centre, right - centre]),
        params.n_fft,
        params.hop,
        window=window,
        center=True,
        length=audio.shape[1],
    ).numpy()


def test_centre_computed_on_gated_runs_equals_the_dense_definition(sample_mix):
    audio, rate = sample_mix
    audio = audio[:, : 12 * rate]
    params = speech_removal.SpeechRemovalParams()
    probs = voice_activity.speech_probabilities(audio, sample_rate=rate)
    frames = 1 + audio.shape[1] // params.hop
    gate = voice_activity.speech_gate(
        probs, np.arange(frames) * params.hop / rate, params.vad_threshold, params.gate_padding_s, params.gate_fade_s
    )
    assert 0.1 < (gate > 0).mean() < 0.95  # several runs, and gaps between them
    expected = _dense_gated_centre(audio, rate, params, gate)
    np.testing.assert_allclose(speech_removal.remove_center(audio, rate, params, probs), expected, atol=2e-5)
    ungated = speech_removal.SpeechRemovalParams(speech_gate=False)
    np.testing.assert_allclose(
        speech_removal.remove_center(audio, rate, ungated),
        _dense_gated_centre(audio, rate, ungated, np.ones(frames)),
        atol=2e-5,
    )


def test_remove_speech_and_measure_records_both_ratios_and_times(sample_mix):
    audio, rate = sample_mix
    timings: dict[str, float] = {}
    result = speech_removal.remove_speech_and_measure(audio, rate, timings=timings)
    assert set(timings) == {"vad", "separation"} and all(t > 0 for t in timings.values())
    before, after = voice_activity.speech_ratio(audio, result.background, sample_rate=rate)
    assert (result.speech_ratio_before, result.speech_ratio_after) == (before, after)
    assert after < 0.2 * before
