"""Build manifests from the paper's sources: Condensed Movies (CMD), LSMDC and the release's ``data.jsonl``.

What a user downloads (``docs/building.md`` lists it with the links):

* CMD (Bain et al. 2020): the metadata folder of github.com/m-bain/CondensedMovies (``data/metadata``:
  ``descriptions.csv`` with ``imdbid,videoid,description``; ``clips.csv`` with ``videoid, ..., upload_year, ...,
  imdbid``) and the key clips from YouTube with its downloader, saved as ``videos/<upload_year>/<videoid>.mkv``.
  :func:`cmd_rows`: one CMD manifest row per description whose clip is on disk (found by ``<videoid>.<ext>``
  anywhere under the videos folder).
* LSMDC 2016 (Rohrbach et al.): the annotation files (``LSMDC16_annos_training.csv``, ``..._val.csv``,
  ``..._test.csv``; tab-separated ``CLIP_ID, START_ALIGNED, END_ALIGNED, START_EXTRACTED, END_EXTRACTED,
  SENTENCE``) and the clips, ``<movie>/<CLIP_ID>.avi``. :func:`lsmdc_rows`: one LSMDC manifest row per clip on
  disk, numbered in its movie by clip id (the ids end in zero-padded times, so that is time order); a clip with
  several sentences gets them joined in file order. The build joins each movie's clips in that order into
  stories of ``--lsmdc-target-seconds`` (150 s by default; the paper: "around 20" clips, until the length is
  "similar to that of CMD").
* The release's ``data.jsonl`` (github.com/jeje910/Sound_of_Story, ``data/data.jsonl``: ``Movie``, ``Desc``,
  ``Frames``). :func:`sos_rows` finds each record's video as the release's scripts did and writes SoS manifest
  rows, whose ``Frames`` are the key frames: CMD records by their description (``CMD_processing.py``: quotes
  removed, equal to a CMD description), LSMDC records by their clips (``LSMDC_processing.py``: every clip of a
  movie, in name order, whose sentence is in the record's ``Desc`` and whose first ten characters are in its
  ``Movie``, retried with ``"`` as ``'``). That gives the release's stories: the same clips, joined in the same
  order, so the same frames.

Paths in the rows are relative to the manifest's folder. Records and clips without a file on disk are returned
as ``missing`` (YouTube clips disappear; LSMDC is downloaded per movie).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

VIDEO_SUFFIXES = (".mkv", ".mp4", ".webm", ".avi", ".mov", ".m4v")
LSMDC_SENTENCE_COLUMN = 5  # LSMDC 2016: CLIP_ID, START_ALIGNED, END_ALIGNED, START_EXTRACTED, END_EXTRACTED, SENTENCE


@dataclasses.dataclass
class ManifestRows:
    """Manifest rows in order, and what had no video on disk (or no match)."""

    rows: list[dict]
    missing: list[str]


def _video_index(videos_dir: str | Path) -> dict[str, Path]:
    """Every video file under ``videos_dir`` by its name without the suffix (the first in sorted order)."""
    root = Path(videos_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"videos folder not found: {videos_dir}")
    index: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
            index.setdefault(path.stem, path)
    return index


def _relative(path: Path, manifest_dir: Path) -> str:
    return os.path.relpath(path.resolve(), manifest_dir.resolve())


def _csv_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"CMD metadata file not found: {path}")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------------------
# CMD
# ----------------------------------------------------------------------------------------


def cmd_rows(metadata_dir: str | Path, videos_dir: str | Path, manifest_dir: str | Path) -> ManifestRows:
    """CMD manifest rows ``{id: videoid, video, description, movie: imdbid}`` from CMD's ``descriptions.csv`` in
    ``metadata_dir``, for the clips found under ``videos_dir``."""
    metadata_dir, manifest_dir = Path(metadata_dir), Path(manifest_dir)
    descriptions = _csv_rows(metadata_dir / "descriptions.csv")
    if descriptions and not {"imdbid", "videoid", "description"} <= descriptions[0].keys():
        raise ValueError(f"{metadata_dir / 'descriptions.csv'} has no imdbid, videoid, description columns")
    videos = _video_index(videos_dir)
    rows, missing = [], []
    for row in descriptions:
        video = videos.get(row["videoid"])
        if video is None:
            missing.append(row["videoid"])
            continue
        rows.append(
            {
                "id": row["videoid"],
                "video": _relative(video, manifest_dir),
                "description": row["description"],
                "movie": row["imdbid"],
            }
        )
    return ManifestRows(rows, missing)


# ----------------------------------------------------------------------------------------
# LSMDC
# ----------------------------------------------------------------------------------------


def _annotation_source(spec: str | Path) -> tuple[Path, int]:
    """``PATH`` or ``PATH@COLUMN``: an annotation file and the column of its sentences (default 5)."""
    text = str(spec)
    path, _, column = text.rpartition("@")
    if path and column.isdigit():
        return Path(path), int(column)
    return Path(text), LSMDC_SENTENCE_COLUMN


def lsmdc_sentences(
    annotation_files: Iterable[str | Path], encoding: str = "utf-8", errors: str = "strict", last_wins: bool = False
) -> dict[str, list[str]]:
    """Each clip's sentences from LSMDC annotation files (tab-separated, no header), in file order.

    ``last_wins``: keep only the last sentence of a clip, as the release's ``LSMDC_processing.py`` did (it read the
    files as ``cp932`` with ``errors="ignore"`` and ``quotechar="|"``).
    """
    sentences: dict[str, list[str]] = {}
    for spec in annotation_files:
        path, column = _annotation_source(spec)
        if not path.is_file():
            raise FileNotFoundError(f"LSMDC annotation file not found: {path}")
        text = path.read_bytes().decode(encoding, errors=errors)
        for number, row in enumerate(csv.reader(io.StringIO(text, newline=""), delimiter="\t", quotechar="|"), 1):
            if not row:
                continue
            if len(row) <= column:
                raise ValueError(f"{path}: line {number} has {len(row)} columns, no sentence in column {column}")
            clip, sentence = row[0].strip(), row[column].strip()
            if last_wins:
                sentences[clip] = [sentence]
            else:
                sentences.setdefault(clip, []).append(sentence)
    return sentences


def lsmdc_movie(clip_id: str) -> str:
    """The movie folder of an LSMDC clip: its id without the last ``_<start>-<end>`` part."""
    return clip_id.rsplit("_", 1)[0]


def lsmdc_rows(
    annotation_files: Sequence[str | Path], videos_dir: str | Path, manifest_dir: str | Path, encoding: str = "utf-8"
) -> ManifestRows:
    """LSMDC manifest rows ``{movie, clip_index, video, caption, id}``: every annotated clip found as
    ``<movie>/<CLIP_ID>.<ext>`` under ``videos_dir``, numbered in its movie in clip-id order."""
    sentences = lsmdc_sentences(annotation_files, encoding)
    videos = _video_index(videos_dir)
    by_movie: dict[str, list[str]] = {}
    missing = []
    for clip in sentences:
        if clip in videos:
            by_movie.setdefault(lsmdc_movie(clip), []).append(clip)
        else:
            missing.append(clip)
    rows = []
    for movie in sorted(by_movie):
        for index, clip in enumerate(sorted(by_movie[movie])):
            caption = " ".join(s for s in sentences[clip] if s)
            rows.append(
                {
                    "movie": movie,
                    "clip_index": index,
                    "video": _relative(videos[clip], Path(manifest_dir)),
                    "caption": caption,
                    "id": clip,
                }
            )
    return ManifestRows(rows, missing)


# ----------------------------------------------------------------------------------------
# The release's data.jsonl
# ----------------------------------------------------------------------------------------


def _without_quotes(text: str) -> str:
    return text.replace("'", "").replace('"', "")


def read_release(path: str | Path) -> list[dict]:
    """The records of the release's ``data.jsonl`` (one JSON object per line; ``Movie``, ``Desc``, ``Frames``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"release metadata not found: {path}")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {number} is not valid JSON: {err.msg}") from None
        if not isinstance(record, dict) or not {"Movie", "Desc", "Frames"} <= record.keys():
            raise ValueError(f"{path}: line {number} has no Movie, Desc and Frames")
        records.append(record)
    return records


