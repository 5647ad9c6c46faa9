"""Key frames as the paper selected them: imagecluster's VGG16 fingerprints, clustered at similarity 0.5.

The paper (section 3.3, footnote 1: github.com/elcorto/imagecluster) "gradually removed images with a fingerprint
similarity of greater than 0.5". The release's frame script (Sound_of_Story ``extract_frames.py`` before commit
9e024ad) did this:

1. frames sampled at ``min(fps, 10)`` per second with OpenCV: reading every frame in order, frame ``count`` is
   saved when ``count / fps`` reaches the next of the times ``arange(0, frame_count / fps, 1 / rate)``
   (:func:`sos_sample_indices`), as JPEG files;
2. ``imagecluster.io.get_image_data(dir)``: each image ``PIL.Image.open(f).convert("RGB").resize((224, 224),
   BICUBIC)`` (squashed, not cropped) as an integer array, through Keras' ``vgg16.preprocess_input`` (RGB to BGR,
   minus the Caffe means 103.939, 116.779, 123.68, no scaling), then Keras' ImageNet VGG16 up to layer ``fc2``
   (4096 values after the ReLU): the fingerprint (:func:`fingerprints`);
3. ``imagecluster.calc.cluster(fingerprints, sim=0.5)``: Euclidean distances between all fingerprints, average
   linkage, the dendrogram cut at ``max(distance) * (1 - sim)``, clusters of at least two images grouped by size
   (:func:`imagecluster_clusters`). So 0.5 is a relative cut, half of the largest distance within the story, not
   an absolute similarity;
4. ``for size in clusters: keep clusters[size][0][0]``: **one frame per distinct cluster size**, the first frame of
   the first cluster of that size; clusters of a size seen before and single frames are dropped
   (:func:`sos_key_frame_indices`).

Differences, each a choice of this package: frames are in time order (imagecluster lists the folder with
``os.listdir``, whose order is the file system's; it decides which frame comes first in a cluster); the frames are
decoded pictures, not the JPEG files OpenCV wrote (quality 95), so a fingerprint can differ by the JPEG error; a
story with fewer than two sampled frames keeps them (imagecluster cannot cluster one), and a story whose
clusters are all single frames keeps its first frame (imagecluster returns none).

Weights: the release used Keras' ``vgg16_weights_tf_dim_ordering_tf_kernels.h5`` (the Caffe VGG16 ported to
Keras, BGR input). :func:`torchvision_state_dict_from_keras_h5` converts that file into torchvision's VGG16 layout
(``sound-of-story convert-vgg16``), which then gives Keras' fingerprints to about 4e-6 (tested on random weights,
tests/golden/imagecluster). torchvision's own ImageNet weights (``IMAGENET1K_V1``) are a different network,
trained in PyTorch on RGB input scaled to [0, 1] and standardised: they give other fingerprints and so other
clusters and key frames than the release's.
"""

from __future__ import annotations

import collections
import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

TORCHVISION_WEIGHTS = "IMAGENET1K_V1"  # torchvision.models.VGG16_Weights.IMAGENET1K_V1 (downloaded by torchvision)
VGG16_INPUTS = ("auto", "caffe", "torchvision")
INPUT_SIZE = (224, 224)  # imagecluster's img_kwds size
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)  # keras imagenet_utils, mode "caffe"
IMAGENET_MEAN_RGB = np.array([0.485, 0.456, 0.406], dtype=np.float32)  # torchvision's ImageNet transforms
IMAGENET_STD_RGB = np.array([0.229, 0.224, 0.225], dtype=np.float32)
MAX_SAMPLING_FPS = 10.0  # extract_frames.py: SAVING_FRAMES_PER_SECOND
CONVERTED_FORMAT = "keras-vgg16-in-torchvision-layout"
# Keras' VGG16 layer names, in order, and torchvision's modules they become.
KERAS_LAYERS = (
    ("block1_conv1", "features.0"), ("block1_conv2", "features.2"),
    ("block2_conv1", "features.5"), ("block2_conv2", "features.7"),
    ("block3_conv1", "features.10"), ("block3_conv2", "features.12"), ("block3_conv3", "features.14"),
    ("block4_conv1", "features.17"), ("block4_conv2", "features.19"), ("block4_conv3", "features.21"),
    ("block5_conv1", "features.24"), ("block5_conv2", "features.26"), ("block5_conv3", "features.28"),
    ("fc1", "classifier.0"), ("fc2", "classifier.3"), ("predictions", "classifier.6"),
)  # fmt: skip


