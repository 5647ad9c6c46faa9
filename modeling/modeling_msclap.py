"""Microsoft CLAP (`msclap`'s 2022 model: Cnn14 + BERT) as the paper's Table 2 audio-text baseline, loadable from
msclap's checkpoint file, with the retrieval interface of `SoSRetrievalModel`.

The modules and parameter names are msclap's (`msclap/models/clap.py`, `audio.py`), so a checkpoint's
`model` state dict loads key for key; the front end (torchlibrosa's STFT as two convolutions, and the mel filter
bank) is computed here with numpy as torchlibrosa computes it, and is in every checkpoint anyway."""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init

from .configuration_msclap import MSClapConfig
from .modeling_sos import (
    RetrievalForwardMixin,
    SoSAudioFeatures,
    SoSTextFeatures,
    crop_pooled_embeds,
    global_similarity,
)
from .original_checkpoints import CheckpointSource, load_exactly, read_checkpoint, split_prefix

logger = logging.getLogger(__name__)

# msclap's weights on the Hub (`CLAPWrapper.model_repo`, `model_name["2022"]`), their SHA-256 (the Hub's LFS id) and
# the text model whose tokenizer msclap loads; core.model_ids names them too (remote code cannot import the package).
MSCLAP_CHECKPOINT = "https://huggingface.co/microsoft/msclap/resolve/main/CLAP_weights_2022.pth"
MSCLAP_CHECKPOINT_SHA256 = "5b917c47fec10547b65cf1d9096e194896fa1c2d6180536c8524289721a4c5b8"
MSCLAP_TEXT_MODEL = "bert-base-uncased"
# Keys of a msclap checkpoint this model has no place for: Cnn14's AudioSet classifier and BERT's pooler (neither
# output is part of an embedding, and parameters without a gradient would stop a DDP fine-tuning), and text-model
# buffers that newer transformers no longer save.
IGNORED_CHECKPOINT_KEYS = (
    "audio_encoder.base.fc_audioset.",
    "caption_encoder.base.pooler.",
    "caption_encoder.base.embeddings.position_ids",
    "caption_encoder.base.embeddings.token_type_ids",
)
# torchlibrosa's power_to_db: 10 log10(max(x, amin)) - 10 log10(max(amin, ref)), with ref 1 and no top_db.
AMIN = 1e-10


# ---------------------------------------------------------------------------- front end (torchlibrosa's, in numpy)


def periodic_hann(length: int) -> np.ndarray:
    """scipy's `get_window("hann", length, fftbins=True)` (which torchlibrosa takes through librosa), op for op."""
    fac = np.linspace(-np.pi, np.pi, length + 1)
    window = np.zeros(length + 1)
    for k, a in enumerate((0.5, 0.5)):
        window += a * np.cos(k * fac)
    return window[:-1]


