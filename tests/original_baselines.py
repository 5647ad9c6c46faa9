"""What the original-format baseline goldens (tests/golden/wav2clip, tests/golden/msclap) were made from: the recipe
of their random-weight checkpoints and their inputs. Shared by tests/test_baselines_original_formats.py and by
tests/golden/make_original_baseline_goldens.py, which ran the original packages on them (see tests/golden/README.md).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

WAV2CLIP_SEED = 0
MSCLAP_SEED = 1
WAV2CLIP_RATE = 16_000
MSCLAP_RATE = 44_100
# Short enough for a 2-core CPU; both models take any length (Wav2CLIP was trained on 10 s, msclap on 5 s windows).
WAV2CLIP_CLIP_SAMPLES = 2 * WAV2CLIP_RATE
MSCLAP_CLIP_SAMPLES = MSCLAP_RATE
# A clip shorter than msclap's 5 s window, which msclap repeats (and so does MSClapProcessor).
MSCLAP_SHORT_CLIP_SAMPLES = 2 * MSCLAP_RATE
MSCLAP_TEXTS = ["a dog barks twice in the rain.", "soft piano music plays", "an engine starts, then a door closes!"]


def random_original_state_dict(
    spec: Sequence[tuple[str, Sequence[int], str]], seed: int, fixed: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """A random checkpoint of the layout `spec` (key, shape, dtype: in file order), one numpy generator for all.

    Per key, in order (`fixed` keys are taken as given and draw nothing): integer tensors (batch norms'
    `num_batches_tracked`) are 0; `logit_scale` is ln(1/0.07) + 0.5 z; `running_var` is uniform in [0.5, 1.5);
    `running_mean` and every other 1-D `bias` are 0.1 z; other 1-D tensors (norm scales) are 1 + 0.1 z; tensors of
    two or more dimensions are z * sqrt(2 / fan_in) with fan_in = prod(shape[1:]) (He). z is
    `rng.standard_normal(shape, dtype=np.float32)`, u `rng.random(shape, dtype=np.float32)`, rng =
    `np.random.default_rng(seed)`; the arithmetic is float32. Random batch-norm statistics keep the layers from
    being identities, so the embeddings differ between inputs and depend on every layer.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, torch.Tensor] = {}
    for key, shape, dtype in spec:
        shape = tuple(shape)
        if key in fixed:
            out[key] = fixed[key].detach().clone()
            continue
        if not dtype.startswith("float"):
            out[key] = torch.zeros(shape, dtype=getattr(torch, dtype))
            continue
        name = key.rsplit(".", 1)[-1]
        if name == "running_var":
            value = rng.random(shape, dtype=np.float32) + np.float32(0.5)
        else:
            z = rng.standard_normal(shape, dtype=np.float32)
            if key == "logit_scale":
                value = z * np.float32(0.5) + np.float32(math.log(1 / 0.07))
            elif len(shape) >= 2:
                value = z * np.float32(math.sqrt(2.0 / math.prod(shape[1:])))
            elif name in ("running_mean", "bias"):
                value = z * np.float32(0.1)
            else:
                value = z * np.float32(0.1) + np.float32(1.0)
        out[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32).reshape(shape))
    return out


def state_dict_spec(state_dict: Mapping[str, torch.Tensor]) -> list[tuple[str, list[int], str]]:
    return [(key, list(value.shape), str(value.dtype).removeprefix("torch.")) for key, value in state_dict.items()]


def tensor_fingerprint(tensor: torch.Tensor) -> dict:
    """Shape, dtype and SHA-256 of the little-endian bytes of a CPU tensor."""
    array = tensor.detach().cpu().contiguous().numpy()
    return {
        "shape": list(array.shape),
        "dtype": str(tensor.dtype).removeprefix("torch."),
        "sha256": hashlib.sha256(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()).hexdigest(),
    }


def _signal(rate: int, samples: int, tones: Sequence[float], seed: int) -> np.ndarray:
    """A test clip: a chirp, gated tones and some noise, float32, peak below 1."""
    t = np.arange(samples) / rate
    x = 0.25 * np.sin(2 * np.pi * (tones[0] * t + 300.0 * t**2))
    for index, tone in enumerate(tones[1:]):
        x += 0.15 * np.sin(2 * np.pi * tone * t) * (np.sin(2 * np.pi * (0.7 + index) * t) > 0)
    x += 0.03 * np.random.default_rng(seed).standard_normal(samples)
    return x.astype(np.float32)


def wav2clip_inputs() -> np.ndarray:
    """Three 2 s clips at 16 kHz, `(3, 32000)` float32."""
    return np.stack(
        [
            _signal(WAV2CLIP_RATE, WAV2CLIP_CLIP_SAMPLES, tones, seed)
            for seed, tones in enumerate([(200, 880), (90, 3000, 450), (1500, 60)])
        ]
    )


def msclap_inputs() -> tuple[np.ndarray, np.ndarray]:
    """Two 1 s clips at 44.1 kHz `(2, 44100)`, and one 2 s clip `(88200,)` for the window-filling path."""
    clips = np.stack(
        [
            _signal(MSCLAP_RATE, MSCLAP_CLIP_SAMPLES, tones, 10 + seed)
            for seed, tones in enumerate([(300, 5000), (80, 700, 12000)])
        ]
    )
    return clips, _signal(MSCLAP_RATE, MSCLAP_SHORT_CLIP_SAMPLES, (150, 2500, 9000), 20)


__all__ = [
    "MSCLAP_SEED",
    "MSCLAP_TEXTS",
    "WAV2CLIP_SEED",
    "msclap_inputs",
    "random_original_state_dict",
    "state_dict_spec",
    "tensor_fingerprint",
    "wav2clip_inputs",
]
