"""Training of the retrieval models and the SoSgen pipelines (paper sections 4.1.2 and 4.2.2).

`train/retrieval.py` and `train/gen.py` are thin scripts over this part; the demo calls the same entry points
(`train_retrieval(args)`, `train_sosgen(args)`) in-process.
"""