def _match_cmd(records: list[dict], descriptions: list[dict], videos: dict[str, Path]) -> dict[int, tuple[Path, str]]:
    """CMD_processing.py: a CMD description, quotes removed, equal to a record's ``Desc`` (quotes removed) gives that
    record (the first with it) the clip; a later description of the same record replaces an earlier one."""
    first: dict[str, int] = {}
    for number, record in enumerate(records):
        first.setdefault(_without_quotes(record["Desc"]), number)
    matched: dict[int, tuple[Path, str]] = {}
    for row in descriptions:
        number = first.get(_without_quotes(row["description"]))
        if number is not None and row["videoid"] in videos:
            matched[number] = (videos[row["videoid"]], row["imdbid"])
    return matched


def _match_lsmdc(
    records: list[dict], sentences: dict[str, list[str]], videos: dict[str, Path], skip: set[int]
) -> dict[int, list[Path]]:
    """LSMDC_processing.py: each clip on disk, movie by movie and in name order, goes to every record whose ``Desc``
    holds its sentence (retried with ``"`` as ``'``) and whose ``Movie`` holds the clip name's first ten
    characters. The records are narrowed to those of the clip's movie before the sentence is looked for (the
    release looked through all records first, then kept its movie's: the same result unless a sentence occurs
    in another movie's story only, where the release would not retry with ``'``)."""
    by_prefix: dict[str, list[int]] = {}
    matched: dict[int, list[Path]] = {}
    for clip in sorted(c for c in sentences if c in videos):
        prefix = videos[clip].name[:10]
        if prefix not in by_prefix:
            by_prefix[prefix] = [i for i, r in enumerate(records) if i not in skip and prefix in str(r["Movie"])]
        sentence = sentences[clip][-1]
        if not sentence:
            continue
        found = [i for i in by_prefix[prefix] if sentence in records[i]["Desc"]]
        if not found:
            sentence = sentence.replace('"', "'")
            found = [i for i in by_prefix[prefix] if sentence in records[i]["Desc"]]
        for i in found:
            matched.setdefault(i, []).append(videos[clip])
    return matched


