"""`sound-of-story generate` with bad and unlucky inputs: exit code 2 and a message naming the option or file,
checked before any weights load; the WAV and PNG written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from sound_of_story.app.cli import main
from sound_of_story.pipelines import SoSgenControlNetPipeline, SoSgenPipeline
from sound_of_story.pipelines.tiny_random import tiny_sosgen


class ModelLoaded(Exception):
    """Raised instead of loading weights: a check that should come first did not."""


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise ModelLoaded

    monkeypatch.setattr(SoSgenPipeline, "from_pretrained", refuse)
    monkeypatch.setattr(SoSgenControlNetPipeline, "from_pretrained", refuse)


def model_folder(tmp_path: Path, class_name: str = "SoSgenPipeline", **config) -> Path:
    """A pipeline folder with only its model_index.json: enough for every check before loading."""
    folder = tmp_path / class_name
    folder.mkdir(exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": class_name, **config}))
    return folder


def frames_folder(tmp_path: Path, count: int = 3) -> Path:
    folder = tmp_path / "frames"
    if folder.exists():  # made once per test: a test may have damaged a frame on purpose
        return folder
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(count):
        Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(folder / f"{k:03d}.png")
    return folder


def exit_code_and_error(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(["generate", *argv])
    return exited.value.code, capsys.readouterr().err


def text_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["--model", str(model_folder(tmp_path)), "--out", str(tmp_path / "out.wav"), "--text", "rain", *extra]


def controlnet_args(tmp_path: Path, *extra: str, image_only: bool = False) -> list[str]:
    model = model_folder(tmp_path, "SoSgenControlNetPipeline", image_only=image_only)
    return [
        "--model",
        str(model),
        "--out",
        str(tmp_path / "out.wav"),
        "--frames",
        str(frames_folder(tmp_path)),
        "--duration",
        "2",
        *extra,
    ]


def test_duration_has_an_upper_bound_naming_the_option(tmp_path, capsys, no_loading):
    code, err = exit_code_and_error(text_args(tmp_path, "--duration", "301"), capsys)
    assert code == 2 and "--duration 301 s is longer than --max-duration (300 s)" in err and "Traceback" not in err
    code, err = exit_code_and_error(text_args(tmp_path, "--duration", "nan"), capsys)
    assert code == 2 and "--duration must be a positive number" in err
    with pytest.raises(ModelLoaded):  # raising the bound lets it through to the model
        main(["generate", *text_args(tmp_path, "--duration", "301", "--max-duration", "400")])


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_guidance_must_be_finite(tmp_path, capsys, no_loading, value):
    code, err = exit_code_and_error(text_args(tmp_path, f"--guidance={value}"), capsys)
    assert code == 2 and f"--guidance must be a finite number, got {value}" in err


def test_empty_text_is_an_error_unless_image_only(tmp_path, capsys, no_loading):
    for text in ("", "   "):
        code, err = exit_code_and_error(
            ["--model", str(model_folder(tmp_path)), "--out", str(tmp_path / "o.wav"), "--text", text], capsys
        )
        assert code == 2 and "--text is empty" in err
    code, err = exit_code_and_error(["--model", str(model_folder(tmp_path)), "--out", str(tmp_path / "o.wav")], capsys)
    assert code == 2 and "--text is required" in err
    # --image-only (or an image-only model) needs no text, and refuses one.
    with pytest.raises(ModelLoaded):
        main(["generate", *controlnet_args(tmp_path, "--image-only")])
    with pytest.raises(ModelLoaded):
        main(["generate", *controlnet_args(tmp_path, image_only=True)])
    code, err = exit_code_and_error(controlnet_args(tmp_path, "--image-only", "--text", "rain"), capsys)
    assert code == 2 and "drop --text" in err
    code, err = exit_code_and_error(
        ["--model", str(model_folder(tmp_path)), "--out", str(tmp_path / "o.wav"), "--image-only"], capsys
    )
    assert code == 2 and "--image-only needs the story's frames" in err


@pytest.mark.parametrize(
    "times, message",
    [
        ("0,0.5", "--frame-times has 2 times but --frames holds 3 images"),
        ("0,1.5,0.5", "non-decreasing"),
        ("0,1,2.5", "--frame-times reach 2.5 s, beyond the --duration of 2 s"),
        ("0,nan,1", "finite"),
        ("0,a,1", "comma-separated numbers"),
    ],
)
def test_frame_times_are_checked_before_the_model_loads(tmp_path, capsys, no_loading, times, message):
    code, err = exit_code_and_error(controlnet_args(tmp_path, "--text", "sea", "--frame-times", times), capsys)
    assert code == 2 and message in err


def test_a_corrupt_frame_is_a_clear_error_before_the_model_loads(tmp_path, capsys, no_loading):
    folder = frames_folder(tmp_path)
    whole = (folder / "001.png").read_bytes()
    (folder / "001.png").write_bytes(whole[: len(whole) // 2])  # truncated
    code, err = exit_code_and_error(controlnet_args(tmp_path, "--text", "sea"), capsys)
    assert code == 2 and f"--frames: {folder / '001.png'} is not a readable image" in err
    (folder / "001.png").write_bytes(b"not an image at all")
    code, err = exit_code_and_error(controlnet_args(tmp_path, "--text", "sea"), capsys)
    assert code == 2 and "001.png is not a readable image" in err
    (folder / "001.png").write_bytes(whole)
    with pytest.raises(ModelLoaded):  # repaired: on to the model
        main(["generate", *controlnet_args(tmp_path, "--text", "sea")])


def test_out_under_an_existing_file_is_an_error(tmp_path, capsys, no_loading):
    (tmp_path / "taken").write_text("a file")
    argv = ["--model", str(model_folder(tmp_path)), "--text", "rain", "--out", str(tmp_path / "taken" / "a.wav")]
    code, err = exit_code_and_error(argv, capsys)
    assert code == 2 and "is a file, not a folder" in err


def test_wav_and_png_are_written_atomically(tmp_path, monkeypatch, capsys):
    pipe = tiny_sosgen()
    monkeypatch.setattr(SoSgenPipeline, "from_pretrained", lambda *args, **kwargs: pipe)
    out = tmp_path / "story.wav"
    argv = [
        "generate",
        "--model",
        str(model_folder(tmp_path)),
        "--text",
        "rain",
        "--duration",
        "0.5",
        "--steps",
        "1",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    first_audio, first_png = out.read_bytes(), out.with_suffix(".png").read_bytes()
    assert soundfile.info(str(out)).frames == 4000 and Image.open(out.with_suffix(".png")).size[1] == 32

    # A write that dies half way leaves the previous files whole and no partial file behind.
    real_write = soundfile.write

    def dies_half_way(path, data, *args, **kwargs):
        real_write(path, data[: len(data) // 2], *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(soundfile, "write", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        main([*argv, "--seed", "1"])
    monkeypatch.setattr(soundfile, "write", real_write)
    assert out.read_bytes() == first_audio
    real_save = Image.Image.save

    def save_dies(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)
        Path(fp).write_bytes(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", save_dies)
    with pytest.raises(OSError, match="disk full"):
        main([*argv, "--seed", "1"])
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert out.with_suffix(".png").read_bytes() == first_png
    assert out.read_bytes() != first_audio  # the WAV of seed 1 was complete, so it replaced seed 0's
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["story.png", "story.wav"]
