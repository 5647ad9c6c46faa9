"""One model card builder for every model this package writes or pushes.

Retrieval models (`SoSRetrievalModel.push_to_hub`), SoSgen pipelines (`push_to_hub`) and the outputs of
`train/retrieval.py` / `train/gen.py` all get the same kind of card: YAML metadata (library, base models,
dataset, pipeline tag, tags and a `model-index` from the last evaluation), then a body with the description,
the command line that produced the model and its training settings. The card is built without Jinja templates
(Jinja2 is only an optional dependency of huggingface_hub).

A card is public once pushed: the builder shows the command, the settings, the dataset, the base models and the
evaluation's dataset names through `cards.public` (no secret values, no absolute local paths), so no caller can put a
token or a user's folder on the Hub. Base models and datasets that are local folders are named in the body only (the
YAML's `base_model` and `datasets` take Hub ids).
"""

from __future__ import annotations

import json
from typing import Literal

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .public import is_hub_id, mask_tokens, public_command, public_eval_results, public_path, public_settings

PAPER_CITATION = """@inproceedings{bae2023soundofstory,
  title     = {Sound of Story: Multi-modal Storytelling with Audio},
  author    = {Bae, Jaeyeon and Jeong, Seokhoon and Kang, Seokun and Han, Namgi and Lee, Jae-Yon
               and Kim, Hyounghun and Kim, Taehwan},
  booktitle = {Findings of the Association for Computational Linguistics: EMNLP 2023},
  year      = {2023},
}"""

DEFAULT_TAGS = ("sound-of-story",)

# Every model and pipeline card says where the package's methods and defaults differ from the paper's.
PAPER_DIFFERENCES = (
    "Where this package's methods and defaults differ from the paper's, whose choice each is and the flag that gives "
    "the paper's way: `docs/paper.md` in the sound-of-story source."
)


def _settings_table(settings: dict) -> str:
    """A two-column markdown table; non-scalar values are shown as JSON so the table stays one line per row."""
    rows = ["| setting | value |", "|---|---|"]
    for key in sorted(settings):
        value = settings[key]
        if not isinstance(value, (str, int, float, bool)) and value is not None:
            value = json.dumps(value, default=str)
        rows.append(f"| `{key}` | `{value}` |")
    return "\n".join(rows)


def _results_table(eval_results: list[EvalResult]) -> str:
    rows = ["| dataset | split | metric | value |", "|---|---|---|---|"]
    for r in eval_results:
        metric = r.metric_name or r.metric_type
        rows.append(f"| {r.dataset_name} | {r.dataset_split or ''} | {metric} | {r.metric_value} |")
    return "\n".join(rows)


def build_model_card(
    *,
    library_name: Literal["transformers", "diffusers"],
    base_models: list[str],
    dataset: str | None = None,
    pipeline_tag: str | None = None,
    tags: list[str] | None = None,
    command: str | None = None,
    training_settings: dict | None = None,
    eval_results: list[EvalResult] | None = None,
    model_name: str | None = None,
    description: str = "",
) -> ModelCard:
    """Build the model card (README.md) of a model or pipeline this package saves or pushes.

    Args:
        library_name: `transformers` (retrieval models) or `diffusers` (pipelines).
        base_models: Hub ids or local folders the weights started from (Hub ids: `base_model` in the YAML; local
            folders: in the body only, relative or as `<local>/NAME`).
        dataset: the dataset id or folder it was trained / evaluated on (a local folder: in the body only).
        pipeline_tag: the Hub task tag (e.g. `text-to-audio`, `zero-shot-audio-classification`).
        tags: extra tags; `sound-of-story` is always added.
        command: the command line that produced the model, shown with secret values masked and local paths made
            public (`cards.public.public_command`).
        training_settings: hyper-parameters and other settings, shown as a table (`public_settings`).
        eval_results: the last evaluation; serialised to the `model-index` YAML (requires `model_name`, which
            defaults to the first base model's name when not given).
        model_name: the model's name (card title and `model-index` name).
        description: free text placed under the title.

    Returns:
        A `huggingface_hub.ModelCard`; `.save(path)` writes it, `.push_to_hub(repo_id)` uploads it.
    """
    if library_name not in ("transformers", "diffusers"):
        raise ValueError(f"library_name must be 'transformers' or 'diffusers', got {library_name!r}")
    all_tags = list(DEFAULT_TAGS) + [t for t in (tags or []) if t not in DEFAULT_TAGS]
    name = model_name or "sound-of-story-model"
    hub_models = [m for m in base_models if is_hub_id(m)]
    shown_models = [m if is_hub_id(m) else f"{public_path(m)} (a local folder)" for m in base_models]
    if eval_results:
        eval_results = public_eval_results(eval_results)
    data = ModelCardData(
        library_name=library_name,
        base_model=hub_models or None,
        datasets=[dataset] if dataset and is_hub_id(dataset) else None,
        pipeline_tag=pipeline_tag,
        tags=all_tags,
        model_name=name if eval_results else model_name,
        eval_results=list(eval_results) if eval_results else None,
    )
    body = [f"# {name}", ""]
    if description:
        body += [mask_tokens(description.strip()), ""]
    if base_models:
        body += ["## Base models", ""] + [f"- `{m}`" for m in shown_models] + [""]
    if dataset:
        body += [
            "## Dataset",
            "",
            f"`{public_path(dataset)}`" + ("" if is_hub_id(dataset) else " (a local folder)"),
            "",
        ]
    if command:
        body += ["## Command", "", "```bash", public_command(command), "```", ""]
    if training_settings:
        body += ["## Training settings", "", _settings_table(public_settings(training_settings)), ""]
    if eval_results:
        body += ["## Evaluation", "", _results_table(eval_results), ""]
    body += [PAPER_DIFFERENCES, ""]
    body += ["## Citation", "", "```bibtex", PAPER_CITATION, "```", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))
