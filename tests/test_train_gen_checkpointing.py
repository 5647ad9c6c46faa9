"""`train/gen.py --gradient_checkpointing` recomputes the activations of every module the gradient passes through.

In the frame modes the UNet is frozen but the ControlNet's gradient flows back through it, so its activations are the
ones that matter: at full size (Riffusion's UNet on a 512 x 1536 window, float32) checkpointing only the ControlNet
left 19 of the step's 31 GB of saved activations (docs/training.md, "Paper size"). Here, at tiny size: the UNet is
checkpointed in every mode, the saved activations shrink, and the gradients are those of the step without it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sound_of_story.training.arguments import SoSgenTrainingArguments
from sound_of_story.training.sosgen import prepare_denoising_model

pytest_plugins = ["training_fixtures"]


def _step(
    root, mode: str, checkpointing: bool, unet_checkpointing: bool = True
) -> tuple[dict[str, torch.Tensor], int, object]:
    """One forward and backward of `mode`'s denoising model on fixed inputs: its trained parameters' gradients, the
    bytes autograd saved for the backward pass, and the model. `unet_checkpointing=False` turns the UNet's
    checkpointing off again (what the frame modes did before: only the ControlNet was checkpointed)."""
    args = SoSgenTrainingArguments(
        mode=mode, pretrained_model=str(root / "text"), image_encoder=str(root / "image_encoder"), dataset="-",
        output_dir="-", validation_split="none", gradient_checkpointing=checkpointing,
    )  # fmt: skip
    torch.manual_seed(0)
    pipe, trained = prepare_denoising_model(args, "cpu")
    if not unet_checkpointing:
        trained.unet.disable_gradient_checkpointing()
    trained.train()
    rng = np.random.default_rng(0)
    height = pipe.spectrogram_params.num_frequencies // pipe.vae_scale_factor
    latents = torch.from_numpy(rng.standard_normal((1, 4, height, 16), dtype=np.float32))
    frames = [[torch.from_numpy(rng.random((3, 40, 56), dtype=np.float32)) for _ in range(3)]]
    input_ids = pipe.tokenizer(["rain"], padding="max_length", max_length=pipe.tokenizer.model_max_length).input_ids
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        saved[storage._cdata] = storage.nbytes()
        return tensor

    parameters = {name: p for name, p in trained.named_parameters() if p.requires_grad}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        pred = trained(
            latents, torch.tensor([500]), torch.tensor(input_ids), frames, [[0.0, 0.1, 0.2]], torch.tensor([0])
        )
    pred.square().mean().backward()
    weights = {p.untyped_storage()._cdata for p in trained.parameters()}
    activations = sum(size for key, size in saved.items() if key not in weights)
    return {name: p.grad.clone() for name, p in parameters.items()}, activations, trained


@pytest.mark.parametrize("mode", ["text", "controlnet"])
def test_gradient_checkpointing_covers_the_unet_and_keeps_the_gradients(tiny_sosgen_dir, mode):
    plain, plain_bytes, _ = _step(tiny_sosgen_dir, mode, checkpointing=False)
    checkpointed, checkpointed_bytes, trained = _step(tiny_sosgen_dir, mode, checkpointing=True)

    assert trained.unet.is_gradient_checkpointing
    assert checkpointed_bytes < plain_bytes
    if mode != "text":
        assert trained.controlnet.is_gradient_checkpointing
        assert not any(p.requires_grad for p in trained.unet.parameters())  # frozen, yet checkpointed
        # the ControlNet alone checkpointed keeps the frozen UNet's activations: more bytes saved than both
        _, controlnet_only_bytes, _ = _step(tiny_sosgen_dir, mode, checkpointing=True, unet_checkpointing=False)
        assert checkpointed_bytes < controlnet_only_bytes < plain_bytes
    assert plain.keys() == checkpointed.keys() and plain
    for name, grad in plain.items():
        # The recomputed forward is the same computation on the same inputs: the same gradients up to float32
        # rounding of a differently ordered backward.
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-6, msg=name)
