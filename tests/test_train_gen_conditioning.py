"""Training conditions the ControlNet on a story's frames exactly as the pipeline does at generation time.

`training.sosgen.DenoisingModel` (what `train_sosgen --mode controlnet|image` optimises) and
`SoSgenControlNetPipeline.predict_noise` (what generation runs) build the frame condition separately: the
filmstrip hint, the CLIP frame tokens of the window, the text states. A difference would train one model and
generate with another; here both predict the noise of the same latents and must agree.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sound_of_story.pipelines.tiny_random import tiny_components, tiny_sosgen_controlnet
from sound_of_story.training.sosgen import DenoisingModel, frame_residuals


def _story(count: int, seed: int) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.random((3, 40, 56), dtype=np.float32)) for _ in range(count)]


@pytest.mark.parametrize(
    "full_width, window_start, width, times",
    [
        (64, 0, 64, [0.0, 0.2, 0.45]),  # the whole image is one window
        (224, 96, 128, [0.0, 0.35, 0.8, 1.5, 2.0]),  # the second of two overlapping 128-column windows
    ],
)
def test_training_predicts_the_noise_the_pipeline_predicts(full_width, window_start, width, times):
    pipe = tiny_sosgen_controlnet(tiny_components())
    frames, prompt = _story(len(times), 0), "rain on a tin roof"
    seen = {}
    original = pipe.predict_noise

    def capture(latent_model_input, t, step_index, prompt_embeds, timestep_cond, window):
        noise = original(latent_model_input, t, step_index, prompt_embeds, timestep_cond, window)
        if step_index == 0 and window.start == window_start:
            seen.update(latents=latent_model_input.clone(), t=t, noise=noise.clone(), window=window)
        return noise

    pipe.predict_noise = capture
    # guidance 1: no unconditional half, so the pipeline's batch is the training batch
    pipe(
        prompt,
        frames=frames,
        frame_times=times,
        width=full_width,
        num_inference_steps=2,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    )
    assert seen, "the pipeline never predicted the noise of the window under test"
    assert seen["window"].width == width

    input_ids = pipe.tokenizer(
        [prompt],
        max_length=pipe.tokenizer.model_max_length,
        padding="max_length",
        truncation=True,
        return_tensors="pt",
    ).input_ids
    model = DenoisingModel(pipe, "controlnet").eval()
    timesteps = torch.as_tensor(seen["t"]).reshape(1)
    with torch.no_grad():
        noise = model(seen["latents"], timesteps, input_ids, [frames], [times], torch.tensor([window_start]))
    # Exact: both paths run the same modules on the same inputs of the same shapes (batch 1), so any difference
    # would be a difference in the condition, not rounding.
    torch.testing.assert_close(noise, seen["noise"], rtol=0, atol=0)

    # and the frames matter: another story's frames give other residuals, hence another prediction
    with torch.no_grad():
        other = model(
            seen["latents"], timesteps, input_ids, [_story(len(times), 1)], [times], torch.tensor([window_start])
        )
        down, mid = frame_residuals(pipe, pipe.controlnet, seen["latents"], timesteps, [frames], [times], [0])
    assert not torch.allclose(other, noise, atol=1e-4)
    assert mid.abs().max() > 0 and len(down) == len(pipe.controlnet.controlnet_down_blocks)