def is_weights_file(weights: str) -> bool:
    """Whether ``weights`` names a file (a path), not torchvision's id."""
    return weights != TORCHVISION_WEIGHTS


# ----------------------------------------------------------------------------------------
# Sampling, as the release's OpenCV loop did it
# ----------------------------------------------------------------------------------------


def sos_sample_indices(frame_count: int, fps: float, max_fps: float = MAX_SAMPLING_FPS) -> list[int]:
    """The frames the release's ``extract_frames`` saves of a video of ``frame_count`` frames at ``fps``: reading
    frame ``count`` = 0, 1, ..., it saves the frame when ``count / fps`` reaches the first time left of
    ``arange(0, frame_count / fps, 1 / min(fps, max_fps))`` and drops that time (one frame per time)."""
    if frame_count <= 0 or not fps > 0:
        return []
    targets = collections.deque(np.arange(0, frame_count / fps, 1 / min(fps, max_fps)).tolist())
    saved = []
    for count in range(frame_count):
        if not targets:
            break
        if count / fps >= targets[0]:
            saved.append(count)
            targets.popleft()
    return saved


# ----------------------------------------------------------------------------------------
# Fingerprints
# ----------------------------------------------------------------------------------------


def image_array(image: Image.Image) -> np.ndarray:
    """imagecluster's picture: RGB, squashed to 224 x 224 with PIL's bicubic filter, as a (224, 224, 3) uint8 array
    (imagecluster's ``img_to_array(img, dtype=int)`` holds the same integers)."""
    return np.asarray(image.convert("RGB").resize(INPUT_SIZE, resample=Image.Resampling.BICUBIC), dtype=np.uint8)


def preprocess(arrays: np.ndarray, vgg16_input: str):
    """(N, 224, 224, 3) RGB integers to the network's (N, 3, 224, 224) float32 input.

    ``caffe``: Keras' ``vgg16.preprocess_input`` (cast to float32, RGB to BGR, minus the Caffe means; what weights
    converted from Keras expect); ``torchvision``: divided by 255 and standardised with the ImageNet mean and
    standard deviation in RGB (what torchvision's weights expect).
    """
    import torch

    x = np.asarray(arrays).astype(np.float32)
    if vgg16_input == "caffe":
        x = x[..., ::-1] - CAFFE_MEAN_BGR
    elif vgg16_input == "torchvision":
        x = (x / np.float32(255.0) - IMAGENET_MEAN_RGB) / IMAGENET_STD_RGB
    else:
        raise ValueError(f"VGG16 input must be 'caffe' or 'torchvision', got {vgg16_input!r}")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))


def fingerprints(model, arrays: np.ndarray, vgg16_input: str, batch_size: int = 16) -> np.ndarray:
    """VGG16's ``fc2`` output (after its ReLU; Keras' layer ``fc2``) of each (224, 224, 3) picture, (N, 4096) float32.

    ``model``: a torchvision ``vgg16`` in eval mode; its classifier's first five modules are fc1, ReLU, dropout
    (off in eval mode), fc2, ReLU.
    """
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(arrays), batch_size):
            x = preprocess(arrays[start : start + batch_size], vgg16_input)
            features = torch.flatten(model.avgpool(model.features(x)), 1)
            out.append(model.classifier[:5](features).numpy())
    return np.concatenate(out) if out else np.zeros((0, 4096), np.float32)


