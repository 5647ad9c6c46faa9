"""Reading a build manifest into stories.

Three row formats are accepted, in a JSONL or CSV file (one format per row, detected from
its fields; paths are relative to the manifest's folder unless absolute):

* CMD style: ``{id, video, description, movie?}``: one clip is one story.
* LSMDC style: ``{movie, clip_index, video, caption}``: consecutive clips of one movie are
  joined in ``clip_index`` order until the story reaches ``lsmdc_target_s`` seconds (default
  150 s, about 20 clips as in the paper); the captions are joined in the same order.
* The released SoS metadata: ``{Movie, Desc, Frames, video | videos, id?, movie?}``: ``Frames`` lists frame
  file names that encode timestamps (``frame0-00-12.50.jpg``, or ``frame0:00:12.50.jpg`` from
  the release's own helper for whole seconds); the frames they name are the story's key frames
  (:func:`.key_frames.release_frames` takes them by frame index, as the release saved them). ``videos`` lists an
  LSMDC story's clips in order (the release joined them into one file); ``movie`` groups stories for the split
  (default ``Movie``). ``sound-of-story manifest sos`` writes such rows from the release's ``data.jsonl``.

Bad rows (empty text, a non-UTF-8 byte in a text, id, movie or path, missing fields) are
returned as failures, one per row; the good rows go on. Every story id, given or generated
(LSMDC runs are named ``<movie>_NNN``), is unique: a second input with a taken id is a failure
naming both inputs.

Paths may point at any readable file (absolute, relative to the manifest, through symlinks, with any
character in their names, a colon included); the build only reads them. A URL is a failure of its row
("URLs are not supported: download the file first"), never a local path that happens not to exist.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from pathlib import Path

FRAME_NAME = re.compile(r"(\d+)[-:](\d{1,2})[-:](\d{1,2})(?:\.(\d+))?")
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
URL_FAILURE = "URLs are not supported: download the file first"


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
    """Seconds encoded in a released SoS frame name (``frameH-MM-SS.cc.jpg``).

    The release's ``format_timedelta`` writes the hundredths of a second as ``round(microseconds / 1e4)``, which is
    ``100`` for the last 5 ms of a second (``frame0-02-04.100.jpg`` is 125.00 s), and whole seconds as
    ``frameH:MM:SS.00.jpg`` (colons kept). A fraction of two or three digits is read as hundredths, any other as a
    decimal fraction.
    """
    match = FRAME_NAME.search(Path(name).name)
    if match is None:
        raise ValueError(f"frame name {name!r} encodes no timestamp (expected frameH-MM-SS.cc.jpg)")
    h, m, s, fraction = match.groups()
    seconds = int(h) * 3600 + int(m) * 60 + int(s)
    if fraction is None:
        return float(seconds)
    if len(fraction) in (2, 3):
        return seconds + int(fraction) / 100
    return seconds + float(f"0.{fraction}")


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


def _video_problem(video) -> str | None:
    """Why a row's video field cannot be a local file (a URL), or None."""
    if URL.match(str(video or "")):
        return f"{URL_FAILURE} (video is {printable(video)!r})"
    return None


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


def _resolve(manifest: Path, video) -> str:
    p = Path(str(video))
    return str(p if p.is_absolute() else manifest.parent / p)


# ----------------------------------------------------------------------------------------
# One parser per row format: a row becomes a story (an LSMDC clip), or the failure that says why not
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _LsmdcClip:
    """An LSMDC row, to be joined with the clips after it in its movie into a story."""

    index: int  # clip_index: the clip's place in its movie
    id: str
    movie: str
    video: str  # resolved against the manifest's folder
    caption: str
    line: int  # in the manifest, for messages


