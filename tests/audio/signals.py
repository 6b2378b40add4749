"""Real test signals and the measurements the DSP tests assert on.

Speech comes from espeak-ng (installed by scripts/test.sh), resampled to 48 kHz with scipy as
an independent reference; noise and tones are generated with a fixed seed.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from functools import cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.signal import correlate, resample_poly  # type: ignore[import-untyped]

RATE = 48_000

FloatArray = NDArray[np.float32]


def tone(
    seconds: float, frequencies: tuple[float, ...] = (440.0,), peak: float = 0.5
) -> FloatArray:
    """A sum of sines with the given overall peak, float32 in [-1, 1]."""
    t = np.arange(round(seconds * RATE)) / RATE
    signal = sum(np.sin(2 * np.pi * f * t) for f in frequencies)
    signal = signal / np.max(np.abs(signal)) * peak
    return np.asarray(signal, dtype=np.float32)


def white_noise(samples: int, rms: float, seed: int = 1) -> FloatArray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(samples) * rms).astype(np.float32)


def pink_noise(samples: int, rms: float, seed: int = 2) -> FloatArray:
    """1/f noise (spectrum shaped in the frequency domain), like fans and room rumble."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    frequencies = np.fft.rfftfreq(samples, 1 / RATE)
    frequencies[0] = frequencies[1]
    shaped = np.fft.irfft(spectrum / np.sqrt(frequencies), samples)
    return np.asarray(shaped / np.sqrt(np.mean(shaped**2)) * rms, dtype=np.float32)


@cache
def speech(
    text: str = "The quick brown fox jumps over the lazy dog. Voice chat sounds clear today.",
) -> FloatArray:
    """Synthetic English speech from espeak-ng at 48 kHz, peak 0.5, float32."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed; scripts/test.sh installs it (apt)")
    from tempfile import TemporaryDirectory

    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run([espeak, "-v", "en", "-s", "150", "-w", str(path), text], check=True)
        with wave.open(str(path)) as wav:
            rate = wav.getframerate()
            assert wav.getsampwidth() == 2
            assert wav.getnchannels() == 1
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    samples = pcm.astype(np.float64) / 32768.0
    resampled = resample_poly(samples, RATE // np.gcd(RATE, rate), rate // np.gcd(RATE, rate))
    resampled = resampled / np.max(np.abs(resampled)) * 0.5
    return np.asarray(resampled, dtype=np.float32)


def align(
    reference: NDArray[np.floating], processed: NDArray[np.floating], max_lag: int = 2_000
) -> int:
    """The delay (in samples) of `processed` against `reference`, by cross-correlation."""
    n = min(len(reference), len(processed)) - max_lag
    ref = reference[:n].astype(np.float64)
    window = processed[: n + max_lag].astype(np.float64)
    # scores[lag] = dot(ref, processed[lag : lag + n]) for lag in 0..max_lag.
    scores = correlate(window, ref, mode="valid", method="fft")
    return int(np.argmax(scores[:max_lag]))


def snr_db(reference: NDArray[np.floating], processed: NDArray[np.floating], lag: int) -> float:
    """SNR of `processed` (delayed by `lag`) against `reference`, in dB.

    Scale-invariant: `processed` is first projected onto `reference`, so a codec or denoiser
    that changes the level slightly is not punished for it, only for distortion and noise.
    """
    n = min(len(reference), len(processed) - lag)
    ref = reference[:n].astype(np.float64)
    out = processed[lag : lag + n].astype(np.float64)
    gain = np.dot(out, ref) / np.dot(ref, ref)
    error = out - gain * ref
    return float(10 * np.log10(np.dot(gain * ref, gain * ref) / np.dot(error, error)))


def snr_with_noise_db(clean: NDArray[np.floating], noisy: NDArray[np.floating]) -> float:
    """SNR of a noisy version of `clean` with no delay and unit gain."""
    error = noisy.astype(np.float64) - clean.astype(np.float64)
    return float(10 * np.log10(np.dot(clean, clean.astype(np.float64)) / np.dot(error, error)))
