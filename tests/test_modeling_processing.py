"""SoSRetrievalProcessor on real sample clips from the generator: shapes, frame sampling, text
truncation, and the audio crops (the evaluation crop checked against a brute-force energy search)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from torchcodec.decoders import AudioDecoder, VideoDecoder

from sound_of_story.modeling import (
    SoSRetrievalModel,
    SoSRetrievalProcessor,
    prepare_waveform,
    sample_frame_indices,
    select_audio_windows,
)
from sound_of_story.modeling.tiny_random import tiny_retrieval_config, tiny_retrieval_processor

WINDOW = 163_840  # 10.24 s at 16 kHz
HOP = 160  # 10 ms


@pytest.fixture(scope="module")
def processor() -> SoSRetrievalProcessor:
    return tiny_retrieval_processor()


@pytest.fixture(scope="module")
def clips(cmd_samples):
    """Per clip: key frames at 1 fps (fewer than 40) and 10 fps (more than 40), the mp4's stereo 44.1 kHz audio, the record."""
    folder, records = cmd_samples
    out = []
    for record in records:
        path = str(folder / record["files"]["video"])
        decoder = VideoDecoder(path)
        sparse = decoder.get_frames_played_at([float(t) for t in np.arange(0.5, record["duration"], 1.0)]).data
        dense = decoder.get_frames_played_at([float(t) for t in np.arange(0.05, record["duration"], 0.1)]).data
        out.append(
            {
                "sparse": sparse,
                "dense": dense,
                "audio": AudioDecoder(path).get_all_samples(),
                "record": record,
                "folder": folder,
            }
        )
    return out


def _recover_frame_indices(processor, frames: torch.Tensor, pixel_values: torch.Tensor) -> list[int]:
    """Which decoded frame each of the 40 output frames is (exact match of the processed pixels)."""
    every = processor.image_processor(images=list(frames), return_tensors="pt")["pixel_values"]
    indices = []
    for frame in pixel_values:
        matches = [i for i in range(len(every)) if torch.equal(every[i], frame)]
        assert len(matches) >= 1
        indices.append(matches[0])
    return indices


def test_processor_outputs_have_the_documented_shapes_and_feed_the_model(processor, clips):
    texts = [c["record"]["description"] for c in clips]
    inputs = processor(text=texts, frames=[c["sparse"] for c in clips], audio=[c["audio"] for c in clips])
    shapes = {k: tuple(v.shape) for k, v in inputs.items()}
    assert shapes == {
        "input_ids": (2, 77), "attention_mask": (2, 77), "pixel_values": (2, 40, 3, 32, 32), "frame_mask": (2, 40), "input_values": (2, 1024, 128),
    }  # fmt: skip
    assert inputs["frame_mask"].eq(1).all()
    model = SoSRetrievalModel(tiny_retrieval_config()).eval()
    with torch.no_grad():
        out = model(**inputs, return_loss=True)
    assert out.logits_per_audio_video.shape == (2, 2) and torch.isfinite(out.loss)


def test_fewer_than_40_frames_are_repeated_in_time_order(processor, clips):
    frames = clips[0]["sparse"]  # 24 frames
    indices = _recover_frame_indices(processor, frames, processor(frames=frames)["pixel_values"][0])
    assert indices == sorted(indices) and set(indices) == set(range(len(frames)))
    counts = np.bincount(indices)
    assert counts.min() >= 1 and counts.max() - counts.min() <= 1  # 40 / 24: each frame once or twice


def test_more_than_40_frames_are_sampled_uniformly(processor, clips):
    frames = clips[0]["dense"]  # 240 frames at 10 fps
    indices = _recover_frame_indices(processor, frames, processor(frames=frames)["pixel_values"][0])
    assert len(frames) == 240
    assert np.all(np.diff(indices) == 6) and indices[0] == 3  # every 6th frame, centred in its interval


def test_frames_as_pil_images_give_the_same_pixels(processor, clips):
    from PIL import Image

    frames = clips[1]["sparse"]
    as_pil = [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in frames]
    as_numpy_hwc = frames.permute(0, 2, 3, 1).numpy()
    reference = processor(frames=frames)["pixel_values"]
    torch.testing.assert_close(processor(frames=as_pil)["pixel_values"], reference)
    torch.testing.assert_close(processor(frames=as_numpy_hwc)["pixel_values"], reference)


