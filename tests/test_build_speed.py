"""What the build does for speed changes nothing in its output: the centre separator on one torch
thread, and the key-frame scan in a background thread (workers with 2+ threads) or after the audio
work (one thread)."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from sound_of_story.audio.spectrogram import EXIF_MAX_VALUE, SpectrogramParams, get_converter
from sound_of_story.dataset_builder import speech_removal, voice_activity
from sound_of_story.dataset_builder.manifest import read_manifest
from sound_of_story.dataset_builder.media import decode_audio
from sound_of_story.dataset_builder.processing import ProcessingParams, process_story

U = 2.0**-24  # float32's unit round-off

# The centre separator on torch's threads instead of its one may round differently in two places: MKL's FFTs share
# the batch of frames between threads (MKL promises the same bits only for the same thread count), and the mask's 8th
# power has vectorised and scalar kernels an ulp apart at times, whose boundary a second thread moves (measured: about
# one power in 10^5). What that can do to the output, in 2-norms over the clip (N = n_fft = 2048, hop N / 4):
# - a float32 FFT is within eta = 7 u log2 N of the exact one (Higham, Accuracy and Stability of Numerical
#   Algorithms, 2nd ed., thm 24.2), so the two runs' spectra of mid M and side S differ by 2 eta ||M|| and 2 eta ||S||;
# - the centre is g G M per bin, the gate G in [0, 1] and g = clamp(1 - r, 0, 1)^8, 8-Lipschitz in r, the ratio of side
#   to mid power averaged over 5 to 9 frames (mean mid power P). Rms errors e_M, e_S over those frames move r by at most
#   2 (e_M + e_S) / sqrt(P), and |M| <= 3 sqrt(P) there: the centre moves by 48 (e_M + e_S) + e_M per bin, to first
#   order. A frame enters at most 9 averages of 5 or more frames (rms errors sqrt(9 / 5) of its own), and
#   ||M|| + ||S|| <= ||(L, R)||: 66 x 2 eta ||STFT of (L, R)|| in all;
# - by Parseval that STFT is at most sqrt(3 N) ||audio|| (the squared Hann windows sum to 1.5 over the frames, reflect
#   padding adds at most the clip again); the inverse of a half spectrum is sqrt(2 / N) of it, at most 4 frames add at
#   a sample (x 2) over a window envelope of 1.25 or more, and the centre leaves both channels (x sqrt 2).
# Together 2 eta 66 sqrt(3 N) sqrt(2 / N) 2 / 1.25 sqrt(2) = 732 eta ||audio||; twice that holds the second-order
# terms, the inverse FFT's own rounding and the power's ulp (about 11 eta together).
SEPARATOR = speech_removal.SpeechRemovalParams()
SEPARATOR_THREADS_RTOL = 2 * 732 * 7 * U * math.log2(SEPARATOR.n_fft)


@contextlib.contextmanager
def _torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_centre_separator_runs_on_one_thread_whatever_the_callers_threads(cmd_samples, monkeypatch):
    # the bound's premises: 2048-point frames, a hop of a quarter, 9-frame averages, an 8th power
    assert (SEPARATOR.n_fft, SEPARATOR.hop, SEPARATOR.smoothing_frames, SEPARATOR.gain_exponent) == (2048, 512, 9, 8)
    folder, records = cmd_samples
    audio, rate = decode_audio(folder / records[0]["files"]["video"])
    speech = voice_activity.speech_probabilities(audio, sample_rate=rate)
    with _torch_threads(2):
        pinned = speech_removal.remove_speech(audio, rate, speech=speech)
        assert torch.get_num_threads() == 2  # the caller's setting is restored
    with _torch_threads(1):
        alone = speech_removal.remove_speech(audio, rate, speech=speech)
    # One thread either way: the same computation, so the build's output does not depend on a worker's threads.
    np.testing.assert_array_equal(pinned, alone)
    removed = float(np.linalg.norm(pinned - audio))
    assert np.abs(pinned).max() > 0.01 and removed > 0.1 * np.linalg.norm(audio)  # something was removed

    # On torch's two threads the separator computes the same, up to the rounding bounded above.
    monkeypatch.setattr(speech_removal, "one_torch_thread", contextlib.nullcontext)
    with _torch_threads(2):
        threaded = speech_removal.remove_speech(audio, rate, speech=speech)
    bound = SEPARATOR_THREADS_RTOL * float(np.linalg.norm(audio))
    assert float(np.linalg.norm(threaded - pinned)) <= bound < 0.05 * removed


def _spectrograms(entry) -> list[Image.Image]:
    kept = range(len(entry.kept_slices()))
    return [Image.open(io.BytesIO(entry.slice_spectrogram_path(k).read_bytes())) for k in kept]


def _outputs(entry) -> tuple:
    """What a cache entry holds that must not depend on the worker's threads: the story (its timings aside), the
    audio, the key frames and the slice FLACs, byte for byte, and the slice spectrograms' EXIF but their max value."""
    story = {k: v for k, v in entry.story.to_json().items() if k != "timings"}
    slices = [entry.slice_audio_path(k).read_bytes() for k in range(len(entry.kept_slices()))]
    exif = [
        {tag: value for tag, value in image.getexif().items() if tag != EXIF_MAX_VALUE}
        for image in _spectrograms(entry)
    ]
    return story, entry.audio_path.read_bytes(), [p.read_bytes() for p in entry.frame_paths()], slices, exif


def test_background_and_inline_key_frame_scans_give_the_same_story(cmd_samples, tmp_path):
    """Two torch threads (key frames scanned in the background, slices encoded two at a time) and one thread
    (all in order) give the same entry: story, audio, key frames and slice FLACs byte for byte (the separator and the
    VAD run on one thread either way, ffmpeg decodes on one), the spectrogram images to the rounding of their mel
    values, which torch's threads compute in another order."""
    folder, _ = cmd_samples
    stories, _ = read_manifest(folder / "manifest.jsonl")
    source = stories[0]
    with _torch_threads(2):
        background, cached = process_story(source, ProcessingParams(), tmp_path / "two")
    assert not cached
    with _torch_threads(1):
        inline, _ = process_story(source, ProcessingParams(), tmp_path / "one")
    assert _outputs(background) == _outputs(inline) and len(_outputs(inline)[3]) >= 1
    # A mel value is a sum of at most num_bins non-negative terms |X| w: two summation orders put it within
    # 2 (num_bins - 1) u of each other, |X| = sqrt(re^2 + im^2) within 4 u more (the FFT itself is scipy's, one
    # transform to a thread: the same bits). The image's max value moves that little, and a pixel,
    # trunc(255 - 255 (mel / max)^0.25), moves before truncation by at most 255 / 4 x twice that (a 0.06 of a grey
    # level): by one level at most, where the value was next to a step.
    relative = (2 * get_converter(SpectrogramParams()).num_bins + 2) * U
    for two, one in zip(_spectrograms(background), _spectrograms(inline), strict=True):
        assert two.getexif()[EXIF_MAX_VALUE] == pytest.approx(one.getexif()[EXIF_MAX_VALUE], rel=relative, abs=0)
        difference = np.abs(np.asarray(two, dtype=np.int16) - np.asarray(one, dtype=np.int16))
        assert two.size == one.size and difference.max() <= 1
    story = background.story
    assert story.frame_times[0] == 0.0 and len(story.frame_times) >= 2
    assert set(story.timings) >= {"decode", "separation", "vad", "key_frame_scan", "key_frames", "flac_encoding"}
    assert 0 <= story.speech_ratio_after < story.speech_ratio_before
    json.dumps(story.to_json())  # plain JSON
