"""The Table 2 baselines on tiny random configs: Wav2CLIP-style (audio-video) and CLAP (audio-text),
with the same feature / similarity interface as SoSRetrievalModel."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_remote_code_reproduces
from torchcodec.decoders import AudioDecoder
from transformers import ClapFeatureExtractor, ClapModel

from sound_of_story.modeling import (
    ClapBaselineProcessor,
    ClapRetrievalBaseline,
    SoSTextFeatures,
    SoSVideoFeatures,
    Wav2CLIPBaselineConfig,
    Wav2CLIPBaselineModel,
    prepare_waveform,
    select_audio_windows,
)
from sound_of_story.modeling.tiny_random import tiny_clap_config, tiny_clip_tokenizer, tiny_wav2clip_config
from sound_of_story.modeling.tiny_random import tiny_random_inputs as toy_batch


@pytest.fixture(scope="module")
def wav2clip() -> Wav2CLIPBaselineModel:
    torch.manual_seed(0)
    return Wav2CLIPBaselineModel(tiny_wav2clip_config()).eval()


def test_wav2clip_features_live_in_the_clip_image_space(wav2clip):
    batch = toy_batch()
    with torch.no_grad():
        video = wav2clip.get_video_features(batch["pixel_values"])
        text = wav2clip.get_text_features(batch["input_ids"], batch["attention_mask"])
        frames = wav2clip.clip.get_image_features(pixel_values=batch["pixel_values"].flatten(0, 1)).pooler_output.view(
            3, 5, -1
        )
        sentence = wav2clip.clip.get_text_features(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).pooler_output
        audio = wav2clip.get_audio_features(batch["input_values"])
        out = wav2clip(**batch)
    torch.testing.assert_close(video.video_embeds, F.normalize(F.normalize(frames, dim=-1).mean(dim=1), dim=-1))
    torch.testing.assert_close(text.text_embeds, F.normalize(sentence, dim=-1))
    torch.testing.assert_close(
        out.logits_per_audio_video, wav2clip.scale() * audio.audio_embeds @ video.video_embeds.T
    )
    torch.testing.assert_close(out.logits_per_audio_text, wav2clip.scale() * audio.audio_embeds @ text.text_embeds.T)
    assert audio.audio_token_embeds is None and audio.audio_embeds.shape == (3, 16)


def test_wav2clip_normalises_each_spectrogram_by_itself(wav2clip):
    # In float64: in float32 a batch of one and a batch of three, or x and 3x + 1, take kernels that sum in other
    # orders (other ones again on another processor), moving the unit-norm embeddings by ~1e-7. In float64 what is
    # left is round-off, u = 1.1e-16 per operation over sums of at most a few hundred terms (the 131072-value mean and
    # deviation of a spectrogram are summed pairwise, 17 levels): 2e-16 measured, 1e-12 far above it and far below
    # what a batch statistic or a missing standardisation would change.
    model = copy.deepcopy(wav2clip).double()
    inputs = toy_batch()["input_values"].double()
    with torch.no_grad():
        batched = model.get_audio_features(inputs).audio_embeds
        alone = torch.cat([model.get_audio_features(inputs[i : i + 1]).audio_embeds for i in range(3)])
        rescaled = model.get_audio_features(inputs * 3.0 + 1.0).audio_embeds
        crops = model.get_audio_features(inputs.unsqueeze(0)).audio_embeds
    torch.testing.assert_close(alone, batched, atol=1e-12, rtol=0)  # no batch statistics in the embedding
    torch.testing.assert_close(rescaled, batched, atol=1e-12, rtol=0)  # per-sample standardisation
    three_crops_of_one_story = crops[0]
    torch.testing.assert_close(three_crops_of_one_story, F.normalize(batched.mean(dim=0), dim=-1), atol=1e-12, rtol=0)


def test_wav2clip_trains_the_audio_side_only_and_its_loss_falls():
    torch.manual_seed(0)
    model = Wav2CLIPBaselineModel(tiny_wav2clip_config()).train()
    batch = toy_batch(seed=2, batch=4)
    batch.pop("input_ids"), batch.pop("attention_mask")
    batch["input_values"] = batch["input_values"][:, :256, :64]  # the ResNet takes any size; smaller is faster
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for step in range(20):
        loss = model(**batch, return_loss=True).loss
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            assert all(p.grad is None for p in model.clip.parameters())
            assert model.audio_encoder.stem[0].weight.grad.abs().sum() > 0 and model.logit_scale.grad is not None
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_wav2clip_saves_and_loads_with_and_without_this_package(wav2clip, tmp_path):
    batch = toy_batch()
    wav2clip.save_pretrained(tmp_path / "model")
    reloaded = Wav2CLIPBaselineModel.from_pretrained(tmp_path / "model").eval()
    with torch.no_grad():
        expected = wav2clip(**batch).logits_per_audio_video
        assert torch.equal(reloaded(**batch).logits_per_audio_video, expected)
    assert Wav2CLIPBaselineConfig.from_pretrained(tmp_path / "model").audio_channels == [4, 8]
    assert_remote_code_reproduces(tmp_path / "model", batch, expected, tmp_path)


def test_wav2clip_from_encoders_keeps_the_clip_weights(tmp_path):
    from transformers import CLIPModel

    clip = CLIPModel(tiny_wav2clip_config().clip_config)
    clip.save_pretrained(tmp_path)
    model = Wav2CLIPBaselineModel.from_encoders(clip=str(tmp_path), audio_channels=[4], audio_blocks=[1])
    for name, tensor in clip.state_dict().items():
        assert torch.equal(model.clip.state_dict()[name], tensor), name
    assert not any(p.requires_grad for p in model.clip.parameters())


# --------------------------------------------------------------------------------------- CLAP


@pytest.fixture(scope="module")
def clap() -> ClapRetrievalBaseline:
    torch.manual_seed(0)
    return ClapRetrievalBaseline(tiny_clap_config()).eval()


@pytest.fixture(scope="module")
def clap_processor() -> ClapBaselineProcessor:
    return ClapBaselineProcessor(feature_extractor=ClapFeatureExtractor(), tokenizer=tiny_clip_tokenizer())


@pytest.fixture(scope="module")
def clip_audio(cmd_samples):
    folder, records = cmd_samples
    return [AudioDecoder(str(folder / r["files"]["video"])).get_all_samples() for r in records], [
        r["description"] for r in records
    ]


def test_clap_similarity_is_clap_models_own_logits(clap, clap_processor, clip_audio):
    audios, texts = clip_audio
    inputs = clap_processor(text=texts, audio=audios)
    assert inputs["input_features"].shape == (2, 1, 1001, 64) and inputs["input_ids"].shape == (2, 77)
    with torch.no_grad():
        audio = clap.get_audio_features(inputs["input_features"], inputs["is_longer"])
        text = clap.get_text_features(inputs["input_ids"], inputs["attention_mask"])
        reference = ClapModel.forward(clap, **inputs, return_loss=True)
    assert isinstance(text, SoSTextFeatures)
    torch.testing.assert_close(clap.similarity(audio, text) * clap.logit_scale_a.exp(), reference.logits_per_audio)
    with pytest.raises(TypeError, match="audio-text model"):
        clap.similarity(audio, SoSVideoFeatures(video_embeds=audio.audio_embeds))


def test_clap_processor_crops_like_the_sos_processor_at_48k(clap, clap_processor, clip_audio):
    audio = clip_audio[0][0]
    wave = prepare_waveform(audio, target_sampling_rate=48_000)
    (start,) = select_audio_windows(wave, 480_000, hop=480)
    energies = [np.sum(wave[s : s + 480_000].astype(np.float64) ** 2) for s in range(0, len(wave) - 480_000 + 1, 480)]
    assert np.sum(wave[start : start + 480_000].astype(np.float64) ** 2) >= max(energies) * (1 - 1e-9)
    expected = clap_processor.feature_extractor(
        wave[start : start + 480_000], sampling_rate=48_000, truncation="rand_trunc", return_tensors="pt"
    )
    torch.testing.assert_close(clap_processor(audio=audio)["input_features"], expected["input_features"])
    crops = clap_processor(audio=audio, audio_crops=2)
    assert crops["input_features"].shape == (1, 2, 1, 1001, 64)
    with torch.no_grad():
        joint = clap.get_audio_features(crops["input_features"], crops["is_longer"]).audio_embeds
        single = [
            clap.get_audio_features(crops["input_features"][:, k], crops["is_longer"][:, k]).audio_embeds
            for k in range(2)
        ]
    torch.testing.assert_close(joint, F.normalize(single[0] + single[1], dim=-1))


def test_clap_baseline_and_processor_round_trip(clap, clap_processor, clip_audio, tmp_path):
    audios, texts = clip_audio
    clap.save_pretrained(tmp_path / "model")
    clap_processor.save_pretrained(tmp_path / "processor")
    model = ClapRetrievalBaseline.from_pretrained(tmp_path / "model").eval()
    processor = ClapBaselineProcessor.from_pretrained(tmp_path / "processor")
    assert (processor.max_text_length, processor.audio_window_seconds) == (77, 10.0)
    inputs, expected_inputs = processor(text=texts, audio=audios), clap_processor(text=texts, audio=audios)
    for key in expected_inputs:
        torch.testing.assert_close(inputs[key], expected_inputs[key], atol=0, rtol=0)
    with torch.no_grad():
        loss = model(**inputs, return_loss=True).loss
        expected_loss = clap(**expected_inputs, return_loss=True).loss
    assert torch.equal(loss, expected_loss)
