"""Safe with strangers' files and a public Space: each case crafts the hostile input it is about.

Uploads and frame folders (bounded reader, peak memory measured in a subprocess), indexes that name paths outside
their library, clip ids with terminal control sequences, FAISS files whose headers lie, a relative path taken for a
Hub repo, the work one request may cause, where the app listens and what its error messages show.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from sound_of_story.app import frame_reader
from sound_of_story.app.cli import main
from sound_of_story.app.frame_reader import (
    MAX_FRAME_FILE_BYTES,
    MAX_FRAME_PIXELS,
    MAX_FRAMES,
    FrameReadError,
    read_frame_files,
)
from sound_of_story.core.hashing import file_sha256, json_sha256
from sound_of_story.modeling import SoSRetrievalModel
from sound_of_story.modeling.tiny_random import tiny_retrieval_config, tiny_retrieval_processor
from sound_of_story.recommendation import (
    MAX_CANDIDATES,
    MAX_STORY_SCENES,
    CorruptIndexError,
    SoundLibraryIndex,
    library_index,
    printable,
)
from sound_of_story.recommendation.library import library_source

TONES_HZ = (220.0, 330.0, 440.0, 660.0)
# A terminal would clear the screen and print in red for this name, and a bidi override would reverse the rest.
HOSTILE_NAME = "rain\x1b[2J\x1b[31m\u202eevaw.wav"


def solid_png(path: Path, width: int, height: int, rgb: tuple[int, int, int] = (40, 90, 200)) -> Path:
    """A one-colour RGB PNG written row by row (its full pixels never exist in this process): 12000 x 12000 is
    about 420 KB on disk and 432 MB decoded, the upload of the issue."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    row = b"\x00" + bytes(rgb) * width  # filter byte 0, then the pixels
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def space_settings(tmp_path_factory):
    """A tiny retrieval model, a library of four tones (one with a hostile file name) and its index."""
    from sound_of_story.app.space import SpaceSettings

    root = tmp_path_factory.mktemp("security")
    torch.manual_seed(0)
    SoSRetrievalModel(tiny_retrieval_config()).save_pretrained(root / "model")
    tiny_retrieval_processor().save_pretrained(root / "model")
    (root / "library").mkdir()
    rate = 16_000
    t = np.arange(3 * rate) / rate
    for i, hz in enumerate(TONES_HZ):
        name = HOSTILE_NAME if i == 0 else f"tone_{int(hz)}.wav"
        sf.write(root / "library" / name, 0.3 * np.sin(2 * np.pi * hz * t), rate, format="WAV")
    SoundLibraryIndex.build(
        root / "library", root / "model", root / "index", index_type="flat", store_dtype="float32", progress=False
    )
    return SpaceSettings(retrieval_model=str(root / "model"), library=str(root / "library"), index=str(root / "index"))


@pytest.fixture(scope="module")
def index(space_settings) -> SoundLibraryIndex:
    return SoundLibraryIndex.load(space_settings.index)


# ----------------------------------------------------------------------------------------------- uploads


PEAK_MEMORY_SCRIPT = """
import json, resource, sys
from pathlib import Path
from sound_of_story.app.space import SoundOfStoryApp, SpaceSettings

def reset_peak():
    Path("/proc/self/clear_refs").write_text("5")  # the peak resident size starts again from the current one
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

settings = SpaceSettings(**json.loads(sys.argv[1]))
app = SoundOfStoryApp(settings)
app.retrieve(None, [sys.argv[2]], 5)  # loads the model and index, warms everything up
growth = {}
for name, files in json.loads(sys.argv[3]).items():
    before = reset_peak()
    try:
        app.retrieve(None, files, 5)
        outcome = "answered"
    except ValueError as err:
        outcome = str(err)
    growth[name] = {"kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, "outcome": outcome}
print(json.dumps(growth))
"""


