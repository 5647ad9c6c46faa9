"""Make tests/golden/bytesep, tests/golden/imagecluster and tests/golden/release_frames by running the ORIGINAL code:
bytesep 0.1.1's model loading and Separator, imagecluster (elcorto/imagecluster 687fa35) with Keras' VGG16, and the
Sound of Story release's frame script (jeje910/Sound_of_Story cfade8b, data_processing/extract/extract_frames.py)
with OpenCV. Not a test: none of them can be installed beside this project (bytesep pins torch 1.7.1, imagecluster
needs TensorFlow). How it was run (tests/golden/README.md has the versions):

    python -m venv /tmp/sos-dataset-golden-venv                 # throwaway, beside the project's venv
    echo "$PROJECT_VENV/lib/python3.11/site-packages" > /tmp/sos-dataset-golden-venv/lib/python3.11/site-packages/project.pth
    /tmp/sos-dataset-golden-venv/bin/pip install --no-deps bytesep==0.1.1 torchlibrosa==0.1.0 librosa==0.11.0 \\
        pytorch-lightning==2.6.6 audioread decorator pooch soxr lazy_loader joblib cloudpickle scikit-learn \\
        threadpoolctl platformdirs narwhals tensorflow-cpu==2.21.0 keras==3.15.1 h5py==3.14.0 ml_dtypes==0.7.0 namex==0.1.0 \\
        optree==0.20.0 opt_einsum==3.4.0 gast==0.7.0 google_pasta==0.2.0 astunparse==1.6.3 termcolor==3.3.0 \\
        opencv-python-headless==4.10.0.84
    git clone https://github.com/elcorto/imagecluster /tmp/imagecluster && git -C /tmp/imagecluster checkout 687fa35
    git clone https://github.com/jeje910/Sound_of_Story /tmp/Sound_of_Story && git -C /tmp/Sound_of_Story checkout cfade8b
    /tmp/sos-dataset-golden-venv/bin/python tests/golden/make_dataset_goldens.py \\
        --imagecluster /tmp/imagecluster --sound-of-story /tmp/Sound_of_Story

Patches, none inside the originals' code: bytesep's PQMF reads two filter files from ~/bytesep_data/filters and
downloads them when missing, so HOME points at a folder holding random (4, 64) filters (the checkpoint's own
filters replace them when it is loaded); imagecluster's ``calc.get_model`` would download Keras' ImageNet weights,
so its ``fc2`` model is built the same way from a Keras VGG16 holding the random weights; the release's
``extract_frames`` writes into ``../data/frames`` of the working folder, which is made for it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import golden_making
import numpy as np
import torch
from golden_making import GOLDEN, import_checkout, relative_error, write_fingerprint

import_checkout()

from dataset_goldens import (  # noqa: E402
    BYTESEP_SEED,
    BYTESEP_TEST_SEGMENT,
    IMAGECLUSTER_SEED,
    LSMDC_CLIPS,
    RELEASE_VIDEOS,
    bytesep_inputs,
    frame_number,
    imagecluster_pictures,
    write_release_videos,
)
from original_baselines import random_original_state_dict, state_dict_spec  # noqa: E402

torch.set_num_threads(2)


def environment(*names: str) -> dict:
    return golden_making.environment("torch", "numpy", "scipy", "pillow", *names)


# ----------------------------------------------------------------------------------------
# bytesep
# ----------------------------------------------------------------------------------------

BYTESEP_CONFIG = """\
train:
  input_channels: 2
  output_channels: 2
  target_source_types:
    - accompaniment
  sample_rate: 44100
  model_type: ResUNet143_Subbandtime
