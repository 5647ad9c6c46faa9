"""``sound-of-story manifest cmd|lsmdc|sos`` and ``sound-of-story convert-vgg16``: inputs from the paper's sources.

``manifest`` writes a build manifest (JSONL) from what a user downloads of Condensed Movies, LSMDC or the Sound of
Story release (:mod:`sound_of_story.dataset_builder.source_manifests`); ``convert-vgg16`` turns Keras' VGG16
ImageNet weights, the release's key-frame network, into the file ``build --key-frames imagecluster
--vgg16-weights`` reads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sound_of_story.core.help_formatter import HelpFormatter
from sound_of_story.core.model_ids import KERAS_VGG16_WEIGHTS

MANIFEST_DESCRIPTION = """\
Write a build manifest (JSONL; paths relative to its folder) from the paper's sources.

  cmd    Condensed Movies: --metadata is CMD's data/metadata folder (descriptions.csv), --videos the folder of
         the key clips (videos/<upload_year>/<videoid>.mkv from CMD's downloader). One story per clip.
  lsmdc  LSMDC 2016: --annotations LSMDC16_annos_training.csv LSMDC16_annos_val.csv ... (tab-separated; PATH@N
         takes the sentences from column N, default 5), --videos the folder of <movie>/<CLIP_ID>.avi. One row
         per clip; the build joins each movie's clips in order into ~150 s stories (--lsmdc-target-seconds).
  sos    The release's data/data.jsonl (Movie, Desc, Frames), matched to your CMD and LSMDC files as the
         release's scripts did; its frame names become the key frames, taken by frame index: the release's
         stories and frames.

Clips that are not on disk, and release records without a match, are counted and listed (the first 10).
"""


def _write(rows, out: Path) -> None:
    from sound_of_story.core.atomic_files import write_jsonl_atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(out, rows.rows)
    print(f"{len(rows.rows)} rows written to {out}; {len(rows.missing)} without a video on disk or a match")
    for name in rows.missing[:10]:
        print(f"  missing: {name}")


def _cmd_manifest(args: argparse.Namespace) -> int:
    from sound_of_story.dataset_builder import source_manifests

    out = Path(args.out)
    if args.source == "cmd":
        rows = source_manifests.cmd_rows(args.metadata, args.videos, out.parent)
    elif args.source == "lsmdc":
        rows = source_manifests.lsmdc_rows(args.annotations, args.videos, out.parent, encoding=args.encoding)
    else:
        rows = source_manifests.sos_rows(
            args.data_jsonl,
            out.parent,
            cmd_metadata=args.cmd_metadata,
            cmd_videos=args.cmd_videos,
            lsmdc_annotations=args.lsmdc_annotations or (),
            lsmdc_videos=args.lsmdc_videos,
        )
    _write(rows, out)
    return 0 if rows.rows else 1


def _cmd_convert_vgg16(args: argparse.Namespace) -> int:
    from sound_of_story.dataset_builder.image_clusters import (
        save_converted_weights,
        torchvision_state_dict_from_keras_h5,
    )

    state = torchvision_state_dict_from_keras_h5(args.keras_h5)
    out = save_converted_weights(state, args.out, source=f"keras:{Path(args.keras_h5).name}")
    print(f"wrote {out}: Keras' VGG16 in torchvision's layout, Caffe input (build --vgg16-weights {out})")
    return 0


def add_manifest_parsers(subparsers) -> None:
    """Register ``manifest`` (cmd, lsmdc, sos) and ``convert-vgg16``."""
    p = subparsers.add_parser(
        "manifest",
        help="write a build manifest from CMD, LSMDC or the release's data.jsonl",
        description=MANIFEST_DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    sources = p.add_subparsers(dest="source", metavar="SOURCE", required=True)
    cmd = sources.add_parser("cmd", help="Condensed Movies", formatter_class=HelpFormatter)
    cmd.add_argument("--metadata", type=Path, required=True, help="CMD's data/metadata folder (descriptions.csv)")
    cmd.add_argument("--videos", type=Path, required=True, help="folder of the key clips (searched recursively)")
    lsmdc = sources.add_parser("lsmdc", help="LSMDC 2016", formatter_class=HelpFormatter)
    lsmdc.add_argument("--annotations", nargs="+", required=True, help="annotation files (PATH or PATH@COLUMN)")
    lsmdc.add_argument("--videos", type=Path, required=True, help="folder of <movie>/<CLIP_ID>.avi")
    lsmdc.add_argument("--encoding", default="utf-8", help="the annotation files' text encoding")
    sos = sources.add_parser("sos", help="the release's data.jsonl", formatter_class=HelpFormatter)
    sos.add_argument("--data-jsonl", type=Path, required=True, help="the release's data/data.jsonl")
    sos.add_argument("--cmd-metadata", type=Path, help="CMD's data/metadata folder (descriptions.csv)")
    sos.add_argument("--cmd-videos", type=Path, help="folder of the CMD key clips")
    sos.add_argument(
        "--lsmdc-annotations", nargs="+",
        help="LSMDC annotation files (PATH or PATH@COLUMN); the release read LSMDC16_annos_training.csv and "
        "LSMDC16_annos_val.csv (column 5), annotations_missing_clips.csv (column 1) and "
        "annotations_missing_clips_test_paraphrase.csv (column 6)",
    )  # fmt: skip
    sos.add_argument("--lsmdc-videos", type=Path, help="folder of the LSMDC clips, <movie>/<CLIP_ID>.avi")
    for sub in (cmd, lsmdc, sos):
        sub.add_argument("--out", type=Path, required=True, help="the manifest to write (JSONL)")
        sub.set_defaults(func=_cmd_manifest)

    convert = subparsers.add_parser(
        "convert-vgg16",
        help="Keras' VGG16 weights (the release's key-frame network) for --key-frames imagecluster",
        description=f"Convert Keras' vgg16_weights_tf_dim_ordering_tf_kernels.h5 ({KERAS_VGG16_WEIGHTS}, what "
        "imagecluster and so the release used) into torchvision's VGG16 layout, marked for Caffe input. Reading HDF5 "
        "needs h5py (pip install h5py), for this conversion only.",
        formatter_class=HelpFormatter,
    )
    convert.add_argument("keras_h5", type=Path, help="Keras' VGG16 weights file (with the top)")
    convert.add_argument("--out", type=Path, required=True, help="the converted file (a torch file)")
    convert.set_defaults(func=_cmd_convert_vgg16)