def test_upload_peak_memory_is_bounded(tmp_path, space_settings):
    """Two 12000 x 12000 one-colour PNGs (the issue's upload: about 420 KB each, 432 MB decoded each, which the
    old app decoded whole and copied 40 times: 1 GB to 20 GB) are refused from their headers: the request's peak
    resident memory grows by less than 32 MiB. Two frames at the pixel cap (8K, 7680 x 4320, 100 MB decoded each)
    are answered within 256 MiB: one frame is decoded at a time (100 MB for these RGB ones; at most 7 bytes a
    pixel, 232 MB, for a mode converted to RGB) and shrunk to the model's size before the next (measured: 114 MiB;
    the old path grew by 1.06 GiB for a pair of 4K frames, 40 full-size copies each).
    Measured in a fresh interpreter with the peak reset before each request (/proc/self/clear_refs)."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak resident size")
    small = tmp_path / "small.png"
    Image.new("RGB", (64, 48), (200, 40, 40)).save(small)
    bomb = [str(solid_png(tmp_path / f"bomb{i}.png", 12000, 12000, (40, 90 + i, 200))) for i in range(2)]
    assert all(Path(p).stat().st_size < 500_000 for p in bomb)
    at_cap = [str(solid_png(tmp_path / f"uhd{i}.png", 7680, 4320, (90 + i, 40, 200))) for i in range(2)]
    requests = {"bomb": bomb, "at_cap": at_cap}
    settings = json.dumps(dataclasses.asdict(space_settings))
    result = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY_SCRIPT, settings, str(small), json.dumps(requests)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    growth = json.loads(result.stdout.strip().splitlines()[-1])
    assert "declares 12000 x 12000 pixels" in growth["bomb"]["outcome"] and "bomb0.png" in growth["bomb"]["outcome"]
    assert str(tmp_path) not in growth["bomb"]["outcome"]  # the browser is told the name, not the server path
    assert growth["bomb"]["kib"] < 32 * 1024, growth
    assert growth["at_cap"]["outcome"] == "answered"
    assert growth["at_cap"]["kib"] < 256 * 1024, growth


def test_reader_caps_count_size_format_pixels_and_shape(tmp_path):
    ok = tmp_path / "ok.png"
    Image.new("RGB", (40, 30), (10, 20, 30)).save(ok)
    with pytest.raises(FrameReadError, match=f"more than the {MAX_FRAMES} one request"):
        read_frame_files([ok] * (MAX_FRAMES + 1), 224)
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (MAX_FRAME_FILE_BYTES + 1))
    with pytest.raises(FrameReadError, match="bytes, more than"):
        read_frame_files([ok, big], 224, flag="--frames")
    eps = tmp_path / "drawing.png"  # PostScript under an image name: Pillow would run Ghostscript to read it
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(FrameReadError, match="drawing.png is not a readable image"):
        read_frame_files([eps], 224)
    tiff = tmp_path / "scan.png"
    Image.new("RGB", (8, 8)).save(tiff, format="TIFF")
    with pytest.raises(FrameReadError, match="not a readable image"):
        read_frame_files([tiff], 224)
    just_over = solid_png(tmp_path / "over.png", 7681, 4320)
    with pytest.raises(FrameReadError, match=f"more than the {MAX_FRAME_PIXELS:,}"):
        read_frame_files([just_over], 224)
    strip = solid_png(tmp_path / "strip.png", 4001, 1000)
    with pytest.raises(FrameReadError, match="at most 4 times longer"):
        read_frame_files([strip], 224)
    limits = frame_reader.FrameLimits(max_pixels=10**9)  # Pillow's own bomb check still stands behind ours
    with pytest.raises(FrameReadError, match="more pixels"):
        read_frame_files([solid_png(tmp_path / "huge.png", 14000, 14000)], 224, limits)


def test_reader_decodes_each_distinct_file_once_at_the_model_size(tmp_path):
    """Identical uploads share one decoded image; a frame is read at the processor's size (JPEG at a reduced
    DCT scale), and the processor's pixels from it match those from the full image."""
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.linspace(0, 1, 1920), np.linspace(0, 1, 1080))
    pixels = np.stack([x, y, (x + y) / 2], axis=-1) * 200 + rng.normal(0, 4, (1080, 1920, 3))
    full = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    full.save(tmp_path / "a.png")
    full.save(tmp_path / "a.jpg", quality=95)
    shutil.copy(tmp_path / "a.png", tmp_path / "copy.png")
    frames = read_frame_files([tmp_path / "a.png", tmp_path / "copy.png", tmp_path / "a.jpg"], 224)
    assert frames[0] is frames[1] and frames[0] is not frames[2]
    assert [f.size for f in frames] == [(398, 224)] * 3 and {f.mode for f in frames} == {"RGB"}
    processor = tiny_retrieval_processor()  # 32-pixel frames
    small = read_frame_files([tmp_path / "a.png", tmp_path / "a.jpg"], frame_reader.retrieval_frame_side(processor))
    assert [f.size for f in small] == [(56, 32)] * 2
    reference = processor.image_processor(images=[full], return_tensors="np")["pixel_values"]
    for frame in small:
        got = processor.image_processor(images=[frame], return_tensors="np")["pixel_values"]
        assert np.abs(got - reference).mean() < 0.05  # CLIP-normalised units (std ~0.27 of a [0, 1] pixel)