def test_text_is_cut_at_77_tokens_and_padded_to_77(processor, clips):
    description = clips[0]["record"]["description"]
    short = description.split(".")[0] + "."
    long = description
    inputs = processor(text=[short, long])
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    tokenizer = processor.tokenizer
    full = tokenizer(short)["input_ids"]
    assert tokenizer.decode(full, skip_special_tokens=True).replace(" ", "") == short.lower().replace(" ", "")
    assert len(full) < 77 and ids[0, : len(full)].tolist() == full and mask[0].sum() == len(full)
    assert ids[0, len(full) :].eq(tokenizer.pad_token_id).all()
    assert mask[1].all() and ids[1, 0] == tokenizer.bos_token_id and ids[1, -1] == tokenizer.eos_token_id
    assert ids[1, 1:76].tolist() == tokenizer(long)["input_ids"][1:76]  # the first 75 text tokens, kept from the front


def test_prepare_waveform_downmixes_and_resamples_like_ffmpeg(clips):
    clip = clips[0]
    wave = prepare_waveform(clip["audio"])
    path = str(clip["folder"] / clip["record"]["files"]["video"])
    ffmpeg = AudioDecoder(path, sample_rate=16_000, num_channels=1).get_all_samples().data[0].numpy()
    n = min(len(wave), len(ffmpeg))
    assert abs(len(wave) - len(ffmpeg)) <= 16 and abs(len(wave) / 16_000 - clip["record"]["duration"]) < 0.01
    assert np.corrcoef(wave[:n], ffmpeg[:n])[0, 1] > 0.99


def test_evaluation_crop_is_the_most_energetic_window_by_brute_force(processor, clips):
    for clip in clips:
        wave = prepare_waveform(clip["audio"])
        (start,) = select_audio_windows(wave, WINDOW, mode="energetic", hop=HOP)
        starts = np.arange(0, len(wave) - WINDOW + 1, HOP)
        energies = np.array([np.sum(wave[s : s + WINDOW].astype(np.float64) ** 2) for s in starts])
        assert start % HOP == 0 and 0 <= start <= len(wave) - WINDOW
        assert np.sum(wave[start : start + WINDOW].astype(np.float64) ** 2) >= energies.max() * (1 - 1e-9)
        assert energies.max() > 1.05 * np.median(energies)  # the choice matters on these clips
        # The processor's input_values are AST's features of exactly that window, every time.
        values = processor(audio=clip["audio"])["input_values"][0]
        expected = processor.feature_extractor(
            wave[start : start + WINDOW], sampling_rate=16_000, return_tensors="pt"
        )["input_values"][0]
        torch.testing.assert_close(values, expected)
        torch.testing.assert_close(processor(audio=clip["audio"])["input_values"][0], values)


def test_training_crop_is_random_reproducible_and_inside_the_audio(processor, clips):
    clip = clips[0]
    wave = prepare_waveform(clip["audio"])

    def run(seed):
        return processor(audio=clip["audio"], audio_crop="random", generator=torch.Generator().manual_seed(seed))[
            "input_values"
        ][0]

    torch.testing.assert_close(run(3), run(3))
    starts = {
        select_audio_windows(wave, WINDOW, mode="random", generator=torch.Generator().manual_seed(s))[0]
        for s in range(20)
    }
    assert len(starts) >= 15 and min(starts) >= 0 and max(starts) <= len(wave) - WINDOW
    (start,) = select_audio_windows(wave, WINDOW, mode="random", generator=torch.Generator().manual_seed(3))
    expected = processor.feature_extractor(wave[start : start + WINDOW], sampling_rate=16_000, return_tensors="pt")[
        "input_values"
    ][0]
    torch.testing.assert_close(run(3), expected)


def test_several_crops_cover_the_whole_story(processor, clips):
    clip = clips[1]
    wave = prepare_waveform(clip["audio"])
    values = processor(audio=clip["audio"], audio_crops=3)["input_values"]
    assert values.shape == (1, 3, 1024, 128)
    starts = select_audio_windows(wave, WINDOW, num_windows=3)
    assert starts[0] == 0 and starts[-1] == len(wave) - WINDOW and np.all(np.diff(starts) <= WINDOW)
    for k, start in enumerate(starts):
        expected = processor.feature_extractor(
            wave[start : start + WINDOW], sampling_rate=16_000, return_tensors="pt"
        )["input_values"][0]
        torch.testing.assert_close(values[0, k], expected)
    with pytest.raises(ValueError, match="audio_crops > 1"):
        processor(audio=clip["audio"], audio_crops=2, audio_crop="random")


