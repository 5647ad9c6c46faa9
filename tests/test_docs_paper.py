"""docs/paper.md cannot drift from the commands it names: every `--flag` on the page is an option of the command it
is written with (`build ...`, `evaluate generation ...`, `train/gen.py ...`; a bare `--flag` belongs to the last
command named earlier in the same table row or line, else to any command), every value it gives a flag with choices
is one of them, and the values the page calls defaults are the parsers' defaults. The parsers are the real ones,
built in-process: `sound-of-story`'s (`app.cli.build_parser`) and the training scripts' (`HfArgumentParser` over the
argument dataclasses)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from sound_of_story.app.cli import build_parser
from sound_of_story.training.arguments import RetrievalTrainingArguments, SoSgenTrainingArguments
from sound_of_story.training.arguments import build_parser as build_training_parser

PAGE = Path(__file__).resolve().parents[1] / "docs" / "paper.md"
CODE_SPAN = re.compile(r"`([^`]+)`")
FLAG = re.compile(r"^--[A-Za-z0-9][A-Za-z0-9_-]*$")
# Words that stand for a value the reader supplies (FILE, DIR, PATH, ID), not a choice to check.
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")

# Spans the page gives as a command's default: each flag's value must be the parser's default.
STATED_DEFAULTS = (
    "build --separator center",
    "build --bytesep-segment-seconds 30",
    "build --key-frames hash",
    "build --hash dhash",
    "build --max-similarity 0.5",
    "build --frame-fps 10",
    "build --slice-seconds 15",
    "build --min-content 78",
    "build --content-measure centroid_mag",
    "build --lsmdc-target-seconds 150",
    "build --vgg16-input auto",
    "build --generation-split random",
    "manifest lsmdc --encoding utf-8",
    "train/retrieval.py --model sos",
    "train/retrieval.py --num_train_epochs 100",
    "train/retrieval.py --learning_rate 1e-4",
    "train/retrieval.py --encoder_learning_rate 1e-7",
    "train/retrieval.py --weight_decay 0.2",
    "train/retrieval.py --clip_model openai/clip-vit-base-patch32",
    "train/retrieval.py --audio_model MIT/ast-finetuned-audioset-10-10-0.4593",
    "train/gen.py --mode text --pretrained_model riffusion/riffusion-model-v1",
    "train/gen.py --weight_decay 0.01",
    "train/gen.py --image_encoder openai/clip-vit-base-patch32",
    "train/gen.py --train_batch_size 1 --gradient_accumulation_steps 16 --learning_rate 1e-6 --lr_scheduler cosine",
    "evaluate generation --griffin-lim exact",
    "evaluate generation --steps 50",
    "evaluate generation --resampler resampy",
)


@pytest.fixture(scope="module")
def commands() -> dict[str, argparse.ArgumentParser]:
    """Every command of the page by the words it is written with: `build`, `manifest sos`, `evaluate generation`,
    `convert-vgg16`, `train/retrieval.py`, `train/gen.py`, ..."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, words: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found[" ".join([*words, name])] = sub
                    walk(sub, [*words, name])

    walk(build_parser(), [])
    for arguments in (RetrievalTrainingArguments, SoSgenTrainingArguments):
        found[arguments.script] = build_training_parser(arguments, "")
    return found


def _command_of(words: list[str], commands: dict) -> tuple[str | None, list[str]]:
    """The longest run of leading words that names a command, and the words after it."""
    for n in (2, 1):
        if len(words) >= n and " ".join(words[:n]) in commands:
            return " ".join(words[:n]), words[n:]
    return None, words


def _check_words(words: list[str], parsers: list, where: str, problems: list[str]) -> int:
    """Check the flags in `words` against `parsers` (one: the command they are written with; all: any command will
    do); return how many flags were checked."""
    checked = 0
    for i, word in enumerate(words):
        flag = word.split("=", 1)[0]
        if not FLAG.match(flag):
            continue
        checked += 1
        actions = [p._option_string_actions[flag] for p in parsers if flag in p._option_string_actions]
        if not actions:
            problems.append(
                f"{where}: {flag} is not an option of {'that command' if len(parsers) == 1 else 'any command'}"
            )
            continue
        value = word.split("=", 1)[1] if "=" in word else (words[i + 1] if i + 1 < len(words) else None)
        if value is None or value.startswith("--") or PLACEHOLDER.match(value):
            continue
        choices = [{str(c) for c in action.choices} for action in actions if action.choices]
        if not choices:
            continue
        for alternative in value.split("|"):
            if not any(alternative in allowed for allowed in choices):
                problems.append(f"{where}: {alternative!r} is not a choice of {flag} ({sorted(choices[0])})")
    return checked


def check_page(text: str, commands: dict) -> tuple[list[str], int]:
    """The problems of a page's flags (empty when all exist) and the number of flags checked."""
    problems: list[str] = []
    checked = 0
    for number, line in enumerate(text.splitlines(), 1):
        current = None  # the last command named on this line (a table row is one line)
        for span in CODE_SPAN.findall(line):
            words = span.replace("\\|", "|").split()
            command, rest = _command_of(words, commands)
            current = command or current
            parsers = [commands[current]] if current is not None else list(commands.values())
            checked += _check_words(rest, parsers, f"line {number}, `{span}`", problems)
    return problems, checked


def test_every_flag_on_the_page_exists_in_its_command(commands):
    problems, checked = check_page(PAGE.read_text(), commands)
    assert not problems, "\n".join(problems)
    # the page names the paper's way for every step: dozens of flags, so the check above is not vacuous
    assert checked >= 90, checked


def test_the_check_catches_a_missing_flag_a_wrong_command_and_a_wrong_choice(commands):
    page = "\n".join(
        [
            "| speech | `build --separator bytesep` |",  # fine
            "| x | `build --no-such-flag` |",
            "| y | `evaluate fad --resampler resampy` |",  # an `evaluate generation` flag, not `evaluate fad`'s
            "| z | `train/gen.py --paper_schedule passes\\|weeks` |",
            "| w | `evaluate generation --steps 50` and `--griffin-lim slow` |",  # bare span: the row's command
            "| v | `--not-anywhere` |",
        ]
    )
    problems, checked = check_page(page, commands)
    assert checked == 7
    assert len(problems) == 5, problems
    assert "--no-such-flag is not an option" in problems[0]
    assert "--resampler is not an option of that command" in problems[1]
    assert "'weeks' is not a choice of --paper_schedule" in problems[2]
    assert "'slow' is not a choice of --griffin-lim" in problems[3]
    assert "--not-anywhere is not an option of any command" in problems[4]


def _same(value: str, default) -> bool:
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return float(value) == float(default)
    return value == str(default)


@pytest.mark.parametrize("span", STATED_DEFAULTS)
def test_the_defaults_the_page_states_are_the_commands_defaults(span, commands):
    assert f"`{span}`" in PAGE.read_text(), f"docs/paper.md no longer states `{span}`"
    command, words = _command_of(span.split(), commands)
    parser = commands[command]
    flags = [(w, words[i + 1]) for i, w in enumerate(words) if w.startswith("--")]
    assert flags
    for flag, value in flags:
        default = parser._option_string_actions[flag].default
        assert _same(value, default), f"{command} {flag}: the page says {value}, the default is {default!r}"


def test_model_cards_point_to_the_page():
    from sound_of_story.cards import build_model_card

    card = str(build_model_card(library_name="diffusers", base_models=[], description="A SoSgen pipeline."))
    assert "`docs/paper.md` in the sound-of-story source" in card
    assert card.index("docs/paper.md") < card.index("## Citation")
    assert PAGE.is_file()
