"""Uploading a built SoS folder to the Hugging Face Hub: exactly the dataset, nothing local."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi

from .dataset_card import CARD_FILE, live_data_files


def files_to_upload(folder: str | Path) -> list[str]:
    """What ``push`` uploads (relative paths): the card and the Parquet files it names.

    Nothing else: not ``failures.jsonl`` (it holds local paths), not ``work/``, not the files of
    an older or unfinished build.
    """
    folder = Path(folder)
    data = live_data_files(folder)
    if not (folder / CARD_FILE).is_file() or not data:
        raise FileNotFoundError(
            f"{folder} is not a built SoS folder (no README.md card naming Parquet shards): run `sound-of-story build` first"
        )
    return [CARD_FILE, *data]


def push_dataset(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    create_repo: bool = True,
) -> str:
    """Upload the card and shards of ``folder`` (:func:`files_to_upload`) as dataset repository ``repo_id``."""
    folder = Path(folder)
    files = files_to_upload(folder)
    api = HfApi(token=token)
    if create_repo:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, repo_type="dataset", revision=revision,
        allow_patterns=files, commit_message="Upload SoS dataset built with sound-of-story",
    )  # fmt: skip
    return str(getattr(commit, "commit_url", None) or f"https://huggingface.co/datasets/{repo_id}")