def test_cli_frames_go_through_the_same_reader(tmp_path, capsys, space_settings):
    """`recommend --frames` and `generate --frames` refuse the crafted PNG before any model loads (exit 2)."""
    frames = tmp_path / "frames"
    frames.mkdir()
    solid_png(frames / "0.png", 12000, 12000)
    with pytest.raises(SystemExit) as exited:
        main(["recommend", "--index", space_settings.index, "--frames", str(frames)])
    assert exited.value.code == 2 and "--frames" in (err := capsys.readouterr().err) and "12000 x 12000" in err
    pipeline = tmp_path / "pipeline"
    pipeline.mkdir()
    (pipeline / "model_index.json").write_text(json.dumps({"_class_name": "SoSgenControlNetPipeline"}))
    argv = ["generate", "--model", str(pipeline), "--text", "sea", "--frames", str(frames)]
    with mock.patch("sound_of_story.pipelines.SoSgenControlNetPipeline.from_pretrained") as loading:
        with pytest.raises(SystemExit) as exited:
            main([*argv, "--out", str(tmp_path / "out.wav")])
    assert exited.value.code == 2 and "12000 x 12000" in capsys.readouterr().err and not loading.called


# ------------------------------------------------------------------------------------ indexes from strangers


def _rewrite_index(folder: Path, edit_body=None, edit_rows=None) -> None:
    """Edit an index as a crafter would: change index.json and/or the manifest, then make every checksum agree."""
    stored = json.loads((folder / "index.json").read_text())
    body = stored["index"]
    manifest = folder / body["manifest"]["name"]
    if edit_rows is not None:
        rows = [json.loads(line) for line in manifest.read_text().splitlines()]
        edit_rows(rows)
        manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
        body["manifest"].update(bytes=manifest.stat().st_size, sha256=file_sha256(manifest))
    if edit_body is not None:
        edit_body(body)
    (folder / "index.json").write_text(json.dumps({"index": body, "sha256": json_sha256(body, ensure_ascii=False)}))


def _crafted_copy(tmp_path: Path, index: SoundLibraryIndex, name: str, **edits) -> Path:
    folder = tmp_path / name
    shutil.copytree(index.folder, folder)
    _rewrite_index(folder, **edits)
    return folder


def test_index_paths_outside_the_library_or_folder_are_a_corrupt_index(tmp_path, index, capsys):
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"a local file that no visitor may hear")

    def first_row(**changes):
        return lambda rows: rows[0].update(changes)

    crafted = {
        "absolute clip path": dict(edit_rows=first_row(path=str(secret))),
        "dot-dot clip id": dict(
            edit_rows=first_row(clip_id="../secret.wav", path=str(index.folder / "../secret.wav"))
        ),
        "absolute clip id": dict(edit_rows=first_row(clip_id=str(secret), path=str(secret))),
        "manifest outside": dict(edit_body=lambda b: b["manifest"].update(name="../" + b["manifest"]["name"])),
        "coarse absolute": dict(edit_body=lambda b: b["coarse"].update(name=str(index.folder / b["coarse"]["name"]))),
        "store outside": dict(
            edit_body=lambda b: b["store"]["shards"][0]["files"]["global"].update(name="../../000000-global.npy")
        ),
    }
    for name, edits in crafted.items():
        folder = _crafted_copy(tmp_path, index, name.replace(" ", "_"), **edits)
        with pytest.raises(CorruptIndexError):
            SoundLibraryIndex.load(folder)
        with pytest.raises(SystemExit) as exited:
            main(["recommend", "--index", str(folder), "--text", "rain"])
        assert exited.value.code == 2, name
        assert "Traceback" not in capsys.readouterr().err