def test_dataset_row_audio_and_short_audio(processor, clips, tmp_path):
    from datasets import Audio, Dataset

    clip = clips[0]
    path = str(clip["folder"] / clip["record"]["files"]["background"])
    row = Dataset.from_dict({"audio": [path]}).cast_column("audio", Audio())[0]
    stereo, rate = sf.read(path, dtype="float32", always_2d=True)
    from_row = processor(audio=row["audio"])["input_values"]
    from_array = processor(audio=stereo.T, sampling_rate=rate)["input_values"]
    # A 16-bit PCM WAV: both readers give the same integers / 32768, and the processor the same features from them.
    torch.testing.assert_close(from_row, from_array, atol=0, rtol=0)
    # A 3 s story: one window from sample 0, padded by the feature extractor.
    short = stereo[: 3 * rate].T
    assert select_audio_windows(prepare_waveform(short, rate), WINDOW) == [0]
    expected = processor.feature_extractor(prepare_waveform(short, rate), sampling_rate=16_000, return_tensors="pt")[
        "input_values"
    ]
    torch.testing.assert_close(processor(audio=short, sampling_rate=rate)["input_values"], expected)
    with pytest.raises(ValueError, match=r"looks like \(samples, channels\)"):
        processor(audio=stereo, sampling_rate=rate)
    with pytest.raises(ValueError, match="sampling_rate is required"):
        processor(audio=stereo.T)
    with pytest.raises(ValueError, match="same stories"):
        processor(text=["a", "b"], audio=row["audio"])


def test_processor_save_load_round_trip(processor, clips, tmp_path):
    custom = tiny_retrieval_processor(num_frames=12, audio_window_seconds=5.12)
    custom.save_pretrained(tmp_path)
    loaded = SoSRetrievalProcessor.from_pretrained(tmp_path)
    assert (loaded.num_frames, loaded.max_text_length, loaded.audio_window_seconds) == (12, 77, 5.12)
    clip = clips[0]
    kwargs = {"text": clip["record"]["description"], "frames": clip["sparse"], "audio": clip["audio"]}
    expected, actual = custom(**kwargs), loaded(**kwargs)
    assert expected["pixel_values"].shape == (1, 12, 3, 32, 32)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], atol=0, rtol=0)


@pytest.mark.parametrize("backend", ["torchvision", "pil"])
def test_each_distinct_frame_is_processed_once_and_repeated_into_its_slots(clips, backend):
    """A story's few key frames fill the 40 slots; the image processor sees each distinct frame once, and the pixels
    are bit for bit those of processing all 40 repeated copies (what the processor did before)."""
    from PIL import Image
    from transformers import CLIPImageProcessorPil

    processor = tiny_retrieval_processor()
    if backend == "pil":
        processor.image_processor = CLIPImageProcessorPil(**processor.image_processor.to_dict())
    few = list(clips[0]["sparse"][:4])  # 4 key frames: each fills 10 slots
    # PIL frames of three sizes in one story: the torchvision backend groups images by shape, and a frame's pixels
    # must not depend on which others share its call
    mixed = [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in clips[1]["sparse"][:7]]
    mixed = [im.resize((im.width // (1 + k % 3), im.height // (1 + k % 3))) for k, im in enumerate(mixed)]
    dense = list(clips[1]["dense"][:45])  # more frames than slots: 40 distinct ones
    stories = [few, mixed, dense]

    seen: list[int] = []
    original = processor.image_processor.preprocess

    def counting_preprocess(images, *args, **kwargs):
        seen.append(len(images))
        return original(images, *args, **kwargs)

    processor.image_processor.preprocess = counting_preprocess
    pixel_values = processor(frames=stories)["pixel_values"]
    assert seen == [4, 7, 40]

    del processor.image_processor.preprocess
    assert pixel_values.shape == (3, 40, 3, 32, 32)
    for story, actual in zip(stories, pixel_values):
        repeated = [story[i] for i in sample_frame_indices(len(story), 40)]
        expected = processor.image_processor(images=repeated, return_tensors="pt")["pixel_values"]
        assert torch.equal(actual, expected)
    # the 10 slots of a key frame are one picture, and the 4 pictures differ
    assert all(torch.equal(pixel_values[0, k], pixel_values[0, 10 * (k // 10)]) for k in range(40))
    assert len({pixel_values[0, k].numpy().tobytes() for k in range(0, 40, 10)}) == 4