@functools.lru_cache(maxsize=2)
def _load_vgg16_version(weights: str, mtime: float):
    import torch
    import torchvision

    if weights == TORCHVISION_WEIGHTS:
        try:  # torchvision downloads the file into torch hub's folder once
            model = torchvision.models.vgg16(weights=torchvision.models.VGG16_Weights.IMAGENET1K_V1)
        except OSError as err:
            raise FileNotFoundError(f"cannot get torchvision's VGG16 {TORCHVISION_WEIGHTS} weights: {err}") from None
        return model.eval(), "torchvision"
    try:
        loaded = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or EOFError for foreign files
        raise ValueError(f"{weights} is not a torch file of VGG16 weights: {err}") from None
    kind = "torchvision"
    if isinstance(loaded, Mapping) and loaded.get("format") == CONVERTED_FORMAT:
        loaded, kind = loaded["state_dict"], str(loaded.get("input", "caffe"))
    model = torchvision.models.vgg16(weights=None)
    try:
        model.load_state_dict(dict(loaded), strict=True)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"{weights} is not a state dict of torchvision's VGG16: {err}") from None
    return model.eval(), kind


def load_vgg16(weights: str) -> tuple[object, str]:
    """torchvision's VGG16 in eval mode with ``weights``, and the input its weights expect (``"caffe"`` or
    ``"torchvision"``).

    ``weights``: ``"IMAGENET1K_V1"`` (torchvision's, downloaded by torchvision once), a file written by
    :func:`save_converted_weights` (Keras' weights, Caffe input), or a plain state dict of torchvision's ``vgg16``
    (torchvision input). Raises ``FileNotFoundError`` / ``ValueError`` naming the file.
    """
    if not is_weights_file(weights):
        return _load_vgg16_version(weights, 0.0)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"VGG16 weights not found: {weights}")
    return _load_vgg16_version(str(path), path.stat().st_mtime)


# ----------------------------------------------------------------------------------------
# imagecluster's clusters and the release's choice of frames
# ----------------------------------------------------------------------------------------


def imagecluster_clusters(features: np.ndarray, sim: float = 0.5, min_csize: int = 2) -> dict[int, list[list[int]]]:
    """``imagecluster.calc.cluster(fingerprints, sim)`` without timestamps, on row indices instead of file names:
    ``{size: [cluster, ...]}`` of the clusters with at least ``min_csize`` members, sizes in the order in which
    they first occur among the clusters (ordered by label), each cluster's members in row order."""
    from scipy.cluster import hierarchy
    from scipy.spatial import distance

    if not 0.0 <= sim <= 1.0:
        raise ValueError(f"sim must be in [0, 1], got {sim}")
    distances = distance.pdist(np.asarray(features), "euclidean")
    linkage = hierarchy.linkage(distances, method="average", metric="euclidean")
    cut = hierarchy.fcluster(linkage, t=distances.max() * (1.0 - sim), criterion="distance")
    members: dict[int, list[int]] = {label: [] for label in np.unique(cut)}
    for row, label in enumerate(cut):
        members[label].append(row)
    clusters: dict[int, list[list[int]]] = {}
    for cluster in members.values():
        if len(cluster) >= min_csize:
            clusters.setdefault(len(cluster), []).append(cluster)
    return clusters


def sos_key_frame_indices(features: np.ndarray, sim: float = 0.5) -> list[int]:
    """The rows the release kept: ``clusters[size][0][0]`` for each cluster size (see the module docstring), in row
    order. Fewer than two rows are all kept; no cluster of two or more keeps the first row."""
    count = len(features)
    if count < 2:
        return list(range(count))
    clusters = imagecluster_clusters(features, sim)
    return sorted(clusters[size][0][0] for size in clusters) or [0]


# ----------------------------------------------------------------------------------------
# Keras' VGG16 weights in torchvision's layout
# ----------------------------------------------------------------------------------------