def test_the_app_plays_only_clips_of_its_library(tmp_path, space_settings, index):
    """An index that says its library is / (so that clip 'etc/...' would be a system file) is served by the
    app from the library it is configured with; an index from the Hub without a library plays nothing."""
    from sound_of_story.app.space import SoundOfStoryApp

    def library_is_root(body):
        body["library"]["location"] = "/"

    def clip_ids_under_root(rows):
        for row in rows:
            row["clip_id"] = "etc/" + row["clip_id"].replace("/", "_")
            row["path"] = "/" + row["clip_id"]

    folder = _crafted_copy(tmp_path, index, "root_library", edit_body=library_is_root, edit_rows=clip_ids_under_root)
    assert SoundLibraryIndex.load(folder).recommend(text="rain", top_k=1)[0].path.startswith("/etc/")
    settings = dataclasses.replace(space_settings, index=str(folder))
    with pytest.raises(FileNotFoundError, match="library/etc/"):  # looked for inside the configured library only
        SoundOfStoryApp(settings).retrieve("rain", None, 1)
    published = tmp_path / "published"
    shutil.copytree(index.folder, published)
    with mock.patch("huggingface_hub.snapshot_download", return_value=str(published)):
        app = SoundOfStoryApp(dataclasses.replace(space_settings, index="hf://someone/index", library=None))
        rows, clips = app.retrieve("rain", None, 2)
    assert len(rows) == 2 and clips == [None] * 5


def test_clip_ids_are_escaped_in_the_terminal_and_the_app(space_settings, index, capsys):
    from sound_of_story.app.space import SoundOfStoryApp

    hostile = next(row["clip_id"] for row in index.manifest if "\x1b" in row["clip_id"])
    assert hostile == HOSTILE_NAME and printable(hostile) == "rain\\x1b[2J\\x1b[31m\\u202eevaw.wav"
    assert main(["recommend", "--index", space_settings.index, "--text", "rain", "--top-k", "4"]) == 0
    out = capsys.readouterr().out
    assert printable(hostile) in out and "\x1b" not in out and "\u202e" not in out
    rows, _ = SoundOfStoryApp(space_settings).retrieve("rain", None, 4)
    assert printable(hostile) in [row[1] for row in rows]


def _flat_file(dim: int, count: int, claimed_floats: int) -> bytes:
    """A faiss IndexFlatIP file whose vector length field claims ``claimed_floats`` floats."""
    header = b"IxFI" + struct.pack("<iqqqBi", dim, count, 1 << 20, 1 << 20, 1, 0)
    return header + struct.pack("<Q", claimed_floats) + bytes(4 * dim * count)


