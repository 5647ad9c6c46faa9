"""A film-like test mix from a real music recording: stereo music, centred espeak-ng dialogue.

Speech removal is measured on it (``tests/test_speech_gate.py``, ``benchmarks/build_throughput.py``):
the sample clips' backgrounds are synthetic, and a separator tuned on them alone could fail on
real music. The recording is the saxophone take that gradio (a dependency of the web demo)
ships in ``gradio/media_assets/audio/sax.wav`` (16 s, 48 kHz, mono); it is the only real music
recording in the packages this project installs. A film mix places such a mono instrument in
stereo; by default it is panned left of centre (pan -0.5, constant power), so it is correlated
between the channels like a centred source but louder on one side, and the dialogue sits
exactly in the centre, over about 40% of the length at 0 dB (its RMS while it sounds equals the
music's RMS). ``pan=0`` puts the music itself in the centre, where only the speech gate can
tell it from dialogue.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from sound_of_story.audio import resample

MUSIC_RECORDING = ("gradio", "media_assets/audio/sax.wav")
LINES = (
    "I told you already, the boat leaves at midnight, and we are not going to be on it.",
    "Then tell me where you were last night, because nobody at the harbour saw you.",
)
MIX_RATE = 48_000


@dataclasses.dataclass(frozen=True)
class DialogueMix:
    mix: np.ndarray  # (2, samples) float32
    music: np.ndarray  # (2, samples): the mix without dialogue
    speech: np.ndarray  # (2, samples): the dialogue alone (equal in both channels)
    sample_rate: int
    speech_share: float  # of the length where dialogue sounds


def music_recording() -> tuple[np.ndarray, int]:
    """The real recording (mono float32) and its rate."""
    package, relative = MUSIC_RECORDING
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"the test music ships in the {package!r} package, which is not installed")
    path = Path(spec.origin).parent / relative
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


def speak(text: str, sample_rate: int, voice: str = "en-us") -> np.ndarray:
    """espeak-ng speaking ``text``, mono float32 at ``sample_rate``, leading/trailing silence trimmed."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise FileNotFoundError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "line.wav"
        subprocess.run([exe, "-v", voice, "-s", "150", "-w", str(wav), text], check=True, capture_output=True)
        speech, rate = sf.read(wav, dtype="float32")
    voiced = np.flatnonzero(np.abs(speech) > 1e-3)
    speech = speech[voiced[0] : voiced[-1] + 1]
    return resample(speech, rate, sample_rate, method="polyphase").astype(np.float32)


def dialogue_over_music(pan: float = -0.5, delay_ms: float = 0.0, speech_share: float = 0.4) -> DialogueMix:
    """The test mix (see the module docstring); ``pan`` in [-1, 1] (constant power), ``delay_ms`` on the right channel."""
    music, rate = music_recording()
    # polyphase, as when the speech-removal figures (tests, benchmarks) were measured on this mix
    music = resample(music, rate, MIX_RATE, method="polyphase").astype(np.float32)
    n = music.size
    angle = (pan + 1) * np.pi / 4
    delay = int(round(delay_ms * MIX_RATE / 1000))
    right = np.concatenate([np.zeros(delay, np.float32), music[: n - delay]])
    stereo_music = np.stack([np.cos(angle) * music, np.sin(angle) * right]).astype(np.float32)

    # the lines, spaced evenly, cut so that they cover speech_share of the clip
    lines = [speak(text, MIX_RATE) for text in LINES]
    target = int(speech_share * n)
    total = sum(line.size for line in lines)
    if total > target:  # cut the lines to the share (whole words do not matter to the measure)
        lines = [line[: int(line.size * target / total)] for line in lines]
    gap = (n - sum(line.size for line in lines)) // (len(lines) + 1)
    dialogue = np.zeros(n, np.float32)
    active = np.zeros(n, bool)
    at = gap
    for line in lines:
        dialogue[at : at + line.size] = line
        active[at : at + line.size] = True
        at += line.size + gap
    # 0 dB: the dialogue's RMS where it sounds equals the music's RMS (of its mono downmix)
    music_rms = np.sqrt(np.mean(stereo_music.mean(axis=0) ** 2))
    dialogue *= music_rms / np.sqrt(np.mean(dialogue[active] ** 2))
    speech = np.stack([dialogue, dialogue])
    return DialogueMix(
        (stereo_music + speech).astype(np.float32),
        stereo_music,
        speech.astype(np.float32),
        MIX_RATE,
        float(active.mean()),
    )
