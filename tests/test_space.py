"""The web app (app/space.py): served on a local port, driven in headless Chromium, and its handlers' values."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from sound_of_story.app.space import TOP_K, SoundOfStoryApp, SpaceSettings, launch_space

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Offline and quiet: no network, no first-run or background traffic, a fresh profile per test.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
)  # fmt: skip
LIBRARY_TONES_HZ = (220.0, 330.0, 440.0, 660.0, 880.0, 1320.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def space_models(tmp_path_factory) -> SpaceSettings:
    """Tiny random SoSgen and ControlNet pipelines and a tiny retrieval model saved to folders, and a
    library of six tones (12 s each) that the app indexes on first use."""
    from sound_of_story.modeling import SoSRetrievalModel
    from sound_of_story.modeling.tiny_random import tiny_retrieval_config, tiny_retrieval_processor
    from sound_of_story.pipelines.tiny_random import tiny_sosgen, tiny_sosgen_controlnet

    root = tmp_path_factory.mktemp("space")
    tiny_sosgen().save_pretrained(root / "sosgen")
    tiny_sosgen_controlnet().save_pretrained(root / "sosgen-controlnet")
    torch.manual_seed(0)
    SoSRetrievalModel(tiny_retrieval_config()).save_pretrained(root / "retrieval")
    tiny_retrieval_processor().save_pretrained(root / "retrieval")
    (root / "library").mkdir()
    rate = 16_000
    t = np.arange(12 * rate) / rate
    for hz in LIBRARY_TONES_HZ:
        sf.write(root / "library" / f"tone_{int(hz)}.wav", 0.3 * np.sin(2 * np.pi * hz * t), rate)
    for i, color in enumerate(((200, 40, 40), (40, 200, 40), (40, 40, 200))):
        Image.new("RGB", (64, 48), color).save(root / f"frame_{i}.png")
    return SpaceSettings(
        model=str(root / "sosgen"), controlnet_model=str(root / "sosgen-controlnet"), retrieval_model=str(root / "retrieval"),
        library=str(root / "library"), index=str(root / "index"),
    )  # fmt: skip


def test_handlers_generate_from_text_and_frames_and_rank_the_library(space_models):
    app = SoundOfStoryApp(space_models)
    root = Path(space_models.model).parent
    frames = [root / f"frame_{i}.png" for i in range(3)]
    (rate, audio), spectrogram, note = app.generate("rain on a tin roof", None, "", 2.0, 3, 0)
    assert rate == 8000 and audio.shape == (16_000,) and np.abs(audio).max() > 0 and "SoSgenPipeline" in note
    again = app.generate("rain on a tin roof", None, "", 2.0, 3, 0)[0][1]
    np.testing.assert_array_equal(audio, again)  # the seed fixes the sound
    (rate, with_frames), _, note = app.generate("rain on a tin roof", frames, "0, 0.5, 1.2", 2.0, 3, 0)
    assert "SoSgenControlNetPipeline" in note and "3 frame(s)" in note and with_frames.shape == (16_000,)
    assert not np.array_equal(with_frames, audio)
    with pytest.raises(ValueError, match="frame times"):
        app.generate("x", frames, "0, 1", 2.0, 3, 0)
    rows, clips = app.retrieve(None, frames, TOP_K)
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
    assert [r[2] for r in rows] == sorted((r[2] for r in rows), reverse=True)  # best score first
    assert {r[1] for r in rows} <= {f"tone_{int(hz)}.wav" for hz in LIBRARY_TONES_HZ}
    rate, top = clips[0]
    expected, expected_rate = sf.read(root / "library" / rows[0][1], dtype="float32")
    assert rate == expected_rate and np.allclose(top, expected, atol=1e-4)  # the player gets the library clip itself
    scenes, first = app.recommend_story(frames, "0, 4, 8", 12.0)
    assert [s[1] for s in scenes] == [0.0, 4.0, 8.0] and len(
        {s[3] for s in scenes}
    ) == 3  # one distinct sound per scene
    with pytest.raises(ValueError, match="either a description or frames"):
        app.retrieve("", None, 3)


def test_browser_submits_a_generation_request_and_gets_audio(space_models):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = _free_port()
    blocks = launch_space(space_models, port=port, block=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={Path(space_models.model).parent / f'chromium-{time.time_ns()}'}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 120)
        text = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#generate-text textarea"))
        text.send_keys("waves breaking on a quiet beach")
        driver.find_element(By.CSS_SELECTOR, "#generate-button").click()
        note = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#generate-note textarea").get_attribute("value"))
        assert "SoSgenPipeline" in note and "seed 0" in note
        # Gradio 6 plays the answer in its waveform player (the <audio> element stays hidden) and links the
        # WAV the server wrote for this request; the player shows its length.
        source = wait.until(
            lambda d: next(
                (
                    a.get_attribute("href")
                    for a in d.find_elements(By.CSS_SELECTOR, "#generate-audio a[data-testid=download-link]")
                ),
                None,
            )
        )
        assert source.startswith(f"http://127.0.0.1:{port}/") and source.endswith(".wav")
        assert wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#generate-audio time#duration").text) == "0:05"
        audio = driver.execute_async_script(
            "const done = arguments[1]; fetch(arguments[0]).then(r => r.arrayBuffer()).then(b => done(Array.from(new Uint8Array(b))));",
            source,
        )
        samples, rate = sf.read(__import__("io").BytesIO(bytes(audio)))
        assert rate == 8000 and len(samples) == int(5.0 * rate) and np.abs(samples).max() > 0  # the default 5 s
    finally:
        driver.quit()
        blocks.close()


def test_space_command_says_what_is_missing(tmp_path):
    cli = Path(sys.executable).with_name("sound-of-story")
    result = subprocess.run(
        [str(cli), "space", "--demo-dir", str(tmp_path / "nothing")], capture_output=True, text=True, timeout=120
    )
    assert (
        result.returncode == 2
        and "run `sound-of-story demo` first" in result.stderr
        and "Traceback" not in result.stderr
    )
