"""Model cards for every Hub-ready unit this package pushes (retrieval models, SoSgen pipelines, training outputs),
and what a card or a tracker may show of a command line and its settings (`cards.public`)."""

from .model_card import build_model_card
from .public import is_secret_name, public_command, public_eval_results, public_path, public_settings

__all__ = [
    "build_model_card",
    "is_secret_name",
    "public_command",
    "public_eval_results",
    "public_path",
    "public_settings",
]
