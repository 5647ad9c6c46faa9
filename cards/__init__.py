"""Model cards for every Hub-ready unit this package pushes (retrieval models, SoSgen pipelines, training outputs)."""

from .model_card import build_model_card

__all__ = ["build_model_card"]
