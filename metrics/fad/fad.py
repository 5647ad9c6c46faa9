"""Fréchet Audio Distance as an `evaluate` module: a thin wrapper of sound_of_story.metrics.fad."""

import os

import datasets
import evaluate
import numpy as np

from sound_of_story.core import model_ids
from sound_of_story.metrics.fad import AudioEmbedder, compute_fad, make_embedder

_CITATION = """\
@inproceedings{kilgour2019fad,
  title     = {Fr{\\'e}chet Audio Distance: A Reference-Free Metric for Evaluating Music Enhancement Algorithms},
  author    = {Kilgour, Kevin and Zuluaga, Mauricio and Roblek, Dominik and Sharifi, Matthew},
  booktitle = {Interspeech},
  pages     = {2350--2354},
  year      = {2019}
}
@inproceedings{hershey2017vggish,
  title     = {CNN Architectures for Large-Scale Audio Classification},
  author    = {Hershey, Shawn and Chaudhuri, Sourish and Ellis, Daniel P. W. and Gemmeke, Jort F. and Jansen, Aren and Moore, R. Channing and Plakal, Manoj and Platt, Devin and Saurous, Rif A. and Seybold, Bryan and others},
  booktitle = {ICASSP},
  pages     = {131--135},
  year      = {2017}
}
@inproceedings{bae2023soundofstory,
  title     = {Sound of Story: Multi-modal Storytelling with Audio},
  author    = {Bae, Jaeyeon and Jeong, Seokhoon and Kang, Seokun and Han, Namgi and Lee, Jae-Yon and Kim, Hyounghun and Kim, Taehwan},
  booktitle = {Findings of the Association for Computational Linguistics: EMNLP 2023},
  year      = {2023}
}
"""