def _keras_layer_arrays(h5_file) -> dict[str, list[np.ndarray]]:
    """Each layer's arrays (kernel, bias) of a Keras weights file in the HDF5 layout of Keras 1 and 2 (``layer_names``
    and ``weight_names`` attributes; the ImageNet file is one, and a whole model saved as ``.h5`` holds one under
    ``model_weights``). Keras 3's ``.weights.h5`` names layers by class and number, not by name: not read."""
    root = h5_file["model_weights"] if "model_weights" in h5_file else h5_file
    arrays: dict[str, list[np.ndarray]] = {}
    for raw in root.attrs.get("layer_names", []):
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        group = root[name]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]
        arrays[name] = [np.asarray(group[n]) for n in names]
    return arrays


def torchvision_state_dict_from_keras_h5(path: str | os.PathLike) -> dict:
    """The weights of Keras' VGG16 file (``vgg16_weights_tf_dim_ordering_tf_kernels.h5``, or any Keras VGG16 with
    top saved as weights) as a state dict of ``torchvision.models.vgg16``: convolution kernels from (height, width,
    in, out) to (out, in, height, width); fc1's rows reordered from Keras' flattening of (7, 7, 512) to torch's
    of (512, 7, 7); dense kernels transposed. Needs ``h5py`` (``pip install h5py``; only for this conversion).
    """
    import torch

    try:
        import h5py
    except ImportError as err:
        raise ImportError(
            "converting Keras weights reads HDF5: pip install h5py (needed for the conversion only)"
        ) from err
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Keras weights file not found: {path}")
    with h5py.File(path, "r") as h5_file:
        arrays = _keras_layer_arrays(h5_file)
    missing = [keras for keras, _ in KERAS_LAYERS if len(arrays.get(keras, ())) != 2]
    if missing:
        raise ValueError(f"{path} is not Keras' VGG16 with its top: no kernel and bias for {', '.join(missing)}")
    state = {}
    for keras, module in KERAS_LAYERS:
        kernel, bias = (np.asarray(a, dtype=np.float32) for a in arrays[keras])
        if kernel.ndim == 4:
            weight = kernel.transpose(3, 2, 0, 1)
        elif keras == "fc1":
            weight = kernel.reshape(7, 7, 512, -1).transpose(3, 2, 0, 1).reshape(kernel.shape[1], -1)
        else:
            weight = kernel.T
        state[f"{module}.weight"] = torch.from_numpy(np.ascontiguousarray(weight))
        state[f"{module}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
    return state


def save_converted_weights(state_dict: Mapping, out: str | os.PathLike, source: str) -> Path:
    """Write ``state_dict`` (torchvision VGG16 layout, Keras' weights) with the input it expects (Caffe), so that
    :func:`load_vgg16` feeds it as Keras did."""
    import torch

    from sound_of_story.core.atomic_files import atomic_path

    out = Path(out)
    payload = {"format": CONVERTED_FORMAT, "input": "caffe", "source": source, "state_dict": dict(state_dict)}
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)
    return out


def key_frame_rows(
    pictures: Iterable[Image.Image], model, vgg16_input: str, sim: float, batch_size: int = 16
) -> list[int]:
    """The rows of ``pictures`` (in time order) that the release's rule keeps, fingerprinting ``batch_size`` pictures
    at a time (only their 224 x 224 copies are held)."""
    rows: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    for picture in pictures:
        batch.append(image_array(picture))
        if len(batch) == batch_size:
            rows.append(fingerprints(model, np.stack(batch), vgg16_input, batch_size))
            batch = []
    if batch:
        rows.append(fingerprints(model, np.stack(batch), vgg16_input, batch_size))
    features = np.concatenate(rows) if rows else np.zeros((0, 4096), np.float32)
    return sos_key_frame_indices(features, sim)


__all__: Sequence[str] = (
    "CAFFE_MEAN_BGR", "TORCHVISION_WEIGHTS", "VGG16_INPUTS", "fingerprints", "image_array", "imagecluster_clusters",
    "is_weights_file", "key_frame_rows", "load_vgg16", "preprocess", "save_converted_weights", "sos_key_frame_indices",
    "sos_sample_indices", "torchvision_state_dict_from_keras_h5",
)  # fmt: skip
