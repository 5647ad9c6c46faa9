#!/usr/bin/env python
"""Train a Sound of Story retrieval model (paper section 4.1.2).

    accelerate launch train/retrieval.py --dataset DIR_OR_HUB_ID --pair audio-video --model sos --output_dir OUT

The training steps live in `sound_of_story.training.retrieval` (the demo calls the same `train_retrieval`);
`--help` lists every flag with its default.
"""

import sys

from sound_of_story.training.retrieval import parse_retrieval_args, train_retrieval


def main(argv: list[str] | None = None) -> int:
    args = parse_retrieval_args(argv)
    try:
        train_retrieval(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"train/retrieval.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
