"""The paper's Tables 2 and 3 from a model (or pipeline) and a built dataset.

- :mod:`.retrieval`: ``encode_stories`` (section 4.1.2 protocol, per-story embedding cache) and
  ``retrieval_figures`` (A2V/V2A/A2T/T2A, R@K, MdR, MnR, bootstrap intervals), the random baseline.
- :mod:`.table2`: ``evaluate retrieval --model/--dataset``: loading models, ``table2.md``/``.json``, matrices.
- :mod:`.generation`: ``evaluate generation``: resumable generation (the baselines at their own settings), FAD,
  FAD-inf, KAD, outliers, ``table3`` with every setting and whose choice it is (the paper's only where it says so).
- :mod:`.model_index`: results into a model card's ``model-index``.
"""
