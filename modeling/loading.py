"""The one way to load a saved retrieval model: by its configuration's ``model_type``.

Training (``--init_from``), Table 2 (``evaluate retrieval``) and the sound library index (``index --model``) all
load through :func:`load_retrieval_model`; a folder or Hub id of any of the kinds works everywhere.

The kinds: ``sos`` (the paper's model), ``wav2clip_original`` and ``msclap`` (Table 2's baselines as the paper ran
them: the original Wav2CLIP and Microsoft CLAP 2022, first made from their own checkpoint files with
``Wav2CLIPOriginalModel.from_original_checkpoint`` / ``MSClapModel.from_original_checkpoint`` and saved), and two
variants: ``wav2clip`` (a Wav2CLIP-style ResNet on the AST fbank, random audio weights) and ``clap`` (LAION's CLAP).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

ModelKind = Literal["sos", "wav2clip", "clap", "wav2clip_original", "msclap"]
MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)


@dataclass
class LoadedRetrievalModel:
    """A retrieval model (in eval mode, on ``device``), its processor, and which of the package's kinds it is."""

    model: Any
    processor: Any
    kind: ModelKind

    def __iter__(self):  # `model, processor, kind = load_retrieval_model(...)`
        return iter((self.model, self.processor, self.kind))


def _kinds() -> dict[str, tuple[ModelKind, Any, Any]]:
    from .configuration_msclap import MSClapConfig
    from .configuration_sos import SoSRetrievalConfig
    from .configuration_wav2clip_baseline import Wav2CLIPBaselineConfig
    from .configuration_wav2clip_original import Wav2CLIPOriginalConfig
    from .modeling_clap_baseline import ClapBaselineProcessor, ClapRetrievalBaseline
    from .modeling_msclap import MSClapModel
    from .modeling_sos import SoSRetrievalModel
    from .modeling_wav2clip_baseline import Wav2CLIPBaselineModel
    from .modeling_wav2clip_original import Wav2CLIPOriginalModel
    from .processing_msclap import MSClapProcessor
    from .processing_sos import SoSRetrievalProcessor
    from .processing_wav2clip_original import Wav2CLIPOriginalProcessor

    return {
        SoSRetrievalConfig.model_type: ("sos", SoSRetrievalModel, SoSRetrievalProcessor),
        Wav2CLIPBaselineConfig.model_type: ("wav2clip", Wav2CLIPBaselineModel, SoSRetrievalProcessor),
        "clap": ("clap", ClapRetrievalBaseline, ClapBaselineProcessor),
        Wav2CLIPOriginalConfig.model_type: ("wav2clip_original", Wav2CLIPOriginalModel, Wav2CLIPOriginalProcessor),
        MSClapConfig.model_type: ("msclap", MSClapModel, MSClapProcessor),
    }


def retrieval_model_kind(name_or_path: str | os.PathLike, revision: str | None = None) -> ModelKind:
    """The kind of a saved retrieval model, read from its ``config.json`` (nothing else is loaded).

    Raises:
        FileNotFoundError: no such folder, no ``config.json`` in it, or a Hub id that cannot be reached.
        ValueError: the configuration is not one of the retrieval models (``sos``, ``wav2clip``, ``clap``).
    """
    from transformers import AutoConfig

    name_or_path = str(name_or_path)
    if Path(name_or_path).exists() and not (Path(name_or_path) / "config.json").is_file():
        raise FileNotFoundError(
            f"model folder {name_or_path!r} has no config.json (save the model with save_pretrained)"
        )
    try:
        model_type = AutoConfig.from_pretrained(name_or_path, revision=revision).model_type
    except OSError as err:
        raise FileNotFoundError(f"cannot load a model config from {name_or_path!r}: {err}") from None
    kinds = _kinds()
    if model_type not in kinds:
        raise ValueError(
            f"{name_or_path!r} is a {model_type!r} model, not a retrieval model: expected one of "
            f"{sorted(kinds)} (SoS, the Wav2CLIP and CLAP baselines)"
        )
    return kinds[model_type][0]


def load_retrieval_model(
    name_or_path: str | os.PathLike,
    *,
    device: Any = None,
    revision: str | None = None,
    expected_kind: ModelKind | None = None,
    eval_mode: bool = True,
) -> LoadedRetrievalModel:
    """A saved retrieval model and its processor from one folder or Hub repo, by the config's ``model_type``.

    ``SoSRetrievalModel`` and ``Wav2CLIPBaselineModel`` come with a ``SoSRetrievalProcessor``; a ``ClapModel``
    checkpoint (for example ``laion/clap-htsat-unfused``) loads as ``ClapRetrievalBaseline`` with a
    ``ClapBaselineProcessor``; ``Wav2CLIPOriginalModel`` and ``MSClapModel`` with ``Wav2CLIPOriginalProcessor`` and
    ``MSClapProcessor``. (Their original checkpoint files load with ``from_original_checkpoint``, not here.) ``expected_kind`` refuses a model of another kind (for a flag that names one);
    ``device`` defaults to the CPU; ``eval_mode=False`` leaves the model in training mode.

    Raises:
        FileNotFoundError: the folder, its config or its processor files are missing, or the Hub is unreachable.
        ValueError: not a retrieval model, or not of ``expected_kind``.
    """
    name_or_path = str(name_or_path)
    kind = retrieval_model_kind(name_or_path, revision=revision)
    if expected_kind is not None and kind != expected_kind:
        raise ValueError(f"{name_or_path!r} is a {kind} model, not {expected_kind}")
    _, model_class, processor_class = next(v for v in _kinds().values() if v[0] == kind)
    try:
        processor = processor_class.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError, TypeError) as err:
        raise FileNotFoundError(
            f"no usable {processor_class.__name__} saved with the model in {name_or_path!r}: {err}"
        ) from None
    try:
        model = model_class.from_pretrained(name_or_path, revision=revision)
    except OSError as err:
        raise FileNotFoundError(f"cannot load the {kind} model weights from {name_or_path!r}: {err}") from None
    if device is not None:
        model = model.to(device)
    if eval_mode:
        model.eval()
    return LoadedRetrievalModel(model, processor, kind)


__all__ = ["MODEL_KINDS", "LoadedRetrievalModel", "ModelKind", "load_retrieval_model", "retrieval_model_kind"]
