"""Training of the retrieval models and the SoSgen pipelines (paper sections 4.1.2 and 4.2.2).

`arguments` holds what the scripts accept (dataclasses parsed by transformers' `HfArgumentParser`), `loop` the
scaffold both loops share (accelerator, resume, per-update bookkeeping, finishing), `retrieval` and `sosgen` the two
loops. `train/retrieval.py` and `train/gen.py` are thin scripts over this part; the demo builds the arguments in
Python and calls the same entry points (`train_retrieval(args)`, `train_sosgen(args)`) in-process.
"""
