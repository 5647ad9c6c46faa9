"""The demo (`make demo`): its report writer, and a reduced run whose report is checked against the data."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sound_of_story.app.report import (
    AudioClip,
    Gallery,
    Image,
    Paragraph,
    Report,
    Table,
    curves_png,
    frames_png,
    spectrogram_png,
    wav_bytes,
    write_report,
)

CLI = Path(sys.executable).with_name("sound-of-story")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _data_uris(page: str, mime: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(rf'src="data:{re.escape(mime)};base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_is_self_contained_and_markdown_links_the_same_media(tmp_path):
    rate = 44_100
    t = np.arange(rate * 12) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    wav = wav_bytes(np.stack([tone, tone]), rate)
    audio, wav_rate = sf.read(io.BytesIO(wav))
    # Cut to 10 s, resampled to 16 kHz mono; the tone survives (its spectral peak stays at 440 Hz).
    assert wav_rate == 16_000 and audio.ndim == 1 and len(audio) == 160_000
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * wav_rate / len(audio) - 440) < 2
    report = Report("A <test> report", data={"table2": {"trained": {"A2V": {"R@1": {"value": 50.0, "ci_low": 25.0, "ci_high": 75.0}}}}})
    report.section("Numbers").add(
        Paragraph("Some **bold** and `code` with a <tag>."),
        Table(["model", "R@1", "note"], [["trained", 50.0, "a|b"], ["random", float("nan"), ""]], caption="Table"),
    )
    spectrogram = spectrogram_png(tone, rate, "tone")
    report.section("Media").add(
        Image(curves_png({"loss": ([1, 2, 3], [3.0, 2.0, 1.0])}, "step", "loss"), "curve", "curve"),
        Gallery([AudioClip(wav, "tone A", "tone", spectrogram), AudioClip(wav, "tone B", "tone")], caption="two players"),
        Image(frames_png([np.full((90, 160, 3), 200, np.uint8)] * 3), "frames", "frames"),
    )
    paths = write_report(report, tmp_path)
    page = paths["html"].read_text()
    assert "http://" not in page and "https://" not in page  # nothing to fetch: every medium is inline
    assert "A &lt;test&gt; report" in page and "<strong>bold</strong>" in page and "&lt;tag&gt;" in page
    assert _data_uris(page, "audio/wav") == [wav, wav]
    pngs = _data_uris(page, "image/png")
    assert len(pngs) == 3 and all(p.startswith(PNG_MAGIC) for p in pngs) and spectrogram in pngs
    assert "<td>50.0</td>" in page and "<td>n/a</td>" in page
    markdown = paths["markdown"].read_text()
    assert "| trained | 50.0 | a\\|b |" in markdown
    linked = re.findall(r"\]\((report_files/[^)]+)\)", markdown)
    assert sorted(Path(p).suffix for p in linked) == [".png"] * 3 + [".wav"] * 2
    assert len(set(linked)) == 5  # two clips named "tone" get distinct files
    assert {(tmp_path / p).read_bytes() for p in linked if p.endswith(".wav")} == {wav}
    assert json.loads(paths["json"].read_text()) == report.data
