"""Background sound per scene category, synthesised from noise, tones and events.

Every ``synth_<category>(rng, n)`` returns ``n`` samples of stereo sound, a ``(2, n)`` float64
array of unit RMS, wide (left and right are not one centred image) so that the centre-panned
dialogue stands apart from it, as in a film mix.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
from scipy import fft, signal

SAMPLE_RATE = 44_100
FilterType = Literal["low", "high", "band"]


def db_to_gain(x: float) -> float:
    """The amplitude factor of ``x`` decibels."""
    return 10.0 ** (x / 20.0)


def rms(x: np.ndarray) -> float:
    """Root mean square over every sample and channel (0 for an empty array)."""
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def _unit_rms(x: np.ndarray) -> np.ndarray:
    r = rms(x)
    return x / r if r > 0 else x


def _colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    # Drawn at a length whose FFT is fast (scene lengths often have large prime factors, which made
    # the transform most of a clip's sound time), then cut to n samples.
    m = fft.next_fast_len(n, real=True)
    spectrum = fft.rfft(rng.standard_normal(m))
    freqs = fft.rfftfreq(m)
    freqs[0] = freqs[1] if m > 1 else 1.0
    spectrum *= freqs ** (-exponent / 2.0)
    return _unit_rms(fft.irfft(spectrum, m)[:n])


def _filter(x: np.ndarray, btype: FilterType, cutoff, order: int = 4) -> np.ndarray:
    sos = signal.butter(order, cutoff, btype=btype, fs=SAMPLE_RATE, output="sos")
    return signal.sosfilt(sos, x, axis=-1)


def _pan(mono: np.ndarray, position) -> np.ndarray:
    """Constant-power pan; ``position`` in [-1 (left), 1 (right)], scalar or per sample."""
    angle = (np.asarray(position, dtype=np.float64) + 1.0) * (math.pi / 4.0)
    return np.stack([mono * np.cos(angle), mono * np.sin(angle)])


def _stereo_bed(rng: np.random.Generator, n: int, make: Callable[[], np.ndarray], common: float = 0.25) -> np.ndarray:
    """A wide stereo bed: mostly independent left/right noise with a small shared part."""
    shared = make()
    left = math.sqrt(1 - common) * make() + math.sqrt(common) * shared
    right = math.sqrt(1 - common) * make() + math.sqrt(common) * shared
    return np.stack([left, right])


def _add(out: np.ndarray, event: np.ndarray, start: int) -> None:
    """Add a (2, m) event into ``out`` at sample ``start``, cropped to the buffer."""
    end = min(out.shape[1], start + event.shape[1])
    if start < end:
        out[:, start:end] += event[:, : end - start]


def _times(n: int) -> np.ndarray:
    return np.arange(n) / SAMPLE_RATE


def _sweep(f_start: float, f_end: float, n: int) -> np.ndarray:
    freq = np.linspace(f_start, f_end, n)
    return np.sin(2 * math.pi * np.cumsum(freq) / SAMPLE_RATE)


def _midi(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _pluck(freq: float, dur: float, brightness: float = 1.0) -> np.ndarray:
    t = _times(int(dur * SAMPLE_RATE))
    tone = sum(np.sin(2 * math.pi * freq * k * t) * np.exp(-t * (3 + 2.5 * k / brightness)) / k for k in range(1, 7))
    return tone * np.minimum(1.0, t * 400)  # 2.5 ms attack, no click


def _kick(dur: float = 0.3) -> np.ndarray:
    t = _times(int(dur * SAMPLE_RATE))
    freq = 48 + 80 * np.exp(-t * 30)
    return np.sin(2 * math.pi * np.cumsum(freq) / SAMPLE_RATE) * np.exp(-t * 11)


# ----------------------------------------------------------------------------------------
# One function per category
# ----------------------------------------------------------------------------------------


def synth_rain(rng: np.random.Generator, n: int) -> np.ndarray:
    bed = _stereo_bed(rng, n, lambda: _filter(rng.standard_normal(n), "band", [900, 9000]))
    bed *= 1 + 0.15 * _filter(rng.standard_normal(n), "low", 8)[None]
    out = _unit_rms(bed)
    drops = np.zeros((2, n))
    for start in np.sort(rng.integers(0, n, size=int(25 * n / SAMPLE_RATE))):
        m = int(0.02 * SAMPLE_RATE)
        t = _times(m)
        drop = np.sin(2 * math.pi * rng.uniform(2500, 6000) * t) * np.exp(-t * 300) * rng.uniform(0.5, 2)
        _add(drops, _pan(drop, rng.uniform(-0.9, 0.9)), int(start))
    return _unit_rms(out + 0.4 * _unit_rms(drops))


def synth_sea(rng: np.random.Generator, n: int) -> np.ndarray:
    bed = _stereo_bed(rng, n, lambda: _filter(_colored_noise(rng, n, 1.5), "low", 1400))
    t = _times(n)
    period = rng.uniform(6.0, 9.0)
    phase = rng.uniform(0, 2 * math.pi)
    swell_l = 0.25 + (0.5 + 0.5 * np.sin(2 * math.pi * t / period + phase)) ** 2
    swell_r = 0.25 + (0.5 + 0.5 * np.sin(2 * math.pi * t / period + phase + 0.9)) ** 2
    return _unit_rms(bed * np.stack([swell_l, swell_r]))


def synth_forest_birds(rng: np.random.Generator, n: int) -> np.ndarray:
    out = 0.35 * _unit_rms(_stereo_bed(rng, n, lambda: _filter(_colored_noise(rng, n, 1.0), "band", [200, 3000])))
    birds = np.zeros((2, n))
    t0 = rng.uniform(0, 0.8)
    while t0 * SAMPLE_RATE < n:
        pos = rng.choice([-0.8, -0.5, 0.5, 0.8])
        base = rng.uniform(2500, 4500)
        for k in range(int(rng.integers(3, 7))):
            m = int(rng.uniform(0.06, 0.16) * SAMPLE_RATE)
            chirp = _sweep(base * rng.uniform(1.1, 1.4), base * rng.uniform(0.8, 0.95), m)
            chirp = (chirp + 0.3 * _sweep(2 * base, 1.7 * base, m)) * np.sin(np.linspace(0, math.pi, m)) ** 2
            _add(birds, _pan(chirp, pos), int((t0 + 0.2 * k) * SAMPLE_RATE))
        t0 += rng.uniform(1.0, 2.2)
    return _unit_rms(out + _unit_rms(birds))


def synth_city_traffic(rng: np.random.Generator, n: int) -> np.ndarray:
    out = 0.6 * _unit_rms(_stereo_bed(rng, n, lambda: _filter(_colored_noise(rng, n, 2.0), "low", 700)))
    cars = np.zeros((2, n))
    t0 = rng.uniform(0, 2)
    while t0 * SAMPLE_RATE < n:
        dur = rng.uniform(3.5, 6.0)
        m = int(dur * SAMPLE_RATE)
        t = _times(m)
        f0 = rng.uniform(60, 110) * (1 - 0.06 * np.tanh((t - dur / 2) / 0.6))  # Doppler
        phase = 2 * math.pi * np.cumsum(f0) / SAMPLE_RATE
        engine = sum(np.sin(k * phase) / k for k in range(1, 9)) + 0.3 * _filter(
            rng.standard_normal(m), "band", [300, 2500]
        )
        engine *= np.exp(-(((t - dur / 2) / (dur / 5)) ** 2))
        direction = rng.choice([-1.0, 1.0])
        _add(cars, _pan(engine, direction * np.linspace(-0.9, 0.9, m)), int(t0 * SAMPLE_RATE))
        if rng.random() < 0.25:  # an occasional horn
            hm = int(0.45 * SAMPLE_RATE)
            ht = _times(hm)
            horn = (np.sign(np.sin(2 * math.pi * 400 * ht)) + np.sign(np.sin(2 * math.pi * 500 * ht))) * 0.15
            _add(
                cars,
                _pan(_filter(horn, "low", 3000) * np.minimum(1, ht * 50), rng.uniform(-0.8, 0.8)),
                int((t0 + dur / 2) * SAMPLE_RATE),
            )
        t0 += rng.uniform(2.0, 4.5)
    return _unit_rms(out + _unit_rms(cars))


def synth_fire(rng: np.random.Generator, n: int) -> np.ndarray:
    roar = _stereo_bed(rng, n, lambda: _filter(rng.standard_normal(n), "low", 350))
    roar *= 0.7 + 0.3 * _unit_rms(_filter(rng.standard_normal(n), "low", 2))[None]
    crackle = np.zeros((2, n))
    for start in rng.integers(0, n, size=int(18 * n / SAMPLE_RATE)):
        m = int(rng.uniform(0.003, 0.012) * SAMPLE_RATE)
        burst = rng.standard_normal(m) * np.exp(-np.arange(m) / (m / 4)) * rng.exponential(1.0)
        _add(crackle, _pan(burst, rng.uniform(-0.9, 0.9)), int(start))
    crackle = _filter(crackle, "high", 1500)
    return _unit_rms(_unit_rms(roar) + 0.8 * _unit_rms(crackle))


def synth_engine(rng: np.random.Generator, n: int) -> np.ndarray:
    t = _times(n)
    f0 = rng.uniform(38, 55) * (1 + 0.05 * np.sin(2 * math.pi * t / rng.uniform(3, 6)))
    phase = 2 * math.pi * np.cumsum(f0) / SAMPLE_RATE
    hum = sum(np.sin(k * phase + rng.uniform(0, 6.28)) * (0.8**k) for k in range(1, 12))
    hum *= 1 + 0.35 * np.sin(2 * phase)  # firing pulses
    mech = _filter(rng.standard_normal(n), "band", [1000, 3200])
    delay = int(0.0025 * SAMPLE_RATE)  # inter-channel delay gives width without a centred image
    left = hum + 0.3 * mech
    right = np.concatenate([np.zeros(delay), left[:-delay]]) + 0.3 * _filter(
        rng.standard_normal(n), "band", [1000, 3200]
    )
    return _unit_rms(
        np.stack([left, right]) + 0.3 * _stereo_bed(rng, n, lambda: _filter(rng.standard_normal(n), "low", 400))
    )


def synth_church_bells(rng: np.random.Generator, n: int) -> np.ndarray:
    out = 0.2 * _unit_rms(_stereo_bed(rng, n, lambda: _filter(_colored_noise(rng, n, 1.0), "band", [100, 2000])))
    bells = np.zeros((2, n))
    f0 = rng.uniform(220, 420)
    ratios = (0.5, 1.0, 1.183, 1.506, 2.0, 2.514, 2.662, 3.011)
    interval = rng.uniform(1.8, 2.8)
    pos = rng.choice([-0.6, 0.6])
    strike = rng.uniform(0, 1)
    while strike * SAMPLE_RATE < n:
        m = int(3.5 * SAMPLE_RATE)
        t = _times(m)
        tone = sum(
            np.sin(2 * math.pi * f0 * r * t) * np.exp(-t * (0.8 + 0.7 * i)) / (1 + 0.3 * i)
            for i, r in enumerate(ratios)
        )
        tone *= np.minimum(1.0, t * 500)
        _add(bells, _pan(tone, pos), int(strike * SAMPLE_RATE))
        # a quieter, delayed reflection on the other side gives the bells width
        _add(bells, _pan(0.4 * tone, -pos), int((strike + 0.045) * SAMPLE_RATE))
        strike += interval
    return _unit_rms(out + _unit_rms(bells))


def synth_festive_music(rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.zeros((2, n))
    bpm = rng.uniform(108, 132)
    beat = 60.0 / bpm
    key = int(rng.integers(55, 65))
    progression = ((0, 4, 7), (5, 9, 12), (7, 11, 14), (0, 4, 7))
    melody_steps = rng.choice([0, 2, 4, 5, 7, 9, 12], size=64)
    i = 0
    while i * beat * SAMPLE_RATE < n:
        start = int(i * beat * SAMPLE_RATE)
        chord = progression[(i // 4) % 4]
        for note in chord:
            _add(out, _pan(0.25 * _pluck(_midi(key + note), beat * 0.95), -0.6), start)
        _add(out, _pan(0.35 * _pluck(_midi(key + 12 + melody_steps[i % 64]), beat * 0.5, 2.0), 0.6), start)
        if i % 2 == 0:
            _add(out, _pan(0.5 * _kick(), rng.choice([-0.3, 0.3])), start)
        hm = int(0.04 * SAMPLE_RATE)
        hat = _filter(rng.standard_normal(hm), "high", 6000) * np.exp(-np.arange(hm) / (hm / 5)) * 0.25
        _add(out, _pan(hat, 0.75), start + int(beat / 2 * SAMPLE_RATE))
        i += 1
    return _unit_rms(out)


def synth_tense_music(rng: np.random.Generator, n: int) -> np.ndarray:
    t = _times(n)
    root = _midi(int(rng.integers(33, 40)))
    drone_l = sum(np.sin(2 * math.pi * root * k * t) / k for k in range(1, 8))
    drone_r = sum(np.sin(2 * math.pi * root * 2 ** (1 / 12) * k * t) / k for k in range(1, 8))
    drone = np.stack([drone_l + 0.3 * drone_r, drone_r + 0.3 * drone_l]) * (0.7 + 0.3 * np.sin(2 * math.pi * t / 7))
    tremolo = np.sin(2 * math.pi * root * 16 * t) * (0.5 + 0.5 * np.sin(2 * math.pi * 7.5 * t))
    out = _unit_rms(drone) + 0.4 * _unit_rms(_pan(tremolo, 0.7))
    pulse = np.zeros((2, n))
    beat = 60.0 / rng.uniform(58, 72)
    k = 0
    while k * beat * SAMPLE_RATE < n:
        for offset, gain in ((0.0, 1.0), (0.22, 0.7)):
            _add(pulse, _pan(gain * _kick(0.25), -0.4), int((k * beat + offset) * SAMPLE_RATE))
        k += 1
    return _unit_rms(out + 0.8 * _unit_rms(pulse))


def synth_night_crickets(rng: np.random.Generator, n: int) -> np.ndarray:
    out = 0.3 * _unit_rms(_stereo_bed(rng, n, lambda: _filter(_colored_noise(rng, n, 1.0), "band", [80, 1500])))
    crickets = np.zeros((2, n))
    for _ in range(int(rng.integers(2, 4))):
        carrier = rng.uniform(3800, 5200)
        rate = rng.uniform(1.8, 3.2)
        pos = rng.uniform(-0.9, 0.9)
        if abs(pos) < 0.3:
            pos = math.copysign(0.5, pos)
        pm = int(0.018 * SAMPLE_RATE)
        pt = _times(pm)
        pulse_wave = np.sin(2 * math.pi * carrier * pt) * np.sin(np.linspace(0, math.pi, pm)) ** 2
        t0 = rng.uniform(0, 0.5)
        while t0 * SAMPLE_RATE < n:
            for p in range(3):
                _add(crickets, _pan(pulse_wave, pos), int((t0 + p * 0.03) * SAMPLE_RATE))
            t0 += 1.0 / rate
    return _unit_rms(out + _unit_rms(crickets))


def synth_wind(rng: np.random.Generator, n: int) -> np.ndarray:
    def gust() -> np.ndarray:
        noise = rng.standard_normal(n)
        low = _filter(noise, "band", [150, 600])
        high = _filter(noise, "band", [600, 2200])
        mix = 0.5 + 0.5 * np.tanh(_unit_rms(_filter(rng.standard_normal(n), "low", 0.3)))
        return low * (1 - mix) + high * mix * 0.8

    bed = _stereo_bed(rng, n, gust, common=0.1)
    return _unit_rms(bed * (0.6 + 0.4 * np.abs(_unit_rms(_filter(rng.standard_normal(n), "low", 0.25))))[None])
