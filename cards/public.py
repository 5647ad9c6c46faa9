"""What a model card, an experiment tracker or any file meant for others may show of a command line and its settings.

A card is public once pushed, and a tracker (wandb, comet) is a third party's service, so neither may hold a secret
value (a Hub token, a password, an API key) or an absolute local path (which names the machine's folders and, through
the home folder, its users). Every card built by `build_model_card` passes through these functions; code that
records a command line or settings elsewhere (a tracker's configuration) calls them itself.

- A secret is the value of a flag or setting named like one (`is_secret_name`: token, secret, password, key, ...),
  in `--flag value` and `--flag=value` forms, with `_` or `-`; and anything shaped like a Hugging Face access token
  (`hf_` and 20 or more letters and digits) wherever it appears. It becomes `<redacted>`.
- An absolute local path (`/...`, `~...`, `file://...`, `C:\\...`) becomes the path relative to the current folder
  when it lies inside it (unless the current folder holds the home folders, where that path would name a user), else
  `<local>/` and its last component. Relative paths and Hub ids are kept as they are.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path, PureWindowsPath
from typing import Any

SECRET_PLACEHOLDER = "<redacted>"
LOCAL_PLACEHOLDER = "<local>"
# Words that make a flag or setting name a secret's: --hub_token, --token, --api-key, --wandb_key, --password, ...
_SECRET_WORDS = frozenset(
    {"token", "secret", "secrets", "password", "passwd", "pwd", "passphrase", "credential", "credentials", "apikey",
     "auth", "authorization", "cookie"}
)  # fmt: skip
# Hugging Face user access tokens ("hf_" + 34 letters and digits; organisation API tokens "api_org_..."), masked
# wherever they appear, whatever flag (or none) carries them.
_TOKEN_PATTERN = re.compile(r"(?:hf_|api_org_)[A-Za-z0-9]{20,}")
_WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:[\\/]")


def is_secret_name(name: str) -> bool:
    """Whether a flag or setting called `name` holds a secret: one of its words (split at `-`, `_`, `.`) is a
    secret's (token, secret, password, credentials, auth, ...) or ends in "token", or its last word is "key"
    (`--api_key`, `--wandb-key`, `--private_key`; not `--key_frames`)."""
    words = [word for word in re.split(r"[-_.\s]+", name.lower()) if word]
    if not words:
        return False
    return any(word in _SECRET_WORDS or word.endswith("token") for word in words) or words[-1] in ("key", "keys")


def is_local_path(value: str) -> bool:
    """Whether `value` is written as an absolute local path (POSIX, home-relative, file:// or Windows)."""
    return value.startswith(("/", "~", "file://", "\\\\")) or bool(_WINDOWS_ABSOLUTE.match(value))


def public_path(value: str, cwd: str | os.PathLike | None = None) -> str:
    """`value` as a card may show it: an absolute local path relative to `cwd` (default: the current folder) when
    inside it, else `<local>/NAME`; anything else (relative paths, Hub ids) unchanged."""
    if not is_local_path(value):
        return value
    if _WINDOWS_ABSOLUTE.match(value) or value.startswith("\\\\"):
        name = PureWindowsPath(value).name
        return f"{LOCAL_PLACEHOLDER}/{name}" if name else LOCAL_PLACEHOLDER
    path = Path(os.path.normpath(os.path.expanduser(value.removeprefix("file://"))))
    here = Path(os.path.normpath(os.path.abspath(cwd if cwd is not None else os.getcwd())))
    home = Path(os.path.normpath(os.path.expanduser("~")))
    # Relative to the current folder, unless that folder holds the home folder (e.g. "/" or "/home"): a path from
    # there would start with the user's name.
    if path.is_relative_to(here) and (here == home or not home.is_relative_to(here)):
        return path.relative_to(here).as_posix() or "."
    if path == home or path.parent == path:
        return LOCAL_PLACEHOLDER
    return f"{LOCAL_PLACEHOLDER}/{path.name}"


def mask_tokens(text: str) -> str:
    """`text` with every Hugging Face access token in it replaced by `<redacted>` (free text: descriptions, logs)."""
    return _TOKEN_PATTERN.sub(SECRET_PLACEHOLDER, text)


def public_text(text: str, cwd: str | os.PathLike | None = None) -> str:
    """One value as a card may show it: access tokens masked, an absolute local path made public (`public_path`)."""
    return public_path(mask_tokens(text), cwd)


def public_command(
    command: str | Sequence[str], cwd: str | os.PathLike | None = None, secret_flags: Iterable[str] = (),
    local_paths: bool = True,
) -> str:  # fmt: skip
    """A command line as a card may show it: the values of secret flags (`is_secret_name`, and the option strings
    `secret_flags`, e.g. an abbreviation argparse resolved to a secret flag) replaced by `<redacted>` in both
    `--flag value` and `--flag=value` forms, access tokens masked anywhere, and (unless `local_paths=False`) absolute
    local paths made public. Returns the shell-quoted command."""
    if isinstance(command, str):
        try:
            words = shlex.split(command)
        except ValueError:  # unbalanced quotes: mask word by word all the same
            words = command.split()
    else:
        words = list(command)
    extra = set(secret_flags)

    def secret(flag: str) -> bool:
        return flag in extra or is_secret_name(flag.lstrip("-"))

    def shown(text: str) -> str:
        return public_text(text, cwd) if local_paths else mask_tokens(text)

    out: list[str] = []
    value_is_secret = False
    for word in words:
        if value_is_secret and not word.startswith("--"):
            out.append(SECRET_PLACEHOLDER)
            value_is_secret = False
            continue
        value_is_secret = False
        if word.startswith("-") and len(word) > 1 and not _is_number(word):
            flag, equals, value = word.partition("=")
            if equals:
                out.append(f"{flag}={SECRET_PLACEHOLDER if secret(flag) else shown(value)}")
            else:
                out.append(word)
                value_is_secret = secret(flag)
        else:
            out.append(shown(word))
    return shlex.join(out)


def public_settings(settings: dict[str, Any], cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """Settings (hyper-parameters, arguments) as a card or a tracker may show them: a secret setting's value (when
    set) `<redacted>`, a `command` made public with `public_command`, every other text with `public_text`; nested
    lists and dicts likewise."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if is_secret_name(str(key)) and value not in (None, "", False):
            out[key] = SECRET_PLACEHOLDER
        elif key == "command" and isinstance(value, str):
            out[key] = public_command(value, cwd)
        else:
            out[key] = _public_value(value, cwd)
    return out


def _public_value(value: Any, cwd) -> Any:
    if isinstance(value, str):
        return public_text(value, cwd)
    if isinstance(value, dict):
        return public_settings(value, cwd)
    if isinstance(value, (list, tuple)):
        return type(value)(_public_value(item, cwd) for item in value)
    return value


def public_eval_results(eval_results: Iterable, cwd: str | os.PathLike | None = None) -> list:
    """`huggingface_hub.EvalResult`s whose dataset names and types are made public (a local dataset folder becomes
    `<local>/NAME` or its relative path)."""
    fields = ("dataset_type", "dataset_name", "dataset_config", "source_name", "source_url")
    return [
        dataclasses.replace(
            result,
            **{
                name: public_text(getattr(result, name), cwd)
                for name in fields
                if isinstance(getattr(result, name, None), str)
            },
        )
        for result in eval_results
    ]


def is_hub_id(name: str) -> bool:
    """Whether `name` can only be a Hub repository id here: `name` or `owner/name`, not a local path or folder."""
    return (
        bool(name)
        and not is_local_path(name)
        and name.count("/") <= 1
        and not name.startswith(".")
        and not os.path.exists(name)
    )


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


__all__ = [
    "LOCAL_PLACEHOLDER",
    "SECRET_PLACEHOLDER",
    "is_hub_id",
    "is_local_path",
    "is_secret_name",
    "mask_tokens",
    "public_command",
    "public_eval_results",
    "public_path",
    "public_settings",
    "public_text",
]
