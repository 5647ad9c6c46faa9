#!/usr/bin/env python
"""Train a Sound of Story retrieval model (paper section 4.1.2).

    accelerate launch train/retrieval.py --dataset DIR_OR_HUB_ID --pair audio-video --model sos --output_dir OUT

The flags are the fields of `sound_of_story.training.arguments.RetrievalTrainingArguments` (`--help` lists each
with its default); the training steps live in `sound_of_story.training.retrieval`, whose `train_retrieval` the demo
calls with arguments built in Python.
"""

import sys

from huggingface_hub.errors import StrictDataclassError

from sound_of_story.training.retrieval import parse_retrieval_args, train_retrieval


def main(argv: list[str] | None = None) -> int:
    try:
        train_retrieval(parse_retrieval_args(argv))
    except (ValueError, FileNotFoundError, StrictDataclassError) as error:  # bad input, or an invalid saved config
        print(f"train/retrieval.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
