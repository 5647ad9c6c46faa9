"""Training loops of the retrieval model and the SoSgen pipelines, shared by ``train/*.py`` and the demo."""
