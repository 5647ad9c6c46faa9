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

Bad rows (empty text, a non-UTF-8 byte in a text, id, movie or path, missing fields) are
returned as failures, one per row; the good rows go on. Every story id, given or generated
(LSMDC runs are named ``<movie>_NNN``), is unique: a second input with a taken id is a failure
naming both inputs.

Paths may point at any readable file (absolute, relative to the manifest, through symlinks);
the build only reads them.
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


def printable(value) -> str:
    """``value`` as valid UTF-8 text: bytes that were not UTF-8 (surrogate-escaped) shown as ``\\xNN``."""
    text = str(value)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate from a JSON \\udXXX escape
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


@dataclasses.dataclass(frozen=True)
class Failure:
    id: str
    file: str
    reason: str

    def to_json(self) -> dict:
        """The row of ``failures.jsonl``: always valid UTF-8, whatever bytes the input had."""
        return {k: printable(v) for k, v in dataclasses.asdict(self).items()}

    @property
    def category(self) -> str:
        """The kind of failure, without the file or the details (for the build summary)."""
        reason = self.reason
        if self.file and reason.startswith(f"{self.file}: "):
            reason = reason[len(self.file) + 2 :]
        reason = re.sub(r"^line \d+ ", "", reason)
        return re.split(r" \(|: ", reason, maxsplit=1)[0]


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


def _encoding_problem(**fields) -> str | None:
    """Which of the named fields (an id, a movie, a path) holds bytes that are not UTF-8."""
    for field, value in fields.items():
        try:
            str(value).encode("utf-8")
        except UnicodeEncodeError:
            return f"{field} is not valid UTF-8: '{printable(value)}'"
    return None


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


def read_manifest(
    path: str | Path, lsmdc_target_s: float = 150.0, clip_duration=None
) -> tuple[list[StorySource], list[Failure]]:
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
    seen: dict[str, tuple[str, str]] = {}  # story id -> (which input, its file)
    seen_clips: dict[str, int] = {}
    lsmdc: dict[str, list[tuple[int, str, str, str, int]]] = {}

    def claim(story_id: str, where: str, file: str) -> bool:
        if story_id in seen:
            first_where, first_file = seen[story_id]
            failures.append(
                Failure(story_id, file, f"duplicate id: {where} ({file}) has the id of {first_where} ({first_file})")
            )
            return False
        seen[story_id] = (where, file)
        return True

    for line, row, error in _rows(path):
        if row is None:
            failures.append(Failure(f"line {line}", str(path), error))
            continue
        if {"Movie", "Desc", "Frames"} <= row.keys():
            story_id = str(row.get("id") or f"{row['Movie']}_{line:06d}")
            video = row.get("video")
            problem = _encoding_problem(id=story_id, movie=row["Movie"], **{"video path": video or ""})
            problem = (
                problem
                or _text_problem(row["Desc"], "description (Desc)")
                or (None if video else "no video path (add a 'video' field to the released row)")
            )
            if problem is None:
                try:
                    times = tuple(frame_time_from_name(n) for n in row["Frames"])
                except (TypeError, ValueError) as err:
                    problem = str(err)
            if problem:
                failures.append(Failure(story_id, str(video or path), problem))
            elif claim(story_id, f"line {line}", str(video)):
                stories.append(
                    StorySource(
                        story_id,
                        str(row["Movie"]),
                        "sos",
                        row["Desc"].strip(),
                        (_resolve(base, video),),
                        (story_id,),
                        times,
                    )
                )
        elif {"movie", "clip_index", "video", "caption"} <= row.keys():
            clip_id = str(row.get("id") or f"{row['movie']}_clip_{row['clip_index']}")
            problem = _encoding_problem(
                id=clip_id, movie=row["movie"], **{"video path": row["video"]}
            ) or _text_problem(row["caption"], "caption")
            try:
                index = int(row["clip_index"])
            except (TypeError, ValueError):
                problem = problem or f"clip_index {row['clip_index']!r} is not an integer"
            if problem:
                failures.append(Failure(clip_id, str(row["video"]), problem))
            elif clip_id in seen_clips:
                failures.append(
                    Failure(
                        clip_id,
                        str(row["video"]),
                        f"duplicate clip id (line {line}; first at line {seen_clips[clip_id]})",
                    )
                )
            else:
                seen_clips[clip_id] = line
                lsmdc.setdefault(str(row["movie"]), []).append(
                    (index, clip_id, _resolve(base, row["video"]), row["caption"].strip(), line)
                )
        elif {"id", "video", "description"} <= row.keys():
            story_id = str(row["id"])
            problem = _encoding_problem(id=story_id, movie=row.get("movie") or "", **{"video path": row["video"]})
            problem = problem or _text_problem(row["description"], "description")
            if problem:
                failures.append(Failure(story_id, str(row["video"]), problem))
            elif claim(story_id, f"line {line}", str(row["video"])):
                movie = str(row.get("movie") or story_id)
                stories.append(
                    StorySource(
                        story_id,
                        movie,
                        "cmd",
                        row["description"].strip(),
                        (_resolve(base, row["video"]),),
                        (story_id,),
                    )
                )
        else:
            failures.append(
                Failure(
                    str(row.get("id", f"line {line}")),
                    str(path),
                    f"line {line} has fields {sorted(row)}, matching no manifest format (CMD: id, video, description; LSMDC: movie, clip_index, video, caption; SoS: Movie, Desc, Frames, video)",
                )
            )

    measure = clip_duration or _clip_duration
    for movie, clips in lsmdc.items():
        clips.sort(key=lambda c: c[0])
        runs: list[list[tuple[int, str, str, str, int]]] = [[]]
        total = 0.0
        for clip in clips:
            try:
                seconds = measure(clip[2])
            except Exception as err:  # noqa: BLE001 - any unreadable clip is reported, the run goes on
                failures.append(Failure(clip[1], clip[2], f"cannot read clip: {err}"))
                continue
            runs[-1].append(clip)
            total += seconds
            if total >= lsmdc_target_s:
                runs.append([])
                total = 0.0
        for number, run in enumerate(r for r in runs if r):
            story_id = f"{movie}_{number:03d}"
            where = f"the LSMDC run of movie {movie!r} at lines {', '.join(str(c[4]) for c in run)}"
            if claim(story_id, where, run[0][2]):
                stories.append(
                    StorySource(
                        story_id,
                        movie,
                        "lsmdc",
                        " ".join(c[3] for c in run),
                        tuple(c[2] for c in run),
                        tuple(c[1] for c in run),
                    )
                )
    return stories, failures


def _clip_duration(video: str) -> float:
    from .media import probe

    return probe(video).duration