def stft_kernels(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torchlibrosa `STFT`'s convolution weights `(n_fft // 2 + 1, 1, n_fft)`: the real and imaginary parts of the
    windowed DFT matrix, computed as torchlibrosa does (numpy complex128, then float32)."""
    x, y = np.meshgrid(np.arange(n_fft), np.arange(n_fft))
    dft = np.power(np.exp(-2 * np.pi * 1j / n_fft), x * y)
    windowed = dft[:, : n_fft // 2 + 1] * periodic_hann(n_fft)[:, None]
    real = torch.tensor(np.real(windowed).T, dtype=torch.float32)[:, None, :]
    imag = torch.tensor(np.imag(windowed).T, dtype=torch.float32)[:, None, :]
    return real, imag


def _hz_to_mel(frequency: float) -> float:
    """librosa's Slaney mel scale (linear below 1 kHz, logarithmic above)."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    if frequency >= min_log_hz:
        return min_log_hz / f_sp + np.log(frequency / min_log_hz) / (np.log(6.4) / 27.0)
    return (frequency - 0.0) / f_sp


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = (min_log_hz - 0.0) / f_sp, np.log(6.4) / 27.0
    freqs = 0.0 + f_sp * mels
    log_t = mels >= min_log_mel
    freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    return freqs


def mel_filter_bank(sampling_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> torch.Tensor:
    """`librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)` (Slaney scale and area norm, float32), transposed to
    `(n_fft // 2 + 1, n_mels)` as torchlibrosa's `melW`; librosa's operations in librosa's order."""
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sampling_rate)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    return torch.tensor(weights.T)


class FrozenKernel(nn.Module):
    """A fixed tensor under the name `weight`, where torchlibrosa has a frozen `nn.Conv1d` (same checkpoint key);
    a buffer, so it is saved and loaded but never trained."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", weight)


class STFTConvolution(nn.Module):
    """torchlibrosa's `STFT`: centred, reflect-padded frames through the DFT kernels (`conv_real`, `conv_imag`)."""

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        real, imag = stft_kernels(n_fft)
        self.conv_real, self.conv_imag = FrozenKernel(real), FrozenKernel(imag)

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.pad(waveform[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        real = F.conv1d(x, self.conv_real.weight, stride=self.hop_length)
        imag = F.conv1d(x, self.conv_imag.weight, stride=self.hop_length)
        return real[:, None].transpose(2, 3), imag[:, None].transpose(2, 3)


class PowerSpectrogram(nn.Module):
    """torchlibrosa's `Spectrogram` (power 2): `(batch, samples)` -> `(batch, 1, frames, n_fft // 2 + 1)`."""

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.stft = STFTConvolution(n_fft, hop_length)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        real, imag = self.stft(waveform)
        return real**2 + imag**2


class LogMelFilterBank(nn.Module):
    """torchlibrosa's `LogmelFilterBank` (ref 1, amin 1e-10, no top_db): power spectrogram -> dB mel spectrogram."""

    def __init__(self, config: MSClapConfig):
        super().__init__()
        self.settings = (config.sampling_rate, config.window_size, config.mel_bins, config.fmin, config.fmax)
        self.register_buffer("melW", mel_filter_bank(*self.settings))

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        mel = torch.matmul(spectrogram, self.melW)
        return 10.0 * torch.log10(torch.clamp(mel, min=AMIN)) - 10.0 * np.log10(max(AMIN, 1.0))


class ConvBlock(nn.Module):
    """PANNs' conv block: two 3x3 convolutions with batch norm and ReLU, then average pooling."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool_size: tuple[int, int]) -> torch.Tensor:
        x = F.relu_(self.bn1(self.conv1(x)))
        x = F.relu_(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool_size)


class Cnn14(nn.Module):
    """msclap's `Cnn14` (PANNs) up to its embedding: log-mel front end, `bn0` over the mel bands, six conv blocks with
    dropout 0.2, mean over frequency, max + mean over time, dropout 0.5, `fc1` + ReLU, dropout 0.5.

    The AudioSet classifier `fc_audioset` is left out: msclap computes it and discards it for the embedding."""

    def __init__(self, config: MSClapConfig):
        super().__init__()
        self.spectrogram_extractor = PowerSpectrogram(config.window_size, config.hop_size)
        self.logmel_extractor = LogMelFilterBank(config)
        self.bn0 = nn.BatchNorm2d(config.mel_bins)
        widths = [1, *config.audio_channels]
        for index in range(6):
            self.add_module(f"conv_block{index + 1}", ConvBlock(widths[index], widths[index + 1]))
        self.fc1 = nn.Linear(widths[-1], config.audio_embed_dim, bias=True)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """`(batch, samples)` at the configured rate -> `(batch, audio_embed_dim)`."""
        x = self.logmel_extractor(self.spectrogram_extractor(waveform))  # (batch, 1, frames, mel)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        for index in range(6):
            pool = (2, 2) if index < 5 else (1, 1)
            x = getattr(self, f"conv_block{index + 1}")(x, pool_size=pool)
            x = F.dropout(x, p=0.2, training=self.training)
        x = torch.mean(x, dim=3)
        x = torch.max(x, dim=2).values + torch.mean(x, dim=2)
        x = F.dropout(x, p=0.5, training=self.training)
        return F.dropout(F.relu_(self.fc1(x)), p=0.5, training=self.training)


class Projection(nn.Module):
    """msclap's `Projection`: layer_norm(e1 + dropout(linear2(gelu(e1)))) with e1 = linear1(x), no biases."""

    def __init__(self, d_in: int, d_out: int, dropout: float):
        super().__init__()
        self.linear1 = nn.Linear(d_in, d_out, bias=False)
        self.linear2 = nn.Linear(d_out, d_out, bias=False)
        self.layer_norm = nn.LayerNorm(d_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embed1 = self.linear1(x)
        return self.layer_norm(embed1 + self.drop(self.linear2(F.gelu(embed1))))


class MSClapAudioEncoder(nn.Module):
    def __init__(self, config: MSClapConfig):
        super().__init__()
        self.base = Cnn14(config)
        self.projection = Projection(config.audio_embed_dim, config.projection_dim, config.projection_dropout)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.projection(self.base(waveform))


class MSClapTextEncoder(nn.Module):
    """msclap's `TextEncoder` for BERT: the last hidden state of the first ([CLS]) token, projected. BERT's pooler,
    which msclap builds and never uses, is left out."""

    def __init__(self, config: MSClapConfig):
        super().__init__()
        self.base = AutoModel.from_config(config.text_config, add_pooling_layer=False)
        self.projection = Projection(config.text_width, config.projection_dim, config.projection_dropout)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.projection(hidden[:, 0, :])


class MSClapModel(RetrievalForwardMixin, PreTrainedModel):
    r"""Microsoft CLAP (msclap 2022) with the SoS retrieval interface, for audio-text.

    `get_audio_features` / `get_text_features` return normalised embeddings (`SoSAudioFeatures` /
    `SoSTextFeatures`), `similarity` their cosines, `scale()` msclap's exp(logit_scale), and
    `forward(..., return_loss=True)` the symmetric InfoNCE loss of the SoS training loop. `embed_audio` /
    `embed_text` give msclap's own (unnormalised) embeddings. Inputs come from `MSClapProcessor`.

    Example (online):

    ```python
    >>> model = MSClapModel.from_original_checkpoint()  # CLAP_weights_2022.pth from the Hub
    >>> processor = MSClapProcessor.from_encoders()  # bert-base-uncased's tokenizer
    ```
    """

    config_class = MSClapConfig
    config: MSClapConfig
    base_model_prefix = "msclap"
    main_input_name = "input_values"
    input_modalities = ("audio", "text")
    # The pretrained parts (the rest, the logit scale, is msclap's too but trained at the new layers' rate).
    encoder_parameter_prefixes = ("audio_encoder.", "caption_encoder.")

    def __init__(self, config: MSClapConfig):
        super().__init__(config)
        self.audio_encoder = MSClapAudioEncoder(config)
        self.caption_encoder = MSClapTextEncoder(config)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, STFTConvolution):
            real, imag = stft_kernels(module.n_fft)
            init.copy_(module.conv_real.weight, real)
            init.copy_(module.conv_imag.weight, imag)
        elif isinstance(module, LogMelFilterBank):
            init.copy_(module.melW, mel_filter_bank(*module.settings))
        elif isinstance(module, MSClapModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)

    # ------------------------------------------------------------------ the original checkpoint

    def load_original_checkpoint(
        self,
        checkpoint: CheckpointSource = MSCLAP_CHECKPOINT,
        *,
        text_model: str | None = MSCLAP_TEXT_MODEL,
        **read_kwargs,
    ) -> None:
        """Load a msclap checkpoint (`torch.load(file)["model"]`, as `CLAPWrapper.load_clap` reads it).

        Every key of this model must be in it, except what `IGNORED_CHECKPOINT_KEYS` names (msclap itself loads
        with `strict=False`, which would silently keep random or Hub weights for a key that is missing or
        renamed). One exception, as msclap behaves: a checkpoint without any text-model key
        (`caption_encoder.base.*`) keeps the pretrained text model `text_model` (Hub id or folder).

        Args:
            checkpoint: a path, an ``http(s)://`` URL (default: the 2022 weights on the Hub) or a loaded mapping.
            text_model: where the text model's weights come from when the checkpoint has none.
            read_kwargs: `sha256`, `weights_only`, `progress` of `original_checkpoints.read_checkpoint`;
                the default URL is checked against `MSCLAP_CHECKPOINT_SHA256`.

        Raises:
            FileNotFoundError: no such file, or the download failed.
            ValueError: not a msclap checkpoint, or keys or shapes that do not fit this configuration.
        """
        if checkpoint == MSCLAP_CHECKPOINT:
            read_kwargs.setdefault("sha256", MSCLAP_CHECKPOINT_SHA256)
        loaded = read_checkpoint(checkpoint, **read_kwargs)
        name = checkpoint if not isinstance(checkpoint, dict) else "the state dict"
        if not isinstance(loaded.get("model"), dict):
            raise ValueError(f"msclap checkpoint {name!s} has no 'model' state dict (keys: {sorted(loaded)[:8]})")
        state = {k: v for k, v in loaded["model"].items() if not k.startswith(IGNORED_CHECKPOINT_KEYS)}
        if not split_prefix(state, "caption_encoder.base."):
            if text_model is None:
                raise ValueError(f"msclap checkpoint {name!s} holds no text model weights and text_model is None")
            logger.warning(
                "msclap checkpoint %s holds no text model weights: using %s's, as msclap does", name, text_model
            )
            pretrained = AutoModel.from_pretrained(text_model, add_pooling_layer=False)
            self.caption_encoder.base.load_state_dict(pretrained.state_dict())
            state.update({f"caption_encoder.base.{k}": v for k, v in self.caption_encoder.base.state_dict().items()})
        load_exactly(self, state, f"msclap checkpoint {name!s}")

    @classmethod
    def from_original_checkpoint(
        cls,
        checkpoint: CheckpointSource = MSCLAP_CHECKPOINT,
        *,
        text_model: str | None = MSCLAP_TEXT_MODEL,
        weights_only: bool = True,
        **config_kwargs: object,
    ) -> MSClapModel:
        """The paper's CLAP baseline before fine-tuning, from a msclap 2022 checkpoint (path, URL or mapping).

        The text model is built from `config_kwargs["text_config"]` (default `BertConfig()`, bert-base-uncased's
        architecture, so nothing is downloaded for it) and filled from the checkpoint; `text_model` is used only
        when the checkpoint has no text weights (see `load_original_checkpoint`). `weights_only=False` only for a
        trusted file whose pickle holds more than tensors (see `original_checkpoints.read_checkpoint`)."""
        model = cls(MSClapConfig(**config_kwargs))
        model.load_original_checkpoint(checkpoint, text_model=text_model, weights_only=weights_only)
        return model

    # ------------------------------------------------------------------ retrieval interface

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), msclap's `compute_similarity` factor (not clamped, as msclap does not clamp it)."""
        return self.logit_scale.exp()

    def embed_audio(self, input_values: torch.Tensor) -> torch.Tensor:
        """`(batch, samples)` waveforms at 44.1 kHz -> msclap's audio embeddings `(batch, 1024)`, not normalised
        (`CLAPWrapper._get_audio_embeddings`)."""
        if input_values.dim() != 2:
            raise ValueError(f"input_values must have shape (batch, samples), got {tuple(input_values.shape)}")
        return self.audio_encoder(input_values)

    def embed_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens -> msclap's text embeddings `(batch, 1024)`, not normalised (`CLAPWrapper._get_text_embeddings`)."""
        return self.caption_encoder(input_ids, attention_mask)

    def get_audio_features(self, input_values: torch.Tensor) -> SoSAudioFeatures:
        """`(batch, samples)` or `(batch, crops, samples)` -> one normalised vector per story (with several crops,
        the normalised mean of the crops' normalised embeddings)."""
        return SoSAudioFeatures(audio_embeds=crop_pooled_embeds(input_values, "samples", self.embed_audio))

    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> SoSTextFeatures:
        """msclap's text embedding, normalised."""
        embeds = F.normalize(self.embed_text(input_ids, attention_mask), dim=-1)
        return SoSTextFeatures(text_embeds=embeds, attention_mask=attention_mask)

    def similarity(
        self, audio_features: SoSAudioFeatures, other_features: SoSTextFeatures, **_: object
    ) -> torch.Tensor:
        """Cosine similarity, `(num_audio, num_text)`: msclap's `compute_similarity` divided by `scale()` (block
        options are accepted and unused)."""
        return global_similarity(audio_features, other_features, audio_text_model="CLAP")


__all__ = [
    "MSCLAP_CHECKPOINT",
    "MSCLAP_CHECKPOINT_SHA256",
    "MSCLAP_TEXT_MODEL",
    "Cnn14",
    "MSClapModel",
    "mel_filter_bank",
    "stft_kernels",
]
