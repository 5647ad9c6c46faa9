"""Reading a build manifest into stories.

Three row formats are accepted, in a JSONL or CSV file (one format per row, detected from
its fields; paths are relative to the manifest's folder unless absolute):

* CMD style: ``{id, video, description, movie?}``: one clip is one story.
* LSMDC style: ``{movie, clip_index, video, caption}``: consecutive clips of one movie are
  joined in ``clip_index`` order until the story reaches ``lsmdc_target_s`` seconds (default
  150 s, about 20 clips as in the paper); the captions are joined in the same order.
* The released SoS metadata: ``{Movie, Desc, Frames, video, id?}``: ``Frames`` lists frame
  file names that encode timestamps (``frame0-00-12.50.jpg``, or ``frame0:00:12.50.jpg`` from
  the release's own helper); those timestamps are used instead of computing key frames.

Bad rows (empty or non-UTF-8 text, missing fields, duplicate ids) are returned as failures,
one per row; the good rows go on.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from pathlib import Path

FRAME_NAME = re.compile(r"(\d+)[-:](\d{1,2})[-:](\d{1,2}(?:\.\d+)?)")


@dataclasses.dataclass(frozen=True)
class StorySource:
    """One story to build: its text and the video file(s) it is made of, in order."""

    id: str
    movie: str
    source: str  # "cmd", "lsmdc" or "sos"
    text: str
    videos: tuple[str, ...]
    clip_ids: tuple[str, ...] = ()
    frame_times: tuple[float, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Failure:
    id: str
    file: str
    reason: str

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def frame_time_from_name(name: str) -> float:
    """Seconds encoded in a released SoS frame name (``frameH-MM-SS.cc.jpg``)."""
    match = FRAME_NAME.search(Path(name).name)
    if match is None:
        raise ValueError(f"frame name {name!r} encodes no timestamp (expected frameH-MM-SS.cc.jpg)")
    h, m, s = match.groups()
    return int(h) * 3600 + int(m) * 60 + float(s)


def _rows(path: Path) -> list[tuple[int, dict | None, str | None]]:
    """(line number, row or None, error) for each row; bytes are decoded per row."""
    raw = path.read_bytes()
    rows: list[tuple[int, dict | None, str | None]] = []
    if path.suffix.lower() == ".csv":
        text = raw.decode("utf-8", errors="surrogateescape")
        for i, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            rows.append((i, {k: v for k, v in row.items() if k is not None}, None))
        return rows
    for i, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8", errors="surrogateescape"))
        except json.JSONDecodeError as err:
            rows.append((i, None, f"line {i} is not valid JSON: {err.msg}"))
            continue
        rows.append((i, row, None) if isinstance(row, dict) else (i, None, f"line {i} is not a JSON object"))
    return rows


def _text_problem(value, field: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"empty {field}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # surrogate-escaped bytes: the file was not UTF-8 there
        return f"{field} is not valid UTF-8"
    return None


def _resolve(base: Path, video) -> str:
    p = Path(str(video))
    return str(p if p.is_absolute() else base / p)


def read_manifest(path: str | Path, lsmdc_target_s: float = 150.0, clip_duration=None) -> tuple[list[StorySource], list[Failure]]:
    """Stories and per-row failures of a manifest.

    ``clip_duration(path) -> float`` measures an LSMDC clip (by default torchcodec's stream
    metadata); a clip it cannot measure is reported and left out of its run.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    base = path.parent
    stories: list[StorySource] = []
    failures: list[Failure] = []
    seen: dict[str, int] = {}
    lsmdc: dict[str, list[tuple[int, str, str, str]]] = {}

    def claim(story_id: str, line: int, file: str) -> bool:
        if story_id in seen:
            failures.append(Failure(story_id, file, f"duplicate id (line {line}; first at line {seen[story_id]})"))
            return False
        seen[story_id] = line
        return True

    for line, row, error in _rows(path):
        if row is None:
            failures.append(Failure(f"line {line}", str(path), error))
            continue
        if {"Movie", "Desc", "Frames"} <= row.keys():
            story_id = str(row.get("id") or f"{row['Movie']}_{line:06d}")
            video = row.get("video")
            problem = _text_problem(row["Desc"], "description (Desc)") or (None if video else "no video path (add a 'video' field to the released row)")
            if problem is None:
                try:
                    times = tuple(frame_time_from_name(n) for n in row["Frames"])
                except (TypeError, ValueError) as err:
                    problem = str(err)
            if problem:
                failures.append(Failure(story_id, str(video or path), problem))
            elif claim(story_id, line, str(video)):
                stories.append(StorySource(story_id, str(row["Movie"]), "sos", row["Desc"].strip(), (_resolve(base, video),), (story_id,), times))
        elif {"movie", "clip_index", "video", "caption"} <= row.keys():
            clip_id = str(row.get("id") or f"{row['movie']}_clip_{row['clip_index']}")
            problem = _text_problem(row["caption"], "caption")
            try:
                index = int(row["clip_index"])
            except (TypeError, ValueError):
                problem = problem or f"clip_index {row['clip_index']!r} is not an integer"
            if problem:
                failures.append(Failure(clip_id, str(row["video"]), problem))
            elif claim(clip_id, line, str(row["video"])):
                lsmdc.setdefault(str(row["movie"]), []).append((index, clip_id, _resolve(base, row["video"]), row["caption"].strip()))
        elif {"id", "video", "description"} <= row.keys():
            story_id = str(row["id"])
            problem = _text_problem(row["description"], "description")
            if problem:
                failures.append(Failure(story_id, str(row["video"]), problem))
            elif claim(story_id, line, str(row["video"])):
                movie = str(row.get("movie") or story_id)
                stories.append(StorySource(story_id, movie, "cmd", row["description"].strip(), (_resolve(base, row["video"]),), (story_id,)))
        else:
            failures.append(Failure(str(row.get("id", f"line {line}")), str(path), f"line {line} has fields {sorted(row)}, matching no manifest format (CMD: id, video, description; LSMDC: movie, clip_index, video, caption; SoS: Movie, Desc, Frames, video)"))

    measure = clip_duration or _clip_duration
    for movie, clips in lsmdc.items():
        clips.sort(key=lambda c: c[0])
        run: list[tuple[int, str, str, str]] = []
        total = 0.0

        def close() -> None:
            if run:
                story_id = f"{movie}_{len(stories_of_movie):03d}"
                stories_of_movie.append(story_id)
                stories.append(StorySource(story_id, movie, "lsmdc", " ".join(c[3] for c in run), tuple(c[2] for c in run), tuple(c[1] for c in run)))

        stories_of_movie: list[str] = []
        for clip in clips:
            try:
                seconds = measure(clip[2])
            except Exception as err:  # noqa: BLE001 - any unreadable clip is reported, the run goes on
                failures.append(Failure(clip[1], clip[2], f"cannot read clip: {err}"))
                continue
            run.append(clip)
            total += seconds
            if total >= lsmdc_target_s:
                close()
                run, total = [], 0.0
        close()
    return stories, failures


def _clip_duration(video: str) -> float:
    from .media import probe

    return probe(video).duration