_DESCRIPTION = """\
Fréchet Audio Distance (Kilgour et al., 2019) between generated audio and reference audio, as in
the Sound of Story paper (Table 3, FAD_VGGish, lower is better). Clips are embedded with VGGish
(a PyTorch port reproducing torchvggish, loading its vggish-10086976.pth from a local path) or
with CLAP; all embedding frames of a set are pooled into a Gaussian and the two Gaussians are
compared with the Fréchet distance, in float64. Optional: FAD-infinity and per-clip FAD.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: generated clips, each a file path (str) or a mono float waveform (list or
        1-D array). Can be streamed with add_batch(predictions=...).
    references: reference clips, same formats; given to compute() (the set may differ in size).
    sampling_rate (`int`): rate of waveform inputs (predictions and references, unless
        reference_sampling_rate is given). Files use their own rate.
    vggish_checkpoint (`str`): local path of torchvggish's vggish-10086976.pth
        (https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth).
    random_weights (`bool`, defaults to False): use random VGGish weights instead (offline
        smoke tests only; every output then says so).
    pca_params (`str`, optional): torchvggish's vggish_pca_params-970ea276.pth to apply the PCA
        + 8-bit quantisation (off by default, as in frechet-audio-distance and fadtk).
    final_relu (`bool`, defaults to False): keep VGGish's last ReLU (the FAD convention drops it).
    embedder (`str` or AudioEmbedder, defaults to "vggish"): "vggish", "clap" (loads clap_model,
        default "laion/clap-htsat-unfused", needs the Hub), or a ready AudioEmbedder.
    batch_size (`int`, defaults to 64), cache_dir (`str`, optional): embedding batch size and
        content-hash embedding cache folder.
    pad_short_clips (`bool`, defaults to False): zero-pad clips shorter than 0.975 s instead of
        raising.
    resampler (`str`, defaults to "resampy"): "resampy" (torchvggish's, exact parity at any rate) or
        "torchaudio" (faster; see the module card for its deviation).
    fad_inf (`bool`), fad_inf_min_n (`int`, 500), fad_inf_steps (`int`, 25), seed (`int`, 0):
        FAD-infinity extrapolation.
    per_clip (`bool`, defaults to False): FAD of each prediction against the reference set.
Returns:
    "fad" (float >= 0, lower is better), "embedder", "random_weights", clip and embedding
    counts; "fad_infinity" and "per_clip_fad" when asked; "warning" when weights are random.
Examples:
    >>> fad = evaluate.load(evaluate_module_path("fad"))  # from sound_of_story.metrics
    >>> out = fad.compute(predictions=["gen/0.wav", "gen/1.wav"], references=["ref/0.wav", "ref/1.wav", "ref/2.wav"],
    ...                   vggish_checkpoint="vggish-10086976.pth")
    >>> out["fad"]
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FAD(evaluate.Metric):
    """Fréchet Audio Distance with VGGish or CLAP embeddings."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._embedders = {}  # loaded once per configuration, reused across compute() calls

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("string")}),
                datasets.Features({"predictions": datasets.Sequence(datasets.Value("float32"))}),
            ],
            reference_urls=[
                "https://arxiv.org/abs/1812.08466",
                "https://github.com/harritaylor/torchvggish",
                "https://github.com/microsoft/fadtk",
            ],
            codebase_urls=["https://github.com/google-research/google-research/tree/master/frechet_audio_distance"],
        )

    # FAD compares two sets of different sizes, which evaluate's one-table input cache cannot
    # hold; so only `predictions` is an input feature and `references` goes to _compute.
    def compute(self, *, predictions=None, references=None, **kwargs):
        """FAD of the predictions (given here and/or added before) against ``references``."""
        if references is None:
            raise ValueError(
                "FAD needs a reference set: compute(predictions=..., references=[...]) with file paths or waveforms"
            )
        return super().compute(predictions=predictions, reference_audio=references, **kwargs)

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of generated clips (references go to ``compute``)."""
        if references is not None:
            raise ValueError("FAD takes its references in compute(references=...), not in add_batch()")
        return super().add_batch(predictions=predictions, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one generated clip (references go to ``compute``)."""
        if reference is not None:
            raise ValueError("FAD takes its references in compute(references=...), not in add()")
        return super().add(prediction=prediction, **kwargs)

    def _embedder(
        self,
        embedder,
        vggish_checkpoint,
        random_weights,
        pca_params,
        final_relu,
        pad_short_clips,
        clap_model,
        resampler,
    ):
        if isinstance(embedder, AudioEmbedder):
            return embedder
        key = (
            embedder,
            vggish_checkpoint,
            random_weights,
            pca_params,
            final_relu,
            pad_short_clips,
            clap_model,
            resampler,
        )
        if key not in self._embedders:
            self._embedders[key] = make_embedder(
                embedder, vggish_checkpoint=vggish_checkpoint, random_weights=random_weights, pca_params=pca_params,
                final_relu=final_relu, pad_short_clips=pad_short_clips, clap_model=clap_model, resampler=resampler,
            )  # fmt: skip
        return self._embedders[key]

    def _compute(
        self,
        predictions,
        reference_audio,
        sampling_rate=None,
        reference_sampling_rate=None,
        vggish_checkpoint=None,
        random_weights=False,
        pca_params=None,
        final_relu=False,
        embedder="vggish",
        clap_model=model_ids.CLAP,
        batch_size=64,
        cache_dir=None,
        pad_short_clips=False,
        fad_inf=False,
        fad_inf_min_n=500,
        fad_inf_steps=25,
        seed=0,
        per_clip=False,
        resampler="resampy",
    ):
        def as_clips(clips):
            return [c if isinstance(c, (str, os.PathLike)) else np.asarray(c, dtype=np.float32) for c in clips]

        audio_embedder = self._embedder(
            embedder, vggish_checkpoint, random_weights, pca_params, final_relu, pad_short_clips, clap_model, resampler
        )
        result = compute_fad(
            as_clips(predictions),
            as_clips(reference_audio),
            audio_embedder,
            sample_rate=sampling_rate,
            reference_sample_rate=reference_sampling_rate,
            batch_size=batch_size,
            cache=cache_dir,
            fad_inf=fad_inf,
            fad_inf_steps=fad_inf_steps,
            fad_inf_min_n=fad_inf_min_n,
            seed=seed,
            per_clip=per_clip,
        )
        return result.to_dict()