def _sos_row(row: dict, line: int, manifest: Path) -> StorySource | Failure:
    """A row of the released SoS metadata, with the builder's ``video`` (or an LSMDC story's ``videos``, its clips in
    order); its frame names give the key frames."""
    story_id = str(row.get("id") or f"{row['Movie']}_{line:06d}")
    movie = row.get("movie") or row["Movie"]
    videos = row.get("videos")
    if videos is None:
        videos = [row["video"]] if row.get("video") else []
    problem = None
    if not isinstance(videos, list) or not all(isinstance(v, str) and v for v in videos):
        problem = f"videos must be a list of paths, got {printable(videos)!r}"
        videos = []
    problem = (
        problem
        or _encoding_problem(id=story_id, movie=movie, **{"video path": " ".join(videos)})
        or next((p for p in map(_video_problem, videos) if p), None)
        or _text_problem(row["Desc"], "description (Desc)")
        or (
            None
            if videos
            else "no video path (add a 'video' field, or 'videos' for an LSMDC story, to the released row)"
        )
    )
    if problem is None:
        try:
            times = tuple(frame_time_from_name(n) for n in row["Frames"])
        except (TypeError, ValueError) as err:
            problem = str(err)
    if problem:
        return Failure(story_id, str(videos[0] if videos else manifest), problem)
    text = row["Desc"].strip()
    resolved = tuple(_resolve(manifest, v) for v in videos)
    return StorySource(story_id, str(movie), "sos", text, resolved, (story_id,), times)


def _lsmdc_row(row: dict, line: int, manifest: Path) -> _LsmdcClip | Failure:
    """An LSMDC clip and its caption."""
    clip_id = str(row.get("id") or f"{row['movie']}_clip_{row['clip_index']}")
    problem = (
        _encoding_problem(id=clip_id, movie=row["movie"], **{"video path": row["video"]})
        or _video_problem(row["video"])
        or _text_problem(row["caption"], "caption")
    )
    try:
        index = int(row["clip_index"])
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's 1e999 is an infinite float
        problem = problem or f"clip_index {row['clip_index']!r} is not an integer"
    if problem:
        return Failure(clip_id, str(row["video"]), problem)
    return _LsmdcClip(
        index, clip_id, str(row["movie"]), _resolve(manifest, row["video"]), row["caption"].strip(), line
    )


def _cmd_row(row: dict, line: int, manifest: Path) -> StorySource | Failure:
    """A CMD key clip: one clip, one story (``movie`` groups clips for the split; the id when absent)."""
    story_id = str(row["id"])
    problem = (
        _encoding_problem(id=story_id, movie=row.get("movie") or "", **{"video path": row["video"]})
        or _video_problem(row["video"])
        or _text_problem(row["description"], "description")
    )
    if problem:
        return Failure(story_id, str(row["video"]), problem)
    movie = str(row.get("movie") or story_id)
    return StorySource(
        story_id, movie, "cmd", row["description"].strip(), (_resolve(manifest, row["video"]),), (story_id,)
    )


# tried in this order: the first format whose fields a row has reads it
ROW_FORMATS = (
    (frozenset({"Movie", "Desc", "Frames"}), _sos_row),
    (frozenset({"movie", "clip_index", "video", "caption"}), _lsmdc_row),
    (frozenset({"id", "video", "description"}), _cmd_row),
)


def _parse_row(row: dict, line: int, manifest: Path) -> StorySource | _LsmdcClip | Failure:
    for fields, parse in ROW_FORMATS:
        if fields <= row.keys():
            return parse(row, line, manifest)
    return Failure(
        str(row.get("id", f"line {line}")),
        str(manifest),
        f"line {line} has fields {sorted(row)}, matching no manifest format (CMD: id, video, description; LSMDC: movie, clip_index, video, caption; SoS: Movie, Desc, Frames, video or videos)",
    )


# ----------------------------------------------------------------------------------------
# LSMDC clips joined into stories
# ----------------------------------------------------------------------------------------