def test_a_faiss_file_whose_header_lies_is_refused_before_faiss_allocates(tmp_path, index, capsys):
    """A 429-byte coarse index claiming 2 GiB of vectors (faiss would allocate them before reading) is refused
    from its header, with checksums that agree; peak memory of the load stays under 64 MiB (faiss's own
    read of it: 2 GiB). A file faiss itself rejects is a corrupt index too (exit 2, no traceback)."""
    dim, count = index.embedding.dim, index.num_clips
    lying = _flat_file(dim, count, claimed_floats=2**29)  # 2 GiB of floats
    assert len(lying) <= 429
    lying += bytes(429 - len(lying))
    folder = tmp_path / "lying"
    shutil.copytree(index.folder, folder)
    coarse = folder / index.config.coarse.file.name
    coarse.write_bytes(lying)

    def record(body):
        body["coarse"].update(bytes=coarse.stat().st_size, sha256=file_sha256(coarse))

    _rewrite_index(folder, edit_body=record)
    script = textwrap.dedent(
        """
        import resource, sys
        from pathlib import Path
        from sound_of_story.recommendation import CorruptIndexError, SoundLibraryIndex
        Path("/proc/self/clear_refs").write_text("5")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            SoundLibraryIndex.load(sys.argv[1])
        except CorruptIndexError as err:
            print(str(err))
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
        """
    )
    result = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    message, growth_kib = result.stdout.strip().splitlines()[-2:]
    assert "vectors length is 536870912" in message and int(growth_kib) < 64 * 1024, result.stdout
    # A header that passes the check but data faiss rejects: an HNSW entry point outside the graph.
    hnsw_index, _ = SoundLibraryIndex.build(
        index.clip_source.location, index.model, tmp_path / "hnsw", processor=index.processor, index_type="hnsw",
        store_dtype="float32", progress=False,
    )  # fmt: skip
    coarse = tmp_path / "hnsw" / hnsw_index.config.coarse.file.name
    data = bytearray(coarse.read_bytes())
    trailer = 45 + 4 * dim * count + 20  # the storage flat index, then 5 int32 before it
    struct.pack_into("<i", data, len(data) - trailer, 10**6)
    coarse.write_bytes(bytes(data))
    _rewrite_index(tmp_path / "hnsw", edit_body=record)
    with pytest.raises(SystemExit) as exited:
        main(["recommend", "--index", str(tmp_path / "hnsw"), "--text", "rain"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "cannot be read by faiss" in err and "Traceback" not in err


def test_a_relative_path_is_never_a_hub_repo(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with mock.patch("huggingface_hub.snapshot_download", side_effect=AssertionError("downloaded")) as download:
        with pytest.raises(FileNotFoundError, match="hf://owner/name"):
            SoundLibraryIndex.load("runs/index")
        with pytest.raises(SystemExit) as exited:
            main(["recommend", "--index", "runs/index", "--text", "rain"])
        assert exited.value.code == 2 and "does not exist" in capsys.readouterr().err
        with pytest.raises(ValueError, match="not a Hub repo"):
            SoundLibraryIndex.load("hf://runs")
    assert not download.called
    with pytest.raises(FileNotFoundError, match="hf://owner/name"):
        library_source("runs/library")
    assert library_source("hf://someone/sounds").location == "someone/sounds"


# --------------------------------------------------------------------------------------- bounded work


def test_top_k_rerank_and_scenes_are_capped_and_stage_two_reads_in_chunks(index, monkeypatch, capsys):
    for argv in (["--top-k", str(MAX_CANDIDATES + 1)], ["--rerank", "10000"]):
        with pytest.raises(SystemExit) as exited:
            main(["recommend", "--index", str(index.folder), "--text", "rain", *argv])
        assert exited.value.code == 2 and f"between 1 and {MAX_CANDIDATES}" in capsys.readouterr().err
    with pytest.raises(ValueError, match="top_k must be between"):
        index.recommend(text="rain", top_k=10_000)
    frames = [Image.new("RGB", (8, 8), (i, 0, 0)) for i in range(MAX_STORY_SCENES + 1)]
    with pytest.raises(ValueError, match=f"more than the {MAX_STORY_SCENES}"):
        index.recommend_story(frames, [float(i) for i in range(len(frames))], allow_repeats=True)
    query = index.encode_query(text="rain")
    whole = index.rerank_scores(np.arange(index.num_clips), query)
    reads = []
    original = index.store.rows
    monkeypatch.setattr(index.store, "rows", lambda rows: reads.append(len(rows)) or original(rows))
    monkeypatch.setattr(library_index, "RERANK_CHUNK_ROWS", 3)
    np.testing.assert_allclose(index.rerank_scores(np.arange(index.num_clips), query), whole, rtol=1e-6)
    assert reads == [3, 1]


def _listening_address(port: int) -> str:
    """The local address a TCP socket listening on ``port`` is bound to (from /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            return socket.inet_ntoa(struct.pack("<I", int(address, 16)))
    raise AssertionError(f"nothing listens on port {port}")


def test_the_app_listens_on_localhost_with_a_bounded_queue_and_cache(space_settings):
    from sound_of_story.app.space import (
        CACHE_MAX_AGE_S,
        QUEUE_MAX_SIZE,
        launch_space,
        server_address,
    )

    assert server_address({}) == ("127.0.0.1", 7860)
    assert server_address({"GRADIO_SERVER_NAME": "0.0.0.0", "PORT": "8080"}) == ("0.0.0.0", 8080)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    blocks = launch_space(space_settings, port=port, block=False)
    try:
        assert _listening_address(port) == "127.0.0.1"
        assert blocks._queue.max_size == QUEUE_MAX_SIZE and blocks.delete_cache[1] == CACHE_MAX_AGE_S
        assert blocks.max_file_size == MAX_FRAME_FILE_BYTES
    finally:
        blocks.close()


def test_error_messages_in_the_browser_name_no_server_path(tmp_path):
    import gradio as gr

    from sound_of_story.app.space import _errors_as_messages, public_message

    assert public_message(f"index {tmp_path}/idx was built with model '/srv/models/av' (x)") == (
        "index idx was built with model 'av' (x)"
    )
    assert public_message("see hf://me/x and 1/2 of a/b") == "see hf://me/x and 1/2 of a/b"

    def bad_input():
        raise FileNotFoundError(f"[Errno 2] No such file or directory: '{tmp_path}/library/etc_hosts'")

    def broken():
        raise RuntimeError(f"faiss failed in {tmp_path}/index/coarse-000001.faiss")

    with pytest.raises(gr.Error) as shown:
        _errors_as_messages(bad_input)()
    assert str(tmp_path) not in shown.value.message and "etc_hosts" in shown.value.message
    with pytest.raises(gr.Error) as shown:
        _errors_as_messages(broken)()
    assert str(tmp_path) not in shown.value.message and "internal error" in shown.value.message


def test_docs_load_the_metrics_from_their_installed_path():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text()
    assert 'evaluate.load("metrics/' not in docs and "evaluate_module_path" in docs


# --------------------------------------------------------------------------- build --out


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_build_refuses_a_users_folder_and_deletes_only_its_own_staging(tmp_path, capsys):
    """`build --out` on a folder of the user's (Parquet files in `stories/`, a `sos-build-*` and a `.staging-*`
    folder of their own) is refused before anything is touched; in a build folder, only staging folders that
    carry the build's own marker are removed."""
    from sound_of_story.dataset_builder.build import BUILD_MARKER, STAGING_MARKER

    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"id": "s1", "video": str(tmp_path / "missing.mp4"), "text": "a scene"}) + "\n")
    users = tmp_path / "my-data"
    (users / "stories").mkdir(parents=True)
    (users / "stories" / "train-mine.parquet").write_bytes(b"PAR1 the user's own table")
    (users / "sos-build-notes").mkdir()
    (users / "sos-build-notes" / "todo.txt").write_text("keep me")
    (users / ".staging-drafts").mkdir()
    (users / ".staging-drafts" / "draft.txt").write_text("keep me too")
    before = _tree(users)
    with pytest.raises(SystemExit) as exited:
        main(["build", "--manifest", str(manifest), "--out", str(users), "--quiet"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "not a build of sound-of-story" in err and "nothing was changed" in err and "Traceback" not in err
    assert _tree(users) == before

    out = tmp_path / "sos"
    assert main(["build", "--manifest", str(manifest), "--out", str(out), "--quiet"]) == 1  # 0 stories, 1 failed row
    assert (out / BUILD_MARKER).is_file()
    ours, theirs = out / ".staging-killed-run", out / ".staging-not-ours"
    ours.mkdir()
    (ours / STAGING_MARKER).touch()
    (ours / "part.parquet").write_bytes(b"half written")
    theirs.mkdir()
    (theirs / "x.txt").write_text("not the build's")
    assert main(["build", "--manifest", str(manifest), "--out", str(out), "--quiet"]) == 1  # a rerun in its own folder
    assert not ours.exists() and (theirs / "x.txt").read_text() == "not the build's"
