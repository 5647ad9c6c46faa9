#!/usr/bin/env python
"""Train SoSgen (paper section 4.2.2) on a built SoS dataset's generation config.

    accelerate launch train/gen.py --mode text --pretrained_model riffusion/riffusion-model-v1 --dataset DIR --output_dir OUT
    accelerate launch train/gen.py --mode controlnet --pretrained_model OUT --dataset DIR --output_dir OUT_CN
    accelerate launch train/gen.py --mode image --pretrained_model riffusion/riffusion-model-v1 --dataset DIR --output_dir OUT_IMG

SoSgen_text+image (controlnet) continues from the SoSgen_text output; SoSgen_image starts from Riffusion, as in the
paper (section 4.2.2, Figure 5). docs/training.md has the full recipe.

The flags are the fields of `sound_of_story.training.arguments.SoSgenTrainingArguments` (`--help` lists each with
its default); the training steps live in `sound_of_story.training.sosgen`, whose `train_sosgen` the demo calls with
arguments built in Python.
"""

import sys

from huggingface_hub.errors import StrictDataclassError

from sound_of_story.training.sosgen import parse_sosgen_args, train_sosgen


def main(argv: list[str] | None = None) -> int:
    try:
        train_sosgen(parse_sosgen_args(argv))
    except (ValueError, FileNotFoundError, StrictDataclassError) as error:  # bad input, or an invalid saved config
        print(f"train/gen.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
