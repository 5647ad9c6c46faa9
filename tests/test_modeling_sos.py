"""SoSRetrievalModel on tiny random configs: encoders, loss, training, saving and loading."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_remote_code_reproduces

from sound_of_story.modeling import SoSRetrievalConfig, SoSRetrievalModel, multi_grained_similarity
from sound_of_story.modeling.tiny_random import tiny_ast_config_dict, tiny_clip_config_dict, tiny_retrieval_config
from sound_of_story.modeling.tiny_random import tiny_random_inputs as toy_batch

BATCH, FRAMES = 3, 5


@pytest.fixture(scope="module")
def model() -> SoSRetrievalModel:
    torch.manual_seed(0)
    return SoSRetrievalModel(tiny_retrieval_config()).eval()


def test_forward_logits_are_scaled_multi_grained_similarity(model):
    # In float64: the forward pass and the separate calls below run the same arithmetic with other block shapes, so
    # in other summation orders. Round-off bound (as ROUND_OFF_ATOL in tests/test_modeling_similarity.py): D eps per
    # cosine (D = 16) times the error gains 1 + 2 (k - 1) / e of the poolings over 513 audio tokens (378) and 5 frames
    # (3.9) or 77 words (57), times the logit scale 14.3: 8e-11 (video) and 1.1e-9 (text). In float32 the same bounds
    # are 0.04 and 0.6, far above any tolerance that would test something.
    model = copy.deepcopy(model).double()
    batch = {k: v.double() if v.is_floating_point() else v for k, v in toy_batch().items()}
    with torch.no_grad():
        out = model(**batch, return_loss=True)
        audio = model.get_audio_features(batch["input_values"])
        video = model.get_video_features(batch["pixel_values"], batch["frame_mask"])
        text = model.get_text_features(batch["input_ids"], batch["attention_mask"])
    # the learnable scale, initialised as float32 ln(1/0.07): exp of it is within ln-value * 2**-24 relative
    scale, init = model.scale().item(), tiny_retrieval_config().clip_config.logit_scale_init_value
    assert scale == pytest.approx(math.exp(init), rel=init * 2**-23)
    expected_av = scale * multi_grained_similarity(
        audio.audio_embeds, audio.audio_token_embeds, video.video_embeds, video.frame_embeds
    )
    expected_at = scale * multi_grained_similarity(
        audio.audio_embeds, audio.audio_token_embeds, text.text_embeds, text.word_embeds
    )
    round_off = 2e-9
    torch.testing.assert_close(out.logits_per_audio_video, expected_av, rtol=0, atol=round_off)
    torch.testing.assert_close(out.logits_per_video_audio, expected_av.T, rtol=0, atol=round_off)
    torch.testing.assert_close(out.logits_per_audio_text, expected_at, rtol=0, atol=round_off)
    labels = torch.arange(BATCH)
    infonce = lambda logits: (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2  # noqa: E731
    # cross-entropy is 2-Lipschitz in the logits (max norm)
    torch.testing.assert_close(out.loss, (infonce(expected_av) + infonce(expected_at)) / 2, rtol=0, atol=2 * round_off)
    # Shapes of every grain: 513 AST tokens (distillation + 8 x 64 patches), 16-d, 77 words.
    assert audio.audio_token_embeds.shape == (BATCH, 513, 16) and video.frame_embeds.shape == (BATCH, FRAMES, 16)
    assert text.word_embeds.shape == (BATCH, 77, 16)
    for grain in (
        audio.audio_embeds,
        audio.audio_token_embeds,
        video.video_embeds,
        video.frame_embeds,
        text.text_embeds,
        text.word_embeds,
    ):
        # unit vectors to round-off: (D + 2) eps for a norm of D = 16 float64 entries
        torch.testing.assert_close(
            grain.norm(dim=-1), torch.ones(grain.shape[:-1], dtype=grain.dtype), rtol=0, atol=1e-14
        )


def test_backward_reaches_every_trainable_part():
    torch.manual_seed(0)
    model = SoSRetrievalModel(tiny_retrieval_config(similarity_chunk_size=2)).train()  # 2 x 2 checkpointed blocks
    model(**toy_batch(), return_loss=True).loss.backward()
    for name in ("clip.logit_scale", "audio_projection.weight", "temporal_encoder.layers.0.mlp.fc1.weight", "temporal_encoder.frame_position_embeddings.weight",
                 "clip.text_model.encoder.layers.0.self_attn.q_proj.weight", "clip.vision_model.encoder.layers.0.mlp.fc2.weight", "audio_model.layers.0.attention.q_proj.weight"):  # fmt: skip
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_loss_falls_on_a_repeated_toy_batch():
    torch.manual_seed(0)
    model = SoSRetrievalModel(tiny_retrieval_config()).train()
    batch = toy_batch(seed=1, batch=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        loss = model(**batch, return_loss=True).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_logit_scale_starts_as_clip_and_is_clamped_at_100(model):
    assert model.logit_scale.item() == pytest.approx(2.6592, abs=1e-4)  # CLIP's ln(1/0.07)
    clamped = SoSRetrievalModel(tiny_retrieval_config())
    with torch.no_grad():
        clamped.logit_scale.fill_(7.0)
    # exp of float32 ln(100) (rounded by up to 2.4e-7 absolute, so 2.4e-7 relative after exp) with exp's own ulp
    # (1.2e-7): within 4e-7 of 100 relative.
    assert clamped.scale().item() == pytest.approx(100.0, rel=4e-7)


def test_text_features_are_clips_projected_end_token_and_every_position(model):
    batch = toy_batch()
    with torch.no_grad():
        text = model.get_text_features(batch["input_ids"], batch["attention_mask"])
        clip_sentence = model.clip.get_text_features(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).pooler_output
        hidden = model.clip.text_model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
    torch.testing.assert_close(text.text_embeds, F.normalize(clip_sentence, dim=-1))
    torch.testing.assert_close(text.word_embeds, F.normalize(hidden @ model.clip.text_projection.weight.T, dim=-1))
    # The sentence feature is the word feature at the first end token.
    eot = (batch["input_ids"] == 1).int().argmax(dim=1)
    torch.testing.assert_close(text.text_embeds, text.word_embeds[torch.arange(BATCH), eot])


def test_video_features_follow_xclip_pooling_and_the_frame_feature_choice(model):
    batch = toy_batch()
    clip_model = SoSRetrievalModel(tiny_retrieval_config(frame_features="clip"))
    clip_model.load_state_dict(model.state_dict())
    clip_model.eval()
    with torch.no_grad():
        temporal = model.get_video_features(batch["pixel_values"])
        original = clip_model.get_video_features(batch["pixel_values"])
        clip_frames = model.clip.get_image_features(
            pixel_values=batch["pixel_values"].flatten(0, 1)
        ).pooler_output.view(BATCH, FRAMES, -1)
        encoded = model.temporal_encoder(clip_frames, torch.ones(BATCH, FRAMES))
    torch.testing.assert_close(original.frame_embeds, F.normalize(clip_frames, dim=-1))
    torch.testing.assert_close(temporal.frame_embeds, F.normalize(encoded, dim=-1))
    # f_v comes from the temporal encoder in both modes: normalise, mean, normalise.
    expected_video = F.normalize(F.normalize(encoded, dim=-1).mean(dim=1), dim=-1)
    torch.testing.assert_close(temporal.video_embeds, expected_video)
    torch.testing.assert_close(original.video_embeds, expected_video)
    assert (temporal.frame_embeds - original.frame_embeds).abs().max() > 1e-3


def test_padded_frames_do_not_change_the_video_feature(model):
    batch = toy_batch()
    mask = batch["frame_mask"].clone()
    mask[1, 3:] = 0
    changed = batch["pixel_values"].clone()
    changed[1, 3:] = torch.randn_like(changed[1, 3:])
    with torch.no_grad():
        before = model.get_video_features(batch["pixel_values"], mask)
        after = model.get_video_features(changed, mask)
    torch.testing.assert_close(after.video_embeds, before.video_embeds)
    torch.testing.assert_close(after.frame_embeds[:, :3], before.frame_embeds[:, :3])
    assert (after.frame_embeds[1, 3:] - before.frame_embeds[1, 3:]).abs().max() > 1e-3


def test_audio_frequency_pooling_gives_one_token_per_time_step():
    torch.manual_seed(0)
    pooled = SoSRetrievalModel(tiny_retrieval_config(audio_token_pooling="frequency")).eval()
    inputs = toy_batch()["input_values"][:2]
    with torch.no_grad():
        features = pooled.get_audio_features(inputs)
        hidden = pooled.audio_model(input_values=inputs).last_hidden_state
    # 128 mel bins / 16 = 8 frequency rows, 1024 frames / 16 = 64 time steps; patches are frequency-major.
    patches = hidden[:, 2:].reshape(2, 8, 64, -1)
    expected = F.normalize(pooled.audio_projection(patches.mean(dim=1)), dim=-1)
    assert features.audio_token_embeds.shape == (2, 64, 16)
    torch.testing.assert_close(features.audio_token_embeds, expected)
    torch.testing.assert_close(features.audio_embeds, F.normalize(pooled.audio_projection(hidden[:, 0]), dim=-1))


def test_several_audio_crops_average_the_audio_feature_and_concatenate_tokens(model):
    crops = toy_batch()["input_values"].view(1, 3, 1024, 128)
    with torch.no_grad():
        joint = model.get_audio_features(crops)
        single = [model.get_audio_features(crops[:, k]) for k in range(3)]
    expected = F.normalize(torch.stack([s.audio_embeds for s in single]).mean(dim=0), dim=-1)
    torch.testing.assert_close(joint.audio_embeds, expected)
    torch.testing.assert_close(joint.audio_token_embeds, torch.cat([s.audio_token_embeds for s in single], dim=1))


def test_mask_padded_frames_flag_reaches_the_similarity(model):
    batch = toy_batch()
    mask = batch["frame_mask"].clone()
    mask[2, 2:] = 0
    masked = SoSRetrievalModel(tiny_retrieval_config(mask_padded_frames=True))
    masked.load_state_dict(model.state_dict())
    masked.eval()
    with torch.no_grad():
        audio = model.get_audio_features(batch["input_values"])
        video = model.get_video_features(batch["pixel_values"], mask)
        xclip_sim = model.similarity(audio, video)
        masked_sim = masked.similarity(audio, video)
    expected = multi_grained_similarity(
        audio.audio_embeds, audio.audio_token_embeds, video.video_embeds, video.frame_embeds, mask
    )
    torch.testing.assert_close(masked_sim, expected)
    torch.testing.assert_close(masked_sim[:, :2], xclip_sim[:, :2])  # videos without padding agree
    assert (masked_sim[:, 2] - xclip_sim[:, 2]).abs().max() > 1e-6


def test_save_load_round_trip_gives_identical_outputs(model, tmp_path):
    batch = toy_batch()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not (tmp_path / "pytorch_model.bin").exists()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "sos_retrieval"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_sos.SoSRetrievalConfig",
        "AutoModel": "modeling_sos.SoSRetrievalModel",
    }
    reloaded = SoSRetrievalModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        expected, actual = model(**batch), reloaded(**batch)
    for name in ("logits_per_audio_video", "logits_per_audio_text"):
        assert torch.equal(expected[name], actual[name]), name
    from transformers import AutoConfig, AutoModel

    assert isinstance(AutoConfig.from_pretrained(tmp_path), SoSRetrievalConfig)
    assert type(AutoModel.from_pretrained(tmp_path)) is SoSRetrievalModel


def test_automodel_trust_remote_code_loads_without_this_package(model, tmp_path):
    """The saved folder is self-contained: a fresh interpreter that never imports sound_of_story loads
    it through `auto_map` and reproduces the logits."""
    batch = toy_batch()
    model.save_pretrained(tmp_path / "model")
    with torch.no_grad():
        expected = model(**batch).logits_per_audio_video
    assert_remote_code_reproduces(tmp_path / "model", batch, expected, tmp_path)


def test_from_encoders_copies_clip_ast_and_initialises_the_temporal_encoder_from_clip_text(tmp_path):
    from transformers import ASTConfig, ASTForAudioClassification, CLIPConfig, CLIPModel

    torch.manual_seed(1)
    clip = CLIPModel(CLIPConfig(**tiny_clip_config_dict(), logit_scale_init_value=4.0))
    ast = ASTForAudioClassification(ASTConfig(**tiny_ast_config_dict(), num_labels=3))
    clip.save_pretrained(tmp_path / "clip")
    ast.save_pretrained(tmp_path / "ast")
    model = SoSRetrievalModel.from_encoders(
        clip=str(tmp_path / "clip"),
        audio=str(tmp_path / "ast"),
        audio_token_pooling="frequency",
        max_frames=40,
        temporal_num_layers=2,
    )
    assert model.config.audio_token_pooling == "frequency"
    for name, tensor in clip.state_dict().items():
        assert torch.equal(model.clip.state_dict()[name], tensor), name
    for name, tensor in ast.audio_spectrogram_transformer.state_dict().items():
        assert torch.equal(model.audio_model.state_dict()[name], tensor), name
    assert model.logit_scale.item() == 4.0
    for target, source in zip(model.temporal_encoder.layers, clip.text_model.encoder.layers):
        for (name, a), (_, b) in zip(target.state_dict().items(), source.state_dict().items()):
            assert torch.equal(a, b), name
    assert torch.equal(
        model.temporal_encoder.frame_position_embeddings.weight,
        clip.text_model.embeddings.position_embedding.weight[:40],
    )


def test_config_round_trips_and_rejects_bad_values(tmp_path):
    config = tiny_retrieval_config(
        frame_features="clip", mask_padded_frames=True, temperature=0.02, similarity_chunk_size=8
    )
    config.save_pretrained(tmp_path)
    loaded = SoSRetrievalConfig.from_pretrained(tmp_path)
    for key in (
        "frame_features",
        "mask_padded_frames",
        "temperature",
        "similarity_chunk_size",
        "temporal_num_layers",
        "max_frames",
    ):
        assert getattr(loaded, key) == getattr(config, key), key
    assert loaded.projection_dim == 16 and loaded.audio_config.time_stride == 16
    defaults = SoSRetrievalConfig()
    assert (defaults.temporal_num_layers, defaults.temperature, defaults.projection_dim, defaults.temporal_heads) == (
        4,
        0.01,
        512,
        8,
    )
    with pytest.raises(Exception, match="frame_features"):
        SoSRetrievalConfig(frame_features="temporal_encoder")
    with pytest.raises(Exception, match="temperature must be > 0"):
        SoSRetrievalConfig(temperature=0.0)


def test_bad_inputs_raise_clear_errors(model):
    batch = toy_batch()
    with pytest.raises(ValueError, match="input_values .* is required"):
        model(pixel_values=batch["pixel_values"])
    with pytest.raises(ValueError, match="give pixel_values"):
        model(input_values=batch["input_values"])
    with pytest.raises(ValueError, match=r"input_values must have shape \(batch, 1024, 128\)"):
        model.get_audio_features(batch["input_values"][:, :512])
    empty = batch["frame_mask"].clone()
    empty[0] = 0
    with pytest.raises(ValueError, match=r"frame_mask: rows \[0\] have no valid entry"):
        model.get_video_features(batch["pixel_values"], empty)
    with pytest.raises(ValueError, match="max_frames=40"):
        model.get_video_features(torch.zeros(1, 41, 3, 32, 32))
    with pytest.raises(TypeError, match="SoSVideoFeatures or SoSTextFeatures"):
        model.similarity(model.get_audio_features(batch["input_values"][:1]), torch.zeros(1, 16))
    with pytest.raises(ValueError, match="square logits"):
        model(input_values=batch["input_values"][:2], pixel_values=batch["pixel_values"], return_loss=True)
