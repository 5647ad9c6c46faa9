"""What the build does for speed changes nothing in its output: the centre separator on one torch
thread, and the key-frame scan in a background thread (workers with 2+ threads) or after the audio
work (one thread)."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import torch

from sound_of_story.dataset_builder import speech_removal, voice_activity
from sound_of_story.dataset_builder.manifest import read_manifest
from sound_of_story.dataset_builder.media import decode_audio
from sound_of_story.dataset_builder.processing import ProcessingParams, process_story


@contextlib.contextmanager
def _torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_centre_separator_on_one_thread_equals_torch_default_threads(cmd_samples, monkeypatch):
    folder, records = cmd_samples
    audio, rate = decode_audio(folder / records[0]["files"]["video"])
    speech = voice_activity.speech_probabilities(audio, sample_rate=rate)
    with _torch_threads(2):
        one = speech_removal.remove_speech(audio, rate, speech=speech)
        assert torch.get_num_threads() == 2  # the caller's setting is restored
        monkeypatch.setattr(speech_removal, "one_torch_thread", contextlib.nullcontext)
        two = speech_removal.remove_speech(audio, rate, speech=speech)
    assert np.abs(one).max() > 0.01 and not np.array_equal(one, audio)  # something was removed
    np.testing.assert_array_equal(one, two)  # bit-identical, measured; no tolerance needed


def _outputs(entry) -> tuple:
    story = {k: v for k, v in entry.story.to_json().items() if k != "timings"}
    kept = range(len(entry.kept_slices()))
    slices = [(entry.slice_audio_path(k).read_bytes(), entry.slice_spectrogram_path(k).read_bytes()) for k in kept]
    return story, entry.audio_path.read_bytes(), [p.read_bytes() for p in entry.frame_paths()], slices


def test_background_and_inline_key_frame_scans_give_the_same_story(cmd_samples, tmp_path):
    """Two torch threads (key frames scanned in the background, slices encoded two at a time) and one thread
    (all in order) give the same entry, byte for byte, slice FLACs and spectrogram PNGs included."""
    folder, _ = cmd_samples
    stories, _ = read_manifest(folder / "manifest.jsonl")
    source = stories[0]
    with _torch_threads(2):
        background, cached = process_story(source, ProcessingParams(), tmp_path / "two")
    assert not cached
    with _torch_threads(1):
        inline, _ = process_story(source, ProcessingParams(), tmp_path / "one")
    assert _outputs(background) == _outputs(inline) and len(_outputs(inline)[3]) >= 1
    story = background.story
    assert story.frame_times[0] == 0.0 and len(story.frame_times) >= 2
    assert set(story.timings) >= {"decode", "separation", "vad", "key_frame_scan", "key_frames", "flac_encoding"}
    assert 0 <= story.speech_ratio_after < story.speech_ratio_before
    json.dumps(story.to_json())  # plain JSON
