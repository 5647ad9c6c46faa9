"""The multi-grained similarity (paper eqs. 1-11, X-CLIP's AOSM) against the golden X-CLIP output and
an independent per-pair reference; chunking, masks and gradients."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sound_of_story.modeling import masked_mean_pool, multi_grained_similarity

GOLDEN = Path(__file__).resolve().parent / "golden" / "xclip_aosm_case_a.npz"
COMPONENTS = ("s_a_v", "s_a_f", "s_as_v", "s_as_f")

# The golden README's tolerances: float64 against its values, which two independent implementations reproduce to
# 7e-16; float32 end to end, where X-CLIP's own float32 code is within 1.2e-7 of them.
GOLDEN_FLOAT64_ATOL, GOLDEN_FLOAT32_ATOL = 1e-10, 1e-5
EPS64 = float(np.finfo(np.float64).eps)
# Two float64 evaluations of the same similarity that sum in other orders (other block shapes, kernels, processors)
# differ by round-off. A cosine of unit vectors in D = 16 dims moves by at most D eps (eps = 2.2e-16) between two
# summation orders. A softmax pooling over k entries multiplies an error of its entries by at most 1 + 2 (k - 1) / e,
# whatever the temperature T (an entry g below the maximum weighs at most exp(-g / T), and g exp(-g / T) / T <= 1 / e);
# S'_as,f stacks two over 6 tokens and 7 frames: 16 eps (1 + 10 / e)(1 + 12 / e) ~ 9e-14, plus the poolings' own
# round-off of that order. 1e-12 holds it (measured: 3e-16 on AVX-512 and AVX2 kernels).
ROUND_OFF_ATOL = 1e-12
# Gradients differentiate the softmax weights, which turns a logit error into a weight error 1 / T (100) times larger.
GRADIENT_ROUND_OFF_ATOL = ROUND_OFF_ATOL / 0.01


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _softmax_pool(x: np.ndarray, temperature: float) -> float:
    weights = np.exp((x - x.max()) / temperature)
    return float((weights / weights.sum()) @ x)


def reference_similarity(audio_cls, audio_seq, video_frames, frame_mask, temperature, mask_frames):
    """The golden README's definition, one (audio, video) pair at a time, padded frames left out of
    the frame-axis softmaxes by selection when `mask_frames`. Returns (4, Na, Nv): the four terms."""
    a, w, f = (_normalize(np.asarray(x, dtype=np.float64)) for x in (audio_cls, audio_seq, video_frames))
    out = np.zeros((4, len(a), len(f)))
    for j in range(len(f)):
        valid = frame_mask[j].astype(bool)
        v = _normalize(f[j][valid].mean(axis=0))
        keep = valid if mask_frames else np.ones_like(valid)
        for i in range(len(a)):
            tokens_frames = w[i] @ f[j].T  # (n, m)
            per_frame = np.array([_softmax_pool(tokens_frames[:, k], temperature) for k in range(f.shape[1])])
            per_token = np.array([_softmax_pool(row[keep], temperature) for row in tokens_frames])
            out[:, i, j] = (
                a[i] @ v,
                _softmax_pool((f[j] @ a[i])[keep], temperature),
                _softmax_pool(w[i] @ v, temperature),
                (_softmax_pool(per_frame[keep], temperature) + _softmax_pool(per_token, temperature)) / 2,
            )
    return out


def _model_similarity(
    audio_cls, audio_seq, video_frames, frame_mask, temperature, mask_frames, chunk_size=None, dtype=torch.float64
):
    t = lambda x: torch.as_tensor(np.asarray(x), dtype=dtype)  # noqa: E731
    a = torch.nn.functional.normalize(t(audio_cls), dim=-1)
    w = torch.nn.functional.normalize(t(audio_seq), dim=-1)
    f = torch.nn.functional.normalize(t(video_frames), dim=-1)
    mask = torch.as_tensor(frame_mask)
    v = masked_mean_pool(f, mask)
    return multi_grained_similarity(
        a,
        w,
        v,
        f,
        mask if mask_frames else None,
        temperature=temperature,
        chunk_size=chunk_size,
        return_components=True,
    )


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN))


def _clustered(rng, shape, spread=0.4):
    """Unit-ish vectors near a common direction with random norms, like the golden's inputs: the
    cosines sit close together, so the 0.01-temperature softmaxes mix several entries."""
    common = rng.standard_normal(shape[-1])
    x = common + spread * rng.standard_normal(shape) * np.sqrt(shape[-1]) / 4
    return x * np.exp(rng.uniform(-1, 1, shape[:-1] + (1,)))


@pytest.fixture(scope="module")
def padded_case():
    """4 audios x 5 videos, 6 tokens, 7 frames; video j has its last j frames padded (video 0 none)."""
    rng = np.random.default_rng(3)
    mask = np.ones((5, 7), dtype=np.int64)
    for j in range(1, 5):
        mask[j, 7 - j :] = 0
    return _clustered(rng, (4, 16)), _clustered(rng, (4, 6, 16)), _clustered(rng, (5, 7, 16)), mask


def test_float64_matches_golden_sim_and_every_component(golden):
    out = _model_similarity(
        golden["audio_cls"],
        golden["audio_seq"],
        golden["video_frames"],
        golden["frame_mask"],
        float(golden["temperature"]),
        False,
    )
    np.testing.assert_allclose(out.similarity.numpy(), golden["sim"], atol=GOLDEN_FLOAT64_ATOL, rtol=0)
    for name in COMPONENTS:
        np.testing.assert_allclose(out[name].numpy(), golden[name], atol=GOLDEN_FLOAT64_ATOL, rtol=0, err_msg=name)
    # Sim is the mean of the four terms (eq. 11 with S_a,v), up to the round-off of a mean of four values in [-1, 1]
    # summed in another order: at most 3 u per term on each side, u = eps / 2.
    np.testing.assert_allclose(
        out.similarity.numpy(), np.mean([out[n].numpy() for n in COMPONENTS], axis=0), atol=4 * EPS64, rtol=0
    )


def test_float32_end_to_end_within_golden_tolerance(golden):
    out = _model_similarity(
        golden["audio_cls"],
        golden["audio_seq"],
        golden["video_frames"],
        golden["frame_mask"],
        0.01,
        False,
        dtype=torch.float32,
    )
    for name in ("similarity",) + COMPONENTS:
        np.testing.assert_allclose(
            out[name].double().numpy(),
            golden["sim" if name == "similarity" else name],
            atol=GOLDEN_FLOAT32_ATOL,
            rtol=0,
            err_msg=name,
        )


def test_mask_respecting_variant_matches_golden_alt_arrays(golden):
    out = _model_similarity(
        golden["audio_cls"], golden["audio_seq"], golden["video_frames"], golden["frame_mask"], 0.01, True
    )
    np.testing.assert_allclose(out.similarity.numpy(), golden["alt_masked_sim"], atol=GOLDEN_FLOAT64_ATOL, rtol=0)
    np.testing.assert_allclose(out.s_a_f.numpy(), golden["alt_masked_s_a_f"], atol=GOLDEN_FLOAT64_ATOL, rtol=0)
    np.testing.assert_allclose(out.s_as_f.numpy(), golden["alt_masked_s_as_f"], atol=GOLDEN_FLOAT64_ATOL, rtol=0)


def test_independent_reference_reproduces_golden(golden):
    # Validates the per-pair reference used for the padded cases below.
    ref = reference_similarity(
        golden["audio_cls"], golden["audio_seq"], golden["video_frames"], golden["frame_mask"], 0.01, False
    )
    for k, name in enumerate(COMPONENTS):
        np.testing.assert_allclose(ref[k], golden[name], atol=GOLDEN_FLOAT64_ATOL, rtol=0, err_msg=name)


@pytest.mark.parametrize("temperature", [0.01, 0.3], ids=["default", "demo"])
@pytest.mark.parametrize("mask_frames", [False, True], ids=["xclip", "mask_respecting"])
def test_padded_frames_match_independent_reference(padded_case, mask_frames, temperature):
    # 0.01 is X-CLIP's temperature, the model's default (the paper's equations have none); 0.3 is the demo's softer
    # one (app/demo.py).
    ref = reference_similarity(*padded_case, temperature, mask_frames)
    out = _model_similarity(*padded_case, temperature, mask_frames)
    # The same float64 arithmetic in another order (per pair, numpy): round-off apart, as in ROUND_OFF_ATOL.
    for k, name in enumerate(COMPONENTS):
        np.testing.assert_allclose(out[name].numpy(), ref[k], atol=ROUND_OFF_ATOL, rtol=0, err_msg=name)
    np.testing.assert_allclose(out.similarity.numpy(), ref.mean(axis=0), atol=ROUND_OFF_ATOL, rtol=0)


def test_high_temperature_aggregations_tend_to_plain_means(padded_case):
    """As the temperature grows every softmax pooling becomes a mean: S'_a,f the mean of a . f_l over the valid
    frames (mask-respecting), S'_as,v the mean of w_k . v, S'_as,f the mean of all token-frame cosines."""
    audio_cls, audio_seq, frames, mask = padded_case
    temperature = 1e6
    out = _model_similarity(audio_cls, audio_seq, frames, mask, temperature, True)
    # A softmax pooling of cosines x at temperature T is mean(x) + Var(x) / T + O(1 / T^2), and Var(x) <= 1 for values
    # in [-1, 1]: each pooling lies within 1 / T of the plain mean; S'_as,f stacks two.
    bias = 2 / temperature
    a, w, f = (_normalize(np.asarray(x, dtype=np.float64)) for x in (audio_cls, audio_seq, frames))
    for j in range(len(f)):
        valid = mask[j].astype(bool)
        v = _normalize(f[j][valid].mean(axis=0))
        for i in range(len(a)):
            assert out.s_a_f[i, j].item() == pytest.approx((f[j][valid] @ a[i]).mean(), abs=bias / 2)
            assert out.s_as_v[i, j].item() == pytest.approx((w[i] @ v).mean(), abs=bias / 2)
            assert out.s_as_f[i, j].item() == pytest.approx((w[i] @ f[j][valid].T).mean(), abs=bias)
    # ... while at X-CLIP's temperature (the default) the poolings sit well above those means (near the maxima).
    sharp = _model_similarity(audio_cls, audio_seq, frames, mask, 0.01, True)
    assert (sharp.s_as_f > out.s_as_f + 1e-3).all()


def test_padded_frame_features_matter_only_in_xclip_mode(padded_case):
    audio_cls, audio_seq, frames, mask = padded_case
    changed = frames.copy()
    changed[mask == 0] = np.random.default_rng(9).standard_normal(changed[mask == 0].shape)
    for mask_frames, should_change in ((True, False), (False, True)):
        before = _model_similarity(audio_cls, audio_seq, frames, mask, 0.01, mask_frames).similarity
        after = _model_similarity(audio_cls, audio_seq, changed, mask, 0.01, mask_frames).similarity
        delta = (before - after).abs()
        assert delta[:, 0].max() <= ROUND_OFF_ATOL  # video 0 has no padding
        assert (delta.max() > 1e-4) == should_change


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 4, 100])
@pytest.mark.parametrize("mask_frames", [False, True])
def test_chunked_equals_unchunked(padded_case, chunk_size, mask_frames):
    full = _model_similarity(*padded_case, 0.01, mask_frames, chunk_size=100)
    chunked = _model_similarity(*padded_case, 0.01, mask_frames, chunk_size=chunk_size)
    for name in ("similarity",) + COMPONENTS:
        torch.testing.assert_close(chunked[name], full[name], atol=ROUND_OFF_ATOL, rtol=0)


def test_default_chunking_bounds_the_block(monkeypatch, padded_case):
    """With a tiny byte budget the automatic block is 1 x 1, and the result is unchanged."""
    from sound_of_story.modeling import modeling_sos

    full = _model_similarity(*padded_case, 0.01, False, chunk_size=100)
    assert modeling_sos.default_chunk_size(6, 7, torch.float64, budget_bytes=6 * 7 * 8 * 4) == 2
    monkeypatch.setattr(modeling_sos, "SIMILARITY_BLOCK_BYTES", 6 * 7 * 8)
    seen = []
    original = modeling_sos._similarity_block
    monkeypatch.setattr(
        modeling_sos,
        "_similarity_block",
        lambda *args: seen.append(args[1].shape[0] * args[3].shape[0]) or original(*args),
    )
    auto = _model_similarity(*padded_case, 0.01, False)
    assert max(seen) == 1 and len(seen) == 4 * 5
    torch.testing.assert_close(auto.similarity, full.similarity, atol=ROUND_OFF_ATOL, rtol=0)


def test_gradients_through_checkpointed_blocks_equal_unchunked(padded_case):
    audio_cls, audio_seq, frames, mask = padded_case
    weights = torch.from_numpy(np.random.default_rng(1).standard_normal((4, 5)))
    grads = []
    for chunk_size in (100, 2):  # one block (plain autograd), then 2 x 3 checkpointed blocks
        a, w, f = (torch.from_numpy(x).requires_grad_() for x in (audio_cls, audio_seq, frames))
        n = torch.nn.functional.normalize
        fn = n(f, dim=-1)
        sim = multi_grained_similarity(
            n(a, dim=-1),
            n(w, dim=-1),
            masked_mean_pool(fn, torch.from_numpy(mask)),
            fn,
            torch.from_numpy(mask),
            chunk_size=chunk_size,
        )
        (sim * weights).sum().backward()
        grads.append([a.grad, w.grad, f.grad])
    for full, chunked in zip(*grads):
        assert full.abs().max() > 0
        torch.testing.assert_close(chunked, full, atol=GRADIENT_ROUND_OFF_ATOL, rtol=0)


def test_invalid_inputs_raise_clear_errors(padded_case):
    audio_cls, audio_seq, frames, mask = (torch.from_numpy(np.asarray(x)) for x in padded_case)
    v = masked_mean_pool(frames, mask)
    empty = mask.clone()
    empty[2] = 0
    with pytest.raises(ValueError, match=r"target_mask: rows \[2\] have no valid entry"):
        multi_grained_similarity(audio_cls, audio_seq, v, frames, empty)
    with pytest.raises(ValueError, match="one embedding dimension"):
        multi_grained_similarity(audio_cls, audio_seq[..., :8], v, frames)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        multi_grained_similarity(audio_cls, audio_seq, v, frames, chunk_size=0)
    with pytest.raises(ValueError, match="target_mask must have shape"):
        multi_grained_similarity(audio_cls, audio_seq, v, frames, mask[:, :3])


def test_inference_path_equals_the_differentiable_path(padded_case):
    """Without autograd the two first-level softmaxes share one exponential; with it they are separate."""
    audio_cls, audio_seq, frames, mask = padded_case
    ones = np.ones_like(mask)  # the shared-exponential path serves unmasked blocks
    # The two paths exponentiate with other shifts and sum in other orders. float64: round-off, ROUND_OFF_ATOL.
    # float32: each pooled value is formed in logit units (|x| / T <= 100) and rounded there to u = 6e-8 relative,
    # T * 100 * u = 6e-8 in similarity units per rounding; 2e-6 allows ~30 such roundings between the two paths.
    for dtype, tolerance in ((torch.float64, ROUND_OFF_ATOL), (torch.float32, 2e-6)):
        with torch.no_grad():
            fast = _model_similarity(audio_cls, audio_seq, frames, ones, 0.01, False, dtype=dtype)
        a, w, f = (torch.tensor(x, dtype=dtype, requires_grad=True) for x in (audio_cls, audio_seq, frames))
        n = torch.nn.functional.normalize
        fn = n(f, dim=-1)
        exact = multi_grained_similarity(
            n(a, dim=-1), n(w, dim=-1), masked_mean_pool(fn, torch.from_numpy(ones)), fn, return_components=True
        )
        for name in ("similarity",) + COMPONENTS:
            torch.testing.assert_close(fast[name], exact[name].detach(), atol=tolerance, rtol=0)


def test_float32_underflow_falls_back_to_the_exact_path():
    """A token opposite to every frame (cosine -1 while the pair's best is +1) underflows exp() in float32."""
    from sound_of_story.modeling.modeling_sos import _shared_exponential_pools

    rng = np.random.default_rng(5)
    dim = 8
    frames = np.tile(np.eye(dim)[0], (2, 3, 1)) + 0.01 * rng.standard_normal((2, 3, dim))
    tokens = np.stack([np.eye(dim)[0], -np.eye(dim)[0], np.eye(dim)[1]]) + 0.01 * rng.standard_normal((3, dim))
    audio_seq, audio_cls = np.stack([tokens, tokens[::-1]]), rng.standard_normal((2, dim))
    mask = np.ones((2, 3), dtype=np.int64)
    logits = (
        torch.from_numpy(_normalize(audio_seq[:1]) @ _normalize(frames).reshape(-1, dim).T / 0.01)
        .float()
        .view(1, 3, 2, 3)
    )
    assert _shared_exponential_pools(logits) is None and _shared_exponential_pools(logits.double()) is not None
    ref = reference_similarity(audio_cls, audio_seq, frames, mask, 0.01, False)
    with torch.no_grad():
        out = _model_similarity(audio_cls, audio_seq, frames, mask, 0.01, False, dtype=torch.float32)
    for k, name in enumerate(COMPONENTS):
        np.testing.assert_allclose(out[name].double().numpy(), ref[k], atol=GOLDEN_FLOAT32_ATOL, rtol=0, err_msg=name)
