"""Uploading a built SoS folder to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi

# What a build folder holds besides the dataset: never uploaded.
IGNORE_PATTERNS = ["work/**", ".*", "**/.*"]


def push_dataset(folder: str | Path, repo_id: str, private: bool = False, revision: str | None = None, token: str | None = None, create_repo: bool = True) -> str:
    """Upload the shards, card and failures list of ``folder`` as dataset repository ``repo_id``."""
    folder = Path(folder)
    if not (folder / "README.md").is_file() or not any(folder.glob("*/*.parquet")):
        raise FileNotFoundError(f"{folder} is not a built SoS folder (no README.md card or Parquet shards): run `sound-of-story build` first")
    api = HfApi(token=token)
    if create_repo:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, repo_type="dataset", revision=revision,
        ignore_patterns=IGNORE_PATTERNS, commit_message="Upload SoS dataset built with sound-of-story",
    )  # fmt: skip
    return str(getattr(commit, "commit_url", None) or f"https://huggingface.co/datasets/{repo_id}")
