"""``sound-of-story index`` and ``sound-of-story recommend``: background sound from a sound library.

Registered by ``add_recommend_parsers(subparsers)``; heavy imports (torch, faiss) happen inside the
subcommands so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from sound_of_story.core.help_formatter import HelpFormatter

from .frame_reader import MAX_FRAME_FILE_BYTES, MAX_FRAME_PIXELS, MAX_FRAMES

# Defaults repeated here (not imported) so that --help needs neither torch nor faiss; a test checks they agree.
DEFAULT_TOP_K = 10
DEFAULT_RERANK = 100
MAX_CANDIDATES = 1000
DEFAULT_BATCH_SIZE = 8
INDEX_TYPES = ("auto", "flat", "ivfpq", "hnsw")
AUTO_FLAT_MAX = 100_000
# A --video query: at most this long (as its stream states it, and as decoded), the dataset builder's longest story
# (dataset_builder.processing.MAX_STORY_SECONDS) and story mode's 100 scenes at a shot every 6 s. Its frames are held
# to the frame files' pixel and aspect caps before any is decoded, and its key frames (one per shot) to story mode's
# scenes (recommendation's MAX_STORY_SCENES, repeated here for --help; a test checks they agree).
MAX_VIDEO_SECONDS = 600.0
MAX_VIDEO_KEY_FRAMES = 100


def _cmd_index(args: argparse.Namespace) -> int:
    from sound_of_story.recommendation import CoarseIndexSettings, SoundLibraryIndex

    settings = CoarseIndexSettings(
        index_type=args.index_type, nlist=args.nlist, pq_m=args.pq_m, nprobe=args.nprobe, hnsw_m=args.hnsw_m
    )
    index, report = SoundLibraryIndex.build(
        args.library, args.model, args.out, revision=args.revision, dataset_config=args.dataset_config, coarse_settings=settings,
        store_dtype=args.store_dtype, store_tokens=args.store_tokens, audio_crops=args.audio_crops, batch_size=args.batch_size,
        progress=not args.quiet,
    )  # fmt: skip
    print(
        f"index {args.out}: {index.num_clips} clips ({index.coarse.kind} search); encoded {len(report.added)} new, "
        f"{report.unchanged} unchanged, {len(report.removed)} gone or changed"
    )
    if args.push_to_hub:
        print(f"pushed to {index.push_to_hub(args.push_to_hub, private=args.private)}")
    if report.failures:
        from sound_of_story.recommendation import printable

        for failure in report.failures:
            print(f"skipped {printable(failure['path'])}: {printable(failure['reason'])}", file=sys.stderr)
        print(
            f"sound-of-story index: error: {len(report.failures)} unreadable clip(s) skipped (listed in {Path(args.out) / 'failures.jsonl'}); the rest is indexed",
            file=sys.stderr,
        )
        return 2
    return 0


def _probe_query_video(path: Path):
    """The video stream of a --video query and its length, refused before anything is decoded when the file is
    missing, its frames are larger than a frame file may be (`MAX_FRAME_PIXELS`, `MAX_ASPECT_RATIO`) or it is longer
    than `MAX_VIDEO_SECONDS`."""
    from sound_of_story.dataset_builder.key_frames import stream_length, video_stream

    from .frame_reader import check_frame_size

    if not path.is_file():
        raise FileNotFoundError(f"--video {str(path)!r} does not exist")
    try:
        video = video_stream(path)
        length = stream_length(path, video)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"cannot read video {str(path)!r}: {err}") from None
    check_frame_size(video.width, video.height, f"--video {str(path)!r}")
    if length > MAX_VIDEO_SECONDS:
        raise ValueError(
            f"--video {str(path)!r} is {length:.0f} s long, more than the {MAX_VIDEO_SECONDS:g} s a video query may "
            f"be: cut out the part you want (for example ffmpeg -ss START -t {MAX_VIDEO_SECONDS:g} -i VIDEO PART.mp4)"
        )
    return video, length


def _video_key_frames(path: Path, side: int) -> tuple[list, list[float], float]:
    """Key frames of a video (the dataset builder's key-frame step) at most ``side`` on their shorter side, their
    times and the video's length, in bounded memory: the scan holds one small gray picture at a time and a hash per
    sampled frame; at most `MAX_VIDEO_KEY_FRAMES` key frames, known from the hashes, are decoded at full size (a
    batch of at most the key-frame step's ``DECODE_BATCH_BYTES``, or one frame), each shrunk to a JPEG of at most
    512 pixels as it is decoded and then to ``side``."""
    import io

    from PIL import Image

    from sound_of_story.dataset_builder.key_frames import KeyFrameParams, frames_at, kept_frame_times, scan_video

    from .frame_reader import fit_frame

    video, length = _probe_query_video(path)
    params = KeyFrameParams()
    try:
        scan = scan_video(path, params, video=video)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"cannot read video {str(path)!r}: {err}") from None
    if scan.decoded_seconds > MAX_VIDEO_SECONDS + 1.0 / params.fps:  # a stream that states less than it holds
        raise ValueError(
            f"--video {str(path)!r} decodes to more than the {MAX_VIDEO_SECONDS:g} s a video query may be "
            f"(it states {length:.0f} s)"
        )
    times = [time for _, time in kept_frame_times([scan], params)]
    if not times:
        raise ValueError(f"the query has no frames: no key frames found in {str(path)!r}")
    if len(times) > MAX_VIDEO_KEY_FRAMES:
        raise ValueError(
            f"--video {str(path)!r} has {len(times)} key frames (scenes), more than the {MAX_VIDEO_KEY_FRAMES} "
            "story mode takes: recommend for its parts one by one"
        )
    try:
        key_frames = frames_at(path, times, params, video=video)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"cannot read video {str(path)!r}: {err}") from None
    frames = []
    for k in key_frames:
        with Image.open(io.BytesIO(k.jpeg), formats=["JPEG"]) as image:
            frames.append(fit_frame(image, side))
    return frames, [k.time for k in key_frames], scan.end


@dataclasses.dataclass
class Query:
    """A recommend query from the command line: frames (with times in story mode) or a text, and how the
    JSON output describes it."""

    description: dict
    text: str | None = None
    frames: list | None = None
    frame_times: list[float] | None = None
    duration: float | None = None


def _check_query_flags(args: argparse.Namespace) -> None:
    """Flag errors that need no file read and no model."""
    for flag, value in (("--top-k", args.top_k), ("--rerank", args.rerank)):
        if not 1 <= value <= MAX_CANDIDATES:
            raise ValueError(f"{flag} must be between 1 and {MAX_CANDIDATES}, got {value}")
    if args.text is not None:
        if args.frame_times:
            raise ValueError("--frame-times goes with --frames")
        if not args.text.strip():
            raise ValueError("the text query is empty")


def _read_query(args: argparse.Namespace, frame_side: int) -> Query:
    """The query of --text, --frames (with --frame-times) or --video (its key frames and their times); frames are
    read by the bounded frame reader at ``frame_side`` pixels on their shorter side."""
    from .frame_reader import frame_files_in, read_frame_files

    if args.text is not None:
        return Query({"text": args.text}, text=args.text)
    if args.frames is not None:
        frames = read_frame_files(frame_files_in(args.frames, "--frames"), frame_side, flag="--frames")
        if args.frame_times and len(args.frame_times) != len(frames):
            raise ValueError(
                f"--frame-times has {len(args.frame_times)} times but {args.frames} holds {len(frames)} images"
            )
        description = {"frames": str(args.frames), "num_frames": len(frames)}
        return Query(description, frames=frames, frame_times=args.frame_times, duration=args.duration)
    frames, frame_times, video_duration = _video_key_frames(args.video, frame_side)
    description = {"video": str(args.video), "num_key_frames": len(frames)}
    return Query(description, frames=frames, frame_times=frame_times, duration=args.duration or video_duration)


def _print_recommendations(results: list) -> None:
    from sound_of_story.recommendation import printable  # ids and paths come from file names or a downloaded index

    print(f"{'rank':>4}  {'score':>9}  {'coarse':>9}  clip")
    for r in results:
        print(f"{r.rank:>4}  {r.score:>9.4f}  {r.coarse_score:>9.4f}  {printable(r.clip_id)}  ({printable(r.path)})")


def _print_story(scenes: list) -> None:
    from sound_of_story.recommendation import printable

    print("story: one sound per scene")
    for s in scenes:
        end = "end" if s.end is None else f"{s.end:.2f}s"
        print(f"  {s.start:7.2f}s - {end:>8}  {s.recommendation.score:>9.4f}  {printable(s.recommendation.clip_id)}")


def _cmd_recommend(args: argparse.Namespace) -> int:
    from sound_of_story.recommendation import SoundLibraryIndex

    from .frame_reader import retrieval_frame_side

    _check_query_flags(args)
    if args.video is not None:
        _probe_query_video(args.video)  # a refused video is told before the index and its model load
    index = SoundLibraryIndex.load(
        args.index, model=args.model, revision=args.revision, verify=args.verify, library=args.library
    )
    # Checked first: decoding a video for an index that answers text only (CLAP) would be wasted work.
    index.require_query("text" if args.text is not None else "frames")
    query = _read_query(args, retrieval_frame_side(index.processor))
    index.coarse.set_search(nprobe=args.nprobe, ef_search=args.ef_search)
    results = index.recommend(frames=query.frames, text=query.text, top_k=args.top_k, rerank=args.rerank)
    payload = {
        "index": str(args.index),
        "model": dataclasses.asdict(index.config.model),
        "query": query.description,
        "top_k": args.top_k,
        "rerank": args.rerank,
        "recommendations": [r.to_dict() for r in results],
    }
    _print_recommendations(results)
    if query.frame_times:
        scenes = index.recommend_story(
            query.frames,
            query.frame_times,
            duration=query.duration,
            rerank=args.rerank,
            allow_repeats=args.allow_repeats,
        )
        payload["story"] = [s.to_dict() for s in scenes]
        _print_story(scenes)
    if args.json is not None:
        from sound_of_story.core.atomic_files import write_json_atomic

        write_json_atomic(args.json, payload)
        print(f"wrote {args.json}")
    return 0


# ----------------------------------------------------------------------------- the two parsers


def _add_index_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "index",
        help="index a sound library for recommendation (FAISS + re-rank store)",
        description=(
            "Encode every clip of a sound library with the retrieval model's audio side (evaluation protocol: the "
            "processor's deterministic most-energetic window, 10.24 s for SoS and Wav2CLIP, 10 s for CLAP) into "
            "INDEX: a FAISS index of the global audio embeddings and a memory-mapped store for re-ranking (with the "
            "audio sequence features when the model has them, as SoS does). Re-running on an existing INDEX encodes "
            "only new or changed clips (content SHA-256) and drops clips that are gone. Unreadable clips are skipped "
            "and listed (exit code 2 after indexing the rest). "
            f"--index-type auto: exact (flat) search up to {AUTO_FLAT_MAX:,} clips, IVF-PQ above."
        ),
        formatter_class=HelpFormatter,
    )
    _add_library_and_model_arguments(p)
    _add_coarse_index_arguments(p)
    _add_store_arguments(p)
    _add_hub_upload_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_index)


def _add_library_and_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--library",
        required=True,
        help="a folder of audio files (searched recursively), a built SoS folder, or a Hub dataset hf://owner/name",
    )
    p.add_argument(
        "--model",
        required=True,
        help="retrieval model folder or Hub id with its processor files: SoS, the Wav2CLIP baseline (frames and "
        "text queries) or CLAP (text queries only)",
    )
    p.add_argument("--out", required=True, type=Path, help="index folder (created; an existing index is updated)")
    p.add_argument("--revision", help="model revision (Hub branch, tag or commit)")
    p.add_argument(
        "--dataset-config",
        choices=("stories", "generation"),
        default="stories",
        help="which config of a SoS dataset library to index",
    )


def _add_coarse_index_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index-type", choices=INDEX_TYPES, default="auto", help="coarse search structure")
    p.add_argument("--nlist", type=int, help="IVF-PQ lists (default: about sqrt(clips), a power of two)")
    p.add_argument("--pq-m", type=int, help="IVF-PQ sub-quantisers (default: dim / 8)")
    p.add_argument("--nprobe", type=int, default=64, help="IVF-PQ lists visited per query (default of recommend)")
    p.add_argument("--hnsw-m", type=int, default=32, help="HNSW neighbours per node")


def _add_store_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store-dtype", choices=("float16", "float32"), default="float16", help="dtype of the re-rank store"
    )
    p.add_argument(
        "--store-tokens",
        type=int,
        help="pool the audio sequence features to this many tokens (smaller store, approximate re-ranking; "
        "default: all; only for a model with token features, such as SoS)",
    )
    p.add_argument(
        "--audio-crops",
        type=int,
        default=1,
        help="audio windows per clip, spread over the clip (the processor's audio_crops)",
    )
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="clips per forward pass")


def _add_hub_upload_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--push-to-hub",
        metavar="REPO",
        help="also upload the index as this Hub dataset repo (owner/name; without local paths or file times)",
    )
    p.add_argument("--private", action="store_true", help="create the Hub repo private")


def _add_recommend_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "recommend",
        help="recommend background sound for frames, a text or a video from an index",
        description=(
            "Stage 1 takes the --rerank nearest clips by the global embedding (video or sentence feature against the "
            "audio feature); stage 2 orders them by the model's own similarity (for SoS the full multi-grained "
            "similarity; a baseline's global cosine keeps stage 1's order). Prints the --top-k and writes them (with "
            "ids, paths and both scores) to --json. With frame times (--frame-times, or the key frames of --video) it "
            "also recommends one sound per scene, switching only at scene cuts (each key frame opens a scene), with no "
            "sound used twice unless --allow-repeats. An index of a CLAP model answers --text only."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--index",
        required=True,
        help="index folder, or hf://owner/name for an index on the Hub (a missing folder is never looked up there)",
    )
    _add_query_arguments(p)
    _add_story_arguments(p)
    _add_search_arguments(p)
    _add_index_source_arguments(p)
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.set_defaults(func=_cmd_recommend)


def _add_query_arguments(p: argparse.ArgumentParser) -> None:
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument(
        "--frames",
        type=Path,
        help=f"folder of a scene's frames (images, in file-name order; at most {MAX_FRAMES} files of up to "
        f"{MAX_FRAME_FILE_BYTES // 2**20} MiB and {MAX_FRAME_PIXELS:,} pixels each)",
    )
    query.add_argument("--text", help="a story text")
    query.add_argument(
        "--video",
        type=Path,
        help=f"a video file of at most {MAX_VIDEO_SECONDS / 60:g} minutes and {MAX_FRAME_PIXELS:,} pixels a frame: its "
        f"key frames (the dataset builder's key-frame step, one per shot, at most {MAX_VIDEO_KEY_FRAMES}) are the query",
    )


def _add_story_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--frame-times",
        type=float,
        nargs="+",
        help="times (seconds) of the --frames images, one each: turns on story mode",
    )
    p.add_argument(
        "--duration",
        type=float,
        help="story length in seconds (ends the last scene; a --video's own length by default)",
    )
    p.add_argument("--allow-repeats", action="store_true", help="story mode: a sound may serve several scenes")


def _add_search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help=f"clips to recommend (at most {MAX_CANDIDATES})")
    p.add_argument(
        "--rerank",
        type=int,
        default=DEFAULT_RERANK,
        help=f"stage-1 candidates re-ranked by the model's similarity (at most {MAX_CANDIDATES})",
    )
    p.add_argument("--nprobe", type=int, help="IVF-PQ lists visited (default: the index's)")
    p.add_argument("--ef-search", type=int, help="HNSW search breadth (default: the index's)")


def _add_index_source_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", help="the model folder or Hub id, when it moved since indexing (must be the same weights)"
    )
    p.add_argument("--revision", help="revision of a Hub index repo")
    p.add_argument(
        "--library",
        help="where the indexed library is on this machine (default: where a local index says; an index from the "
        "Hub prints its clips' paths relative to its library)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="hash every store file before use (rows are always CRC-checked when read)",
    )


def add_recommend_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``index`` and ``recommend`` on an ``add_subparsers()`` object."""
    _add_index_parser(subparsers)
    _add_recommend_parser(subparsers)


__all__ = ["add_recommend_parsers"]