def _lsmdc_runs(
    clips: list[_LsmdcClip], target_s: float, clip_duration
) -> tuple[list[list[_LsmdcClip]], list[Failure]]:
    """A movie's clips in ``clip_index`` order, cut into runs that each reach ``target_s`` seconds (the last
    may be shorter); a clip ``clip_duration`` cannot measure is a failure and left out of its run."""
    runs: list[list[_LsmdcClip]] = [[]]
    failures: list[Failure] = []
    total = 0.0
    for clip in sorted(clips, key=lambda c: c.index):
        try:
            seconds = clip_duration(clip.video)
        except Exception as err:  # noqa: BLE001 - any unreadable clip is reported, the run goes on
            failures.append(Failure(clip.id, clip.video, f"cannot read clip: {err}"))
            continue
        runs[-1].append(clip)
        total += seconds
        if total >= target_s:
            runs.append([])
            total = 0.0
    return [run for run in runs if run], failures


def _lsmdc_story(movie: str, number: int, run: list[_LsmdcClip]) -> StorySource:
    """The ``number``-th run of ``movie``: its captions joined in order, its clips decoded one after the other."""
    return StorySource(
        f"{movie}_{number:03d}",
        movie,
        "lsmdc",
        " ".join(c.caption for c in run),
        tuple(c.video for c in run),
        tuple(c.id for c in run),
    )


# ----------------------------------------------------------------------------------------
# The manifest
# ----------------------------------------------------------------------------------------


class _TakenIds:
    """The story ids given out so far, each with the input that took it (named when a second one wants it)."""

    def __init__(self) -> None:
        self._first: dict[str, tuple[str, str]] = {}

    def claim(self, story_id: str, where: str, file: str) -> Failure | None:
        """None when ``story_id`` is free (it is then taken), else the failure naming both inputs."""
        if story_id in self._first:
            first_where, first_file = self._first[story_id]
            return Failure(
                story_id, file, f"duplicate id: {where} ({file}) has the id of {first_where} ({first_file})"
            )
        self._first[story_id] = (where, file)
        return None


def read_manifest(
    path: str | Path, lsmdc_target_s: float = 150.0, clip_duration=None
) -> tuple[list[StorySource], list[Failure]]:
    """Stories and per-row failures of a manifest: the rows' stories in row order, then the LSMDC runs.

    ``clip_duration(path) -> float`` measures an LSMDC clip (by default torchcodec's stream
    metadata); a clip it cannot measure is reported and left out of its run.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    stories: list[StorySource] = []
    failures: list[Failure] = []
    taken = _TakenIds()
    lsmdc: dict[str, list[_LsmdcClip]] = {}  # movie -> its clips, in row order
    clip_lines: dict[str, int] = {}  # LSMDC clip id -> the line that has it

    def add(story: StorySource, where: str, file: str) -> None:
        duplicate = taken.claim(story.id, where, file)
        if duplicate:
            failures.append(duplicate)
        else:
            stories.append(story)

    for line, row, error in _rows(path):
        parsed = Failure(f"line {line}", str(path), error) if row is None else _parse_row(row, line, path)
        if isinstance(parsed, Failure):
            failures.append(parsed)
        elif isinstance(parsed, StorySource):
            add(parsed, f"line {line}", str(row.get("video") or parsed.videos[0]))
        elif parsed.id in clip_lines:
            reason = f"duplicate clip id (line {line}; first at line {clip_lines[parsed.id]})"
            failures.append(Failure(parsed.id, str(row["video"]), reason))
        else:
            clip_lines[parsed.id] = line
            lsmdc.setdefault(parsed.movie, []).append(parsed)

    for movie, clips in lsmdc.items():
        runs, unreadable = _lsmdc_runs(clips, lsmdc_target_s, clip_duration or _clip_duration)
        failures += unreadable
        for number, run in enumerate(runs):
            where = f"the LSMDC run of movie {movie!r} at lines {', '.join(str(c.line) for c in run)}"
            add(_lsmdc_story(movie, number, run), where, run[0].video)
    return stories, failures


def _clip_duration(video: str) -> float:
    from .media import probe

    return probe(video).duration
