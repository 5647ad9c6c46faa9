"""Model cards for every Hub-ready unit this package pushes (retrieval models, SoSgen pipelines, training outputs)."""