def sos_rows(
    release: str | Path,
    manifest_dir: str | Path,
    cmd_metadata: str | Path | None = None,
    cmd_videos: str | Path | None = None,
    lsmdc_annotations: Sequence[str | Path] = (),
    lsmdc_videos: str | Path | None = None,
) -> ManifestRows:
    """SoS manifest rows for the records of the release's ``data.jsonl`` whose videos are found: each record's own
    fields plus ``id`` (its ``Movie``), ``movie`` (the CMD imdbid or the LSMDC movie, for the split) and ``video``
    (a CMD clip) or ``videos`` (an LSMDC story's clips in order). ``missing``: the ``Movie`` of every record
    without. LSMDC sentences are read as the release read them (cp932, undecodable bytes dropped, the last
    sentence of a clip)."""
    records = read_release(release)
    manifest_dir = Path(manifest_dir)
    cmd: dict[int, tuple[Path, str]] = {}
    if cmd_metadata is not None or cmd_videos is not None:
        if cmd_metadata is None or cmd_videos is None:
            raise ValueError("CMD needs both its metadata folder and its videos folder")
        cmd = _match_cmd(records, _csv_rows(Path(cmd_metadata) / "descriptions.csv"), _video_index(cmd_videos))
    lsmdc: dict[int, list[Path]] = {}
    if lsmdc_annotations or lsmdc_videos is not None:
        if not lsmdc_annotations or lsmdc_videos is None:
            raise ValueError("LSMDC needs its annotation files and its videos folder")
        sentences = lsmdc_sentences(lsmdc_annotations, encoding="cp932", errors="ignore", last_wins=True)
        lsmdc = _match_lsmdc(records, sentences, _video_index(lsmdc_videos), set(cmd))
    rows, missing = [], []
    for number, record in enumerate(records):
        row = {**record, "id": str(record["Movie"])}
        if number in cmd:
            video, imdbid = cmd[number]
            row.update(video=_relative(video, manifest_dir), movie=imdbid)
        elif number in lsmdc:
            clips = lsmdc[number]
            row.update(videos=[_relative(c, manifest_dir) for c in clips], movie=lsmdc_movie(clips[0].stem))
        else:
            missing.append(str(record["Movie"]))
            continue
        rows.append(row)
    return ManifestRows(rows, missing)


__all__ = [
    "LSMDC_SENTENCE_COLUMN",
    "ManifestRows",
    "cmd_rows",
    "lsmdc_movie",
    "lsmdc_rows",
    "lsmdc_sentences",
    "read_release",
    "sos_rows",
]
