# This file is a port of parts of two packages; their notices follow, as their licences ask.
#
# bytesep 0.1.1 (https://github.com/bytedance/music_source_separation, files bytesep/models/resunet_subbandtime.py,
# bytesep/models/pytorch_modules.py, bytesep/models/subband_tools/pqmf.py, bytesep/separator.py):
#
#   Copyright 2021 ByteDance
#
#   Licensed under the Apache License, Version 2.0 (the "License");
#   you may not use this file except in compliance with the License.
#   You may obtain a copy of the License at
#
#       http://www.apache.org/licenses/LICENSE-2.0
#
#   Unless required by applicable law or agreed to in writing, software
#   distributed under the License is distributed on an "AS IS" BASIS,
#   WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
#   See the License for the specific language governing permissions and
#   limitations under the License.
#
# torchlibrosa 0.1.0 (https://github.com/qiuqiangkong/torchlibrosa, file torchlibrosa/stft.py: STFT, ISTFT, magphase):
#
#   The MIT License
#
#   Copyright (c) 2018-2021 Qiuqiang Kong
#
#   Permission is hereby granted, free of charge, to any person obtaining a copy
#   of this software and associated documentation files (the "Software"), to deal
#   in the Software without restriction, including without limitation the rights
#   to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
#   copies of the Software, and to permit persons to whom the Software is
#   furnished to do so, subject to the following conditions:
#
#   The above copyright notice and this permission notice shall be included in
#   all copies or substantial portions of the Software.
#
#   THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
#   IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
#   FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
#   AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
#   LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
#   OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN
#   THE SOFTWARE.
#
# Changes from the originals: only what separation needs (no training code, no ONNX path, no other models);
# the STFT window from scipy (librosa's get_window calls it); the PQMF filters are not read from .mat files that
# bytesep downloads when a model is built, they come from the checkpoint, which holds them; type hints, comments.
"""bytesep's ResUNet143_Subbandtime and its separation procedure, as the paper ran them (section 3.2).

Sound of Story separated speech from music and effects with ``python -m bytesep separate
--source_type accompaniment``: bytesep 0.1.1's default model, ``ResUNet143_Subbandtime`` trained on MUSDB18 to
keep the accompaniment (everything but the singing voice), with the checkpoint
``resunet143_subbtandtime_accompaniment_16.4dB_500k_steps_v2.pth`` (Zenodo record 5804160, 414,046,363 bytes).
bytesep cannot be installed beside this package (it pins torch 1.7.1 and numpy 1.18.5, which have no Python 3.11
build), so the model and the procedure are ported here, module for module, so that the original checkpoint,
``{"step": int, "model": state_dict}``, loads strictly into :class:`ResUNet143_Subbandtime` and gives what
bytesep gives (tested against bytesep's own inference on a random-weight checkpoint in that format,
``tests/golden/bytesep``).

The procedure (:func:`separate`, bytesep's ``Separator``): 44.1 kHz stereo, the input zero-padded at the end to
a whole number of 30 s segments, cut into 30 s windows at a 15 s hop, each window through the model alone
(batch 1), and the windows stitched: the first window's first three quarters, the middle half of each window
after it, the last window's last three quarters; the result cut to the input's length. Neither the input nor the
output is normalised.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sound_of_story.core import model_ids
from sound_of_story.core.checkpoint_files import checkpoint_file

SAMPLE_RATE = 44100  # bytesep's MUSDB18 models (the config's sample_rate)
CHANNELS = 2  # input_channels = output_channels = 2 in the accompaniment config
SEGMENT_SECONDS = 30.0  # separate.py: segment_seconds = 30, batch_size = 1
CHECKPOINT_URL = model_ids.BYTESEP_CHECKPOINT
CHECKPOINT_FILE = os.path.basename(urlparse(CHECKPOINT_URL).path)  # "subbtandtime": bytesep's own spelling
CHECKPOINT_BYTES = model_ids.BYTESEP_CHECKPOINT_BYTES  # bytesep's __main__.get_paths asserts this size


# ----------------------------------------------------------------------------------------
# torchlibrosa's STFT and ISTFT (convolutions with DFT matrices; their weights are in the checkpoint)
# ----------------------------------------------------------------------------------------


def _hann(length: int) -> np.ndarray:
    from scipy.signal import get_window

    return get_window("hann", length, fftbins=True)  # librosa.filters.get_window("hann", n, fftbins=True)


def _dft_matrix(n: int, sign: float) -> np.ndarray:
    x, y = np.meshgrid(np.arange(n), np.arange(n))
    return np.power(np.exp(sign * 2 * np.pi * 1j / n), x * y)


class STFT(nn.Module):
    """torchlibrosa.stft.STFT: ``(batch, samples)`` to real and imaginary parts ``(batch, 1, frames, n_fft//2+1)``."""

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        bins = n_fft // 2 + 1
        self.conv_real = nn.Conv1d(1, bins, kernel_size=n_fft, stride=hop_length, bias=False)
        self.conv_imag = nn.Conv1d(1, bins, kernel_size=n_fft, stride=hop_length, bias=False)
        windowed = _dft_matrix(n_fft, -1.0)[:, :bins] * _hann(n_fft)[:, None]
        self.conv_real.weight.data = torch.Tensor(np.real(windowed).T)[:, None, :]
        self.conv_imag.weight.data = torch.Tensor(np.imag(windowed).T)[:, None, :]
        for param in self.parameters():
            param.requires_grad = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.pad(x[:, None, :], pad=(self.n_fft // 2, self.n_fft // 2), mode="reflect")
        real = self.conv_real(x)[:, None, :, :].transpose(2, 3)
        imag = self.conv_imag(x)[:, None, :, :].transpose(2, 3)
        return real, imag


class ISTFT(nn.Module):
    """torchlibrosa.stft.ISTFT (not the ONNX path): overlap-add of inverse DFTs, divided by the window's sum."""

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft = self.win_length = n_fft
        self.hop_length = hop_length
        window = _hann(n_fft)
        inverse = _dft_matrix(n_fft, 1.0) / n_fft
        self.conv_real = nn.Conv1d(n_fft, n_fft, kernel_size=1, bias=False)
        self.conv_imag = nn.Conv1d(n_fft, n_fft, kernel_size=1, bias=False)
        self.conv_real.weight.data = torch.Tensor(np.real(inverse * window[None, :]).T)[:, :, None]
        self.conv_imag.weight.data = torch.Tensor(np.imag(inverse * window[None, :]).T)[:, :, None]
        self.register_buffer("ola_window", torch.Tensor(window**2))
        for param in self.parameters():
            param.requires_grad = False

    def forward(self, real_stft: torch.Tensor, imag_stft: torch.Tensor, length: int) -> torch.Tensor:
        frames = real_stft.shape[2]
        real_stft = real_stft[:, 0, :, :].transpose(1, 2)
        imag_stft = imag_stft[:, 0, :, :].transpose(1, 2)
        full_real = torch.cat((real_stft, torch.flip(real_stft[:, 1:-1, :], dims=[1])), dim=1)
        full_imag = torch.cat((imag_stft, -torch.flip(imag_stft[:, 1:-1, :], dims=[1])), dim=1)
        frames_signal = self.conv_real(full_real) - self.conv_imag(full_imag)
        samples = (frames - 1) * self.hop_length + self.win_length
        y = F.fold(
            frames_signal, output_size=(1, samples), kernel_size=(1, self.win_length), stride=(1, self.hop_length)
        )
        y = y[:, 0, 0, :]
        window_sum = F.fold(
            self.ola_window[None, :, None].repeat(1, 1, frames),
            output_size=(1, samples),
            kernel_size=(1, self.win_length),
            stride=(1, self.hop_length),
        ).squeeze()
        y = y / torch.clamp(window_sum, 1e-11, np.inf)[None, :]
        start = self.n_fft // 2
        return y[:, start : start + length]


def magphase(real: torch.Tensor, imag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchlibrosa.stft.magphase: magnitude, cosine and sine of the phase."""
    mag = (real**2 + imag**2) ** 0.5
    cos = real / torch.clamp(mag, 1e-10, np.inf)
    sin = imag / torch.clamp(mag, 1e-10, np.inf)
    return mag, cos, sin


# ----------------------------------------------------------------------------------------
# bytesep's PQMF sub-band filter bank (4 bands, 64 taps)
# ----------------------------------------------------------------------------------------


class PQMF(nn.Module):
    """bytesep.models.subband_tools.pqmf.PQMF. Its analysis and synthesis filters come from the checkpoint (bytesep
    reads them from ``f_4_64.mat`` and ``h_4_64.mat``, which it downloads when a model is built, and then loads the
    checkpoint over them): a model that has not loaded one has zero filters."""

    def __init__(self, subbands: int = 4, taps: int = 64):
        super().__init__()
        self.N, self.M = subbands, taps
        self.pad_samples = 64
        self.ana_conv_filter = nn.Conv1d(1, subbands, kernel_size=taps, stride=subbands, bias=False)
        self.ana_pad = nn.ConstantPad1d((taps - subbands, 0), 0)
        self.syn_pad = nn.ConstantPad1d((0, taps // subbands - 1), 0)
        self.syn_conv_filter = nn.Conv1d(subbands, subbands, kernel_size=taps // subbands, stride=1, bias=False)
        for param in self.parameters():
            param.data.zero_()
            param.requires_grad = False

    def _analysis_channel(self, x: torch.Tensor) -> torch.Tensor:
        return self.ana_conv_filter(self.ana_pad(x))

    def _synthesis_channel(self, x: torch.Tensor) -> torch.Tensor:
        out = self.syn_conv_filter(self.syn_pad(x)).permute(0, 2, 1)
        return torch.reshape(out, (out.shape[0], 1, -1))

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) to (batch, channels * subbands, (samples + 64) / subbands)."""
        x = F.pad(x, (0, self.pad_samples))
        return torch.cat([self._analysis_channel(x[:, i : i + 1, :]) for i in range(x.shape[1])], dim=1)

    def synthesis(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, channels * subbands, sub-band samples) to (batch, channels, samples)."""
        out = torch.cat(
            [self._synthesis_channel(x[:, i : i + self.N, :]) for i in range(0, x.shape[1], self.N)], dim=1
        )
        return out[..., : -self.pad_samples]


# ----------------------------------------------------------------------------------------
# bytesep's ResUNet143_Subbandtime (module names as bytesep's, so its checkpoints load strictly)
# ----------------------------------------------------------------------------------------


class ConvBlockRes(nn.Module):
    """Residual block: (BN, leaky ReLU 0.01, 3x3 conv) twice, plus the input (a 1x1 conv when channels change)."""

    def __init__(self, in_channels: int, out_channels: int, momentum: float = 0.01):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, momentum=momentum)
        self.bn2 = nn.BatchNorm2d(out_channels, momentum=momentum)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=(3, 3), padding=[1, 1], bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=(3, 3), padding=[1, 1], bias=False)
        self.is_shortcut = in_channels != out_channels
        if self.is_shortcut:
            self.shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=(1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(F.leaky_relu_(self.bn1(x), negative_slope=0.01))
        y = self.conv2(F.leaky_relu_(self.bn2(y), negative_slope=0.01))
        return (self.shortcut(x) if self.is_shortcut else x) + y


class EncoderBlockRes4B(nn.Module):
    """Four residual blocks, then average pooling by ``downsample`` (returns the pooled and the unpooled maps)."""

    def __init__(self, in_channels: int, out_channels: int, downsample: tuple[int, int]):
        super().__init__()
        self.conv_block1 = ConvBlockRes(in_channels, out_channels)
        self.conv_block2 = ConvBlockRes(out_channels, out_channels)
        self.conv_block3 = ConvBlockRes(out_channels, out_channels)
        self.conv_block4 = ConvBlockRes(out_channels, out_channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoder = self.conv_block4(self.conv_block3(self.conv_block2(self.conv_block1(x))))
        return F.avg_pool2d(encoder, kernel_size=self.downsample), encoder


class DecoderBlockRes4B(nn.Module):
    """BN, ReLU and a transposed convolution by ``upsample``; the skip connection concatenated; four residual blocks."""

    def __init__(self, in_channels: int, out_channels: int, upsample: tuple[int, int]):
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=upsample, stride=upsample, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels, momentum=0.01)
        self.conv_block2 = ConvBlockRes(out_channels * 2, out_channels)
        self.conv_block3 = ConvBlockRes(out_channels, out_channels)
        self.conv_block4 = ConvBlockRes(out_channels, out_channels)
        self.conv_block5 = ConvBlockRes(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat((self.conv1(F.relu_(self.bn1(x))), skip), dim=1)
        return self.conv_block5(self.conv_block4(self.conv_block3(self.conv_block2(x))))


class ResUNet143_Subbandtime(nn.Module):  # noqa: N801 - bytesep's class name, kept for its checkpoints
    """bytesep.models.resunet_subbandtime.ResUNet143_Subbandtime: a residual U-Net on the magnitude spectrograms of 4
    PQMF sub-bands per channel, predicting per sub-band a magnitude mask, a phase rotation and a linear magnitude.

    ``forward({"waveform": (batch, input_channels, samples)})`` returns ``{"waveform": (batch, target_sources_num *
    output_channels, samples)}``; ``samples`` must be a multiple of 4 (the sub-band decimation).
    """

    def __init__(self, input_channels: int = CHANNELS, output_channels: int = CHANNELS, target_sources_num: int = 1):
        super().__init__()
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.target_sources_num = target_sources_num
        window_size, hop_size = 512, 110  # 2048 // 4 and 441 // 4: the full-band STFT's grid in each sub-band
        self.subbands_num = 4
        self.K = 4  # outputs per sub-band and channel: |M|, cos of M's phase, sin of M's phase, Q
        self.time_downsample_ratio = 2**5  # five encoder blocks halve the time axis
        self.pqmf = PQMF(self.subbands_num, 64)
        self.stft = STFT(window_size, hop_size)
        self.istft = ISTFT(window_size, hop_size)
        self.bn0 = nn.BatchNorm2d(window_size // 2 + 1, momentum=0.01)
        self.encoder_block1 = EncoderBlockRes4B(input_channels * self.subbands_num, 32, (2, 2))
        self.encoder_block2 = EncoderBlockRes4B(32, 64, (2, 2))
        self.encoder_block3 = EncoderBlockRes4B(64, 128, (2, 2))
        self.encoder_block4 = EncoderBlockRes4B(128, 256, (2, 2))
        self.encoder_block5 = EncoderBlockRes4B(256, 384, (2, 2))
        self.encoder_block6 = EncoderBlockRes4B(384, 384, (1, 2))
        self.conv_block7a = EncoderBlockRes4B(384, 384, (1, 1))
        self.conv_block7b = EncoderBlockRes4B(384, 384, (1, 1))
        self.conv_block7c = EncoderBlockRes4B(384, 384, (1, 1))
        self.conv_block7d = EncoderBlockRes4B(384, 384, (1, 1))
        self.decoder_block1 = DecoderBlockRes4B(384, 384, (1, 2))
        self.decoder_block2 = DecoderBlockRes4B(384, 384, (2, 2))
        self.decoder_block3 = DecoderBlockRes4B(384, 256, (2, 2))
        self.decoder_block4 = DecoderBlockRes4B(256, 128, (2, 2))
        self.decoder_block5 = DecoderBlockRes4B(128, 64, (2, 2))
        self.decoder_block6 = DecoderBlockRes4B(64, 32, (2, 2))
        self.after_conv_block1 = EncoderBlockRes4B(32, 32, (1, 1))
        self.after_conv2 = nn.Conv2d(
            32, target_sources_num * output_channels * self.K * self.subbands_num, kernel_size=(1, 1), bias=True
        )

    def _spectrogram_phase(self, x: torch.Tensor, eps: float = 1e-10):
        """bytesep's Base.wav_to_spectrogram_phase: magnitude, cos and sin of the STFT of each channel."""
        batch, channels, samples = x.shape
        real, imag = self.stft(x.reshape(batch * channels, samples))
        mag = torch.clamp(real**2 + imag**2, eps, np.inf) ** 0.5
        cos, sin = real / mag, imag / mag
        _, _, frames, bins = mag.shape
        return tuple(v.reshape(batch, channels, frames, bins) for v in (mag, cos, sin))

    def _feature_maps_to_wav(self, x, sp, sin_in, cos_in, audio_length: int) -> torch.Tensor:
        batch, _, frames, bins = x.shape
        x = x.reshape(batch, self.target_sources_num, self.output_channels, self.K, frames, bins)
        mask_mag = torch.sigmoid(x[:, :, :, 0, :, :])
        _, mask_cos, mask_sin = magphase(torch.tanh(x[:, :, :, 1, :, :]), torch.tanh(x[:, :, :, 2, :, :]))
        linear_mag = torch.tanh(x[:, :, :, 3, :, :])
        # the output's phase is the input's rotated by the mask's: cos(a + b), sin(a + b)
        out_cos = cos_in[:, None, :, :, :] * mask_cos - sin_in[:, None, :, :, :] * mask_sin
        out_sin = sin_in[:, None, :, :, :] * mask_cos + cos_in[:, None, :, :, :] * mask_sin
        out_mag = F.relu_(sp[:, None, :, :, :] * mask_mag + linear_mag)
        shape = (batch * self.target_sources_num * self.output_channels, 1, frames, bins)
        wave = self.istft((out_mag * out_cos).reshape(shape), (out_mag * out_sin).reshape(shape), audio_length)
        return wave.reshape(batch, self.target_sources_num * self.output_channels, audio_length)

    def forward(self, input_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        subband_x = self.pqmf.analysis(input_dict["waveform"])
        mag, cos_in, sin_in = self._spectrogram_phase(subband_x)
        x = self.bn0(mag.transpose(1, 3)).transpose(1, 3)  # batch norm per frequency bin
        origin_len = x.shape[2]
        pad_len = int(np.ceil(x.shape[2] / self.time_downsample_ratio)) * self.time_downsample_ratio - origin_len
        x = F.pad(x, pad=(0, 0, 0, pad_len))
        x = x[..., 0 : x.shape[-1] - 1]  # 257 bins to 256, halved six times
        x1_pool, x1 = self.encoder_block1(x)
        x2_pool, x2 = self.encoder_block2(x1_pool)
        x3_pool, x3 = self.encoder_block3(x2_pool)
        x4_pool, x4 = self.encoder_block4(x3_pool)
        x5_pool, x5 = self.encoder_block5(x4_pool)
        x6_pool, x6 = self.encoder_block6(x5_pool)
        x_center, _ = self.conv_block7a(x6_pool)
        x_center, _ = self.conv_block7b(x_center)
        x_center, _ = self.conv_block7c(x_center)
        x_center, _ = self.conv_block7d(x_center)
        x = self.decoder_block1(x_center, x6)
        x = self.decoder_block2(x, x5)
        x = self.decoder_block3(x, x4)
        x = self.decoder_block4(x, x3)
        x = self.decoder_block5(x, x2)
        x = self.decoder_block6(x, x1)
        x, _ = self.after_conv_block1(x)
        x = self.after_conv2(x)
        x = F.pad(x, pad=(0, 1))[:, :, 0:origin_len, :]  # back to 257 bins and the unpadded frames
        audio_length = subband_x.shape[2]
        subbands = torch.stack(
            [
                self._feature_maps_to_wav(
                    x[:, j :: self.subbands_num],
                    mag[:, j :: self.subbands_num],
                    sin_in[:, j :: self.subbands_num],
                    cos_in[:, j :: self.subbands_num],
                    audio_length,
                )
                for j in range(self.subbands_num)
            ],
            dim=2,
        )
        subbands = subbands.reshape(
            subbands.shape[0], self.target_sources_num * self.output_channels * self.subbands_num, audio_length
        )
        return {"waveform": self.pqmf.synthesis(subbands)}


# ----------------------------------------------------------------------------------------
# Checkpoints and the separation procedure
# ----------------------------------------------------------------------------------------


def checkpoint_path(source: str | os.PathLike, progress: bool = False) -> Path:
    """The local file of a bytesep checkpoint: ``source`` itself, or a URL's download in torch hub's checkpoint folder
    (downloaded once; a later call finds it there). The official checkpoint's size is checked, as bytesep does.

    Raises ``FileNotFoundError`` naming the path or URL when there is no such file or the download fails, and
    ``ValueError`` when the official file has another size (a partial download).
    """
    official = os.path.basename(urlparse(str(source)).path) == CHECKPOINT_FILE
    return checkpoint_file(
        source, what="bytesep checkpoint", size=CHECKPOINT_BYTES if official else None, progress=progress
    )


def load_model(source: str | os.PathLike | Mapping) -> ResUNet143_Subbandtime:
    """A :class:`ResUNet143_Subbandtime` (2 channels in and out, one target source) in eval mode, from a checkpoint in
    bytesep's format (``{"step": int, "model": state_dict}``, as its training saves it and ``separate.py`` reads it;
    a bare state dict is accepted too) given as a path, a URL or a loaded mapping. The state dict must fit exactly.

    Raises ``FileNotFoundError`` (see :func:`checkpoint_path`) or ``ValueError`` naming the file when it is not such a
    checkpoint.
    """
    what = "the checkpoint" if isinstance(source, Mapping) else str(source)
    if isinstance(source, Mapping):
        loaded = source
    else:
        path = checkpoint_path(source)
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises UnpicklingError, RuntimeError or EOFError for foreign files
            raise ValueError(f"{source} is not a torch checkpoint that holds only tensors: {err}") from None
    state = loaded.get("model", loaded) if isinstance(loaded, Mapping) else None
    if not isinstance(state, Mapping):
        raise ValueError(
            f"{what} holds no state dict (bytesep's checkpoints are {{'step': ..., 'model': state_dict}})"
        )
    model = ResUNet143_Subbandtime()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or shapes:
        raise ValueError(
            f"{what} is not a ResUNet143_Subbandtime checkpoint with 2 channels and one source (bytesep's MUSDB18 "
            f"accompaniment model): missing {missing[:5]}, unexpected {unexpected[:5]}, other shapes {shapes[:5]}"
        )
    model.load_state_dict(dict(state), strict=True)
    return model.eval()


def _deframe(segments: np.ndarray) -> np.ndarray:
    """bytesep's Separator.deframe: the windows' middle halves (the first's first and the last's last quarter too)."""
    count, _, length = segments.shape
    if count == 1:
        return segments[0]
    quarter, three_quarters = length // 4, 3 * length // 4
    parts = [segments[0, :, :three_quarters]]
    parts += [segments[i, :, quarter:three_quarters] for i in range(1, count - 1)]
    parts.append(segments[-1, :, quarter:])
    return np.concatenate(parts, axis=-1)


def separate(
    model: nn.Module, audio: np.ndarray, segment_samples: int = int(SEGMENT_SECONDS * SAMPLE_RATE), batch_size: int = 1
) -> np.ndarray:
    """bytesep's ``Separator.separate``: the model's output for ``audio`` ((channels, samples), at the model's rate),
    in windows of ``segment_samples`` at half that hop, stitched; (output channels, samples) float32."""
    if segment_samples <= 0 or segment_samples % 4:
        raise ValueError(f"the bytesep segment must be a positive multiple of 4 samples, got {segment_samples}")
    audio = np.asarray(audio, dtype=np.float32)
    channels, samples = audio.shape
    padded = np.zeros((channels, -(-samples // segment_samples) * segment_samples), dtype=np.float32)
    padded[:, :samples] = audio
    hop = segment_samples // 2
    starts = range(0, padded.shape[1] - segment_samples + 1, hop)
    segments = np.stack([padded[:, s : s + segment_samples] for s in starts])
    outputs = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(segments), batch_size):
            batch = torch.from_numpy(segments[i : i + batch_size])
            outputs.append(model({"waveform": batch})["waveform"].cpu().numpy())
    return _deframe(np.concatenate(outputs))[:, :samples]


__all__ = [
    "CHECKPOINT_BYTES",
    "CHECKPOINT_FILE",
    "CHECKPOINT_URL",
    "ISTFT",
    "PQMF",
    "ResUNet143_Subbandtime",
    "SAMPLE_RATE",
    "SEGMENT_SECONDS",
    "STFT",
    "checkpoint_path",
    "load_model",
    "separate",
]