"""  # the keys build_separator reads of scripts/4_train/musdb18/configs/accompaniment-vocals,resunet_subbandtime.yaml


def make_bytesep(work: Path) -> None:
    import scipy.io

    home = work / "home"
    filters = home / "bytesep_data" / "filters"
    filters.mkdir(parents=True)
    for name in "fh":  # any (4, 64) arrays: the checkpoint's pqmf weights replace what PQMF builds from them
        scipy.io.savemat(filters / f"{name}_4_64.mat", {name: np.random.default_rng(0).standard_normal((4, 64))})
    os.environ["HOME"] = str(home)
    from bytesep.models.lightning_modules import get_model_class
    from bytesep.separate import build_separator

    layout = get_model_class("ResUNet143_Subbandtime")(input_channels=2, output_channels=2, target_sources_num=1)
    layout = layout.state_dict()
    fixed = {k: v for k, v in layout.items() if k.startswith(("stft.", "istft."))}  # torchlibrosa's DFT kernels
    checkpoint = random_original_state_dict(state_dict_spec(layout), BYTESEP_SEED, fixed)
    del layout
    path = work / "resunet143_random.pth"
    torch.save({"step": 0, "model": checkpoint}, path)
    config = work / "accompaniment-vocals,resunet_subbandtime.yaml"
    config.write_text(BYTESEP_CONFIG)
    separator = build_separator(str(config), str(path), "cpu")  # bytesep's own loading: torch.load(...)["model"]
    separator.segment_samples = BYTESEP_TEST_SEGMENT
    arrays, seconds = {}, {}
    for name, audio in bytesep_inputs().items():
        start = time.perf_counter()
        arrays[f"{name}_input"] = audio
        arrays[f"{name}_output"] = separator.separate({"waveform": audio})
        seconds[name] = round(time.perf_counter() - start, 2)
        # the same windows through the model in float64 (bytesep's Separator casts to float32): its rounding error
        model = separator.model.double()
        segments = separator.enframe(separator.pad_audio(audio), BYTESEP_TEST_SEGMENT)
        with torch.no_grad():
            outputs = np.stack(
                [model({"waveform": torch.from_numpy(s[None])})["waveform"][0].numpy() for s in segments]
            )
        arrays[f"{name}_output_float64"] = separator.deframe(outputs)[:, : audio.shape[1]]
        separator.model.float()
    write_fingerprint(GOLDEN / "bytesep", checkpoint)
    np.savez_compressed(GOLDEN / "bytesep" / "case.npz", **arrays)
    meta = {
        "made_by": "tests/golden/make_dataset_goldens.py",
        "environment": environment("bytesep", "torchlibrosa", "librosa", "pytorch-lightning"),
        "seed": BYTESEP_SEED,
        "checkpoint": "torch.save({'step': 0, 'model': state_dict}): bytesep's format (callbacks/base.py)",
        "checkpoint_keys": len(checkpoint),
        "checkpoint_parameters": int(sum(v.numel() for v in checkpoint.values())),
        "calls": {
            "separator": "bytesep.separate.build_separator(config_yaml, checkpoint, 'cpu'), then "
            f"separator.segment_samples = {BYTESEP_TEST_SEGMENT} (bytesep: 30 s = 1,323,000)",
            "*_output": "separator.separate({'waveform': input})",
            "*_output_float64": "the same windows through model.double(), stitched with separator.deframe",
        },
        "windows": {
            name: len(separator.enframe(separator.pad_audio(a), BYTESEP_TEST_SEGMENT))
            for name, a in bytesep_inputs().items()
        },
        "float32_vs_float64_relative_error": {
            name: relative_error(arrays[f"{name}_output"], arrays[f"{name}_output_float64"]) for name in seconds
        },
        "seconds": seconds,
    }
    (GOLDEN / "bytesep" / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print("bytesep", json.dumps(meta["float32_vs_float64_relative_error"]), meta["windows"])


# ----------------------------------------------------------------------------------------
# imagecluster
# ----------------------------------------------------------------------------------------


def keras_layout(state: dict) -> dict[str, list[np.ndarray]]:
    """torchvision VGG16 weights as Keras' VGG16 layers' [kernel, bias] (the inverse of the package's converter)."""
    from sound_of_story.dataset_builder.image_clusters import KERAS_LAYERS

    layers = {}
    for keras, module in KERAS_LAYERS:
        weight, bias = state[f"{module}.weight"].numpy(), state[f"{module}.bias"].numpy()
        if weight.ndim == 4:
            kernel = weight.transpose(2, 3, 1, 0)
        elif keras == "fc1":
            kernel = weight.reshape(-1, 512, 7, 7).transpose(2, 3, 1, 0).reshape(25088, -1)
        else:
            kernel = weight.T
        layers[keras] = [np.ascontiguousarray(kernel), bias]
    return layers


def make_imagecluster(work: Path, imagecluster_repo: Path) -> None:
    import h5py
    import torchvision
    from keras.src.legacy.saving import legacy_h5_format
    from PIL import Image

    sys.path.insert(0, str(imagecluster_repo))
    from imagecluster import calc
    from imagecluster import io as icio
    from tensorflow.keras.applications.vgg16 import VGG16
    from tensorflow.keras.models import Model

    from sound_of_story.dataset_builder.image_clusters import CAFFE_MEAN_BGR, torchvision_state_dict_from_keras_h5

    layout = torchvision.models.vgg16(weights=None).state_dict()
    checkpoint = random_original_state_dict(state_dict_spec(layout), IMAGECLUSTER_SEED, {})
    del layout
    base = VGG16(weights=None, include_top=True)
    for name, arrays in keras_layout(checkpoint).items():
        base.get_layer(name).set_weights(arrays)
    # the converter, on a file in the layout of Keras' ImageNet file (Keras 2's HDF5 weights)
    legacy = work / "vgg16_random_legacy.h5"
    with h5py.File(legacy, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, base)
    state = torchvision_state_dict_from_keras_h5(legacy)
    converted = sorted(state) == sorted(checkpoint) and all(torch.equal(state[k], checkpoint[k]) for k in checkpoint)
    del state
    model = Model(inputs=base.input, outputs=base.get_layer("fc2").output)  # imagecluster's calc.get_model('fc2')

    frames = work / "frames"
    frames.mkdir()
    files = []
    for i, picture in enumerate(imagecluster_pictures()):
        files.append(str(frames / f"frame{i:02d}.png"))
        Image.fromarray(picture).save(files[-1])
    images = OrderedDict(icio._image_worker(f, (224, 224)) for f in files)  # time order, not os.listdir's
    start = time.perf_counter()
    fps = calc.fingerprints(images, model)
    seconds = time.perf_counter() - start
    clusters = calc.cluster(fps, sim=0.5)
    index = {f: i for i, f in enumerate(files)}
    clusters_by_index = {size: [[index[f] for f in c] for c in cs] for size, cs in clusters.items()}
    kept = [index[clusters[size][0][0]] for size in clusters]  # the release's extract_frames.py:100-102
    fingerprints = np.stack([fps[f] for f in files]).astype(np.float32)

    # float64 reference: the same network in torch, the caffe input computed in float64
    reference = torchvision.models.vgg16(weights=None)
    reference.load_state_dict(checkpoint)
    reference = reference.double().eval()
    arrays = np.stack([images[f] for f in files]).astype(np.float64)
    x = torch.from_numpy(
        np.ascontiguousarray((arrays[..., ::-1] - CAFFE_MEAN_BGR.astype(np.float64)).transpose(0, 3, 1, 2))
    )
    with torch.no_grad():
        fingerprints64 = reference.classifier[:5](torch.flatten(reference.avgpool(reference.features(x)), 1)).numpy()
    # how far the cut is from the nearest merge: float noise below this cannot change the clusters
    from scipy.cluster import hierarchy
    from scipy.spatial import distance

    d = distance.pdist(fingerprints, "euclidean")
    heights = hierarchy.linkage(d, method="average")[:, 2]
    cut = d.max() * 0.5
    margin = float(np.abs(heights - cut).min() / cut)

    folder = GOLDEN / "imagecluster"
    write_fingerprint(folder, checkpoint)
    np.savez_compressed(folder / "case.npz", fingerprints=fingerprints, fingerprints_float64=fingerprints64)
    meta = {
        "made_by": "tests/golden/make_dataset_goldens.py",
        "environment": {**environment("tensorflow-cpu", "keras", "h5py", "scikit-learn"), "imagecluster": "687fa35"},
        "seed": IMAGECLUSTER_SEED,
        "pictures": "dataset_goldens.imagecluster_pictures(): 15 pictures, shots of 5, 4, 3, 2 and 1, written as PNG",
        "calls": {
            "model": "keras VGG16(weights=None, include_top=True) holding the random weights; "
            "Model(inputs=base.input, outputs=base.get_layer('fc2').output) as calc.get_model('fc2')",
            "images": "imagecluster.io._image_worker(file, (224, 224)) for the files in time order",
            "fingerprints": "imagecluster.calc.fingerprints(images, model)",
            "clusters": "imagecluster.calc.cluster(fingerprints, sim=0.5)",
            "kept": "[clusters[size][0][0] for size in clusters] (Sound_of_Story c065755 extract_frames.py:100-102)",
        },
        "clusters": {str(k): v for k, v in clusters_by_index.items()},
        "kept": kept,
        "converter_equals_the_weights": converted,
        "keras_float32_vs_float64_relative_error": relative_error(fingerprints, fingerprints64),
        "cut_margin_relative": margin,
        "seconds_fingerprints": round(seconds, 2),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print("imagecluster", meta["clusters"], kept, converted, meta["keras_float32_vs_float64_relative_error"], margin)


# ----------------------------------------------------------------------------------------
# the release's frames
# ----------------------------------------------------------------------------------------


def make_release_frames(work: Path, sos_repo: Path) -> None:
    import cv2
    from PIL import Image

    folder = GOLDEN / "release_frames"
    videos = write_release_videos(folder)
    run = work / "run"
    (run / "videos").mkdir(parents=True)
    (work / "data" / "frames").mkdir(parents=True)
    for name in RELEASE_VIDEOS:
        shutil.copy(videos[name], run / "videos" / name)
    # the release's LSMDC join (LSMDC_processing.py): the first clip copied, the next appended with the concat protocol
    joined = run / "videos" / "lsmdc_joined.avi"
    shutil.copy(run / "videos" / LSMDC_CLIPS[0], joined)
    temp = run / "videos" / "lsmdc_joined_temp.avi"
    command = f'ffmpeg -v error -i "concat:{joined}|{run / "videos" / LSMDC_CLIPS[1]}" -codec copy {temp}'
    subprocess.run(command, shell=True, check=True)
    os.rename(temp, joined)

    spec = importlib.util.spec_from_file_location(
        "extract_frames", sos_repo / "data_processing/extract/extract_frames.py"
    )
    release = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(release)
    results = {}
    os.chdir(run)
    for name in [n for n in RELEASE_VIDEOS if n not in LSMDC_CLIPS] + [joined.name]:
        release.extract_frames(f"./videos/{name}")  # writes ../data/frames/<name>_frames/frame*.jpg
        saved = sorted((work / "data" / "frames" / f"{Path(name).stem}_frames").iterdir())
        capture = cv2.VideoCapture(f"./videos/{name}")
        results[name] = {
            "opencv_fps": capture.get(cv2.CAP_PROP_FPS),
            "opencv_frame_count": capture.get(cv2.CAP_PROP_FRAME_COUNT),
            # each saved file and the frame it shows (the number drawn in it)
            "saved": sorted(([p.name, frame_number(np.asarray(Image.open(p)))] for p in saved), key=lambda s: s[1]),
        }
        capture.release()
    (folder / "saved_frames.json").write_text(
        json.dumps(
            {
                "made_by": "tests/golden/make_dataset_goldens.py",
                "environment": {**environment("opencv-python-headless"), "Sound_of_Story": "cfade8b"},
                "calls": "extract_frames.extract_frames('./videos/<name>') of the release, every frame it saves (its "
                "main() then deletes those not in data.jsonl's Frames); lsmdc_joined.avi is lsmdc_a.avi and "
                'lsmdc_b.avi joined with `ffmpeg -i "concat:a|b" -codec copy`, as LSMDC_processing.py joins clips',
                "videos": results,
            },
            indent=1,
        )
        + "\n"
    )
    for name, result in results.items():
        print(name, result["opencv_fps"], result["opencv_frame_count"], len(result["saved"]), result["saved"][:4])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--imagecluster", type=Path, required=True, help="a clone of elcorto/imagecluster at 687fa35")
    parser.add_argument("--sound-of-story", type=Path, required=True, help="a clone of jeje910/Sound_of_Story")
    parser.add_argument("--only", choices=("bytesep", "imagecluster", "release_frames"), nargs="*")
    args = parser.parse_args()
    only = set(args.only or ("bytesep", "imagecluster", "release_frames"))
    with tempfile.TemporaryDirectory(prefix="sos-dataset-goldens-") as work:
        work = Path(work)
        for name in only:
            (work / name).mkdir()
        if "release_frames" in only:
            make_release_frames(work / "release_frames", args.sound_of_story.resolve())
        if "imagecluster" in only:
            make_imagecluster(work / "imagecluster", args.imagecluster.resolve())
        if "bytesep" in only:
            make_bytesep(work / "bytesep")


if __name__ == "__main__":
    main()
