"""Noise suppression and speaking detection on synthetic speech (espeak-ng) and noise.

Denoising must raise the SNR of speech mixed with noise by at least 6 dB (white noise at 4 dB
input SNR reaches about +9 dB; pink noise at 0 dB about +8.5 dB with nnnoiseless here).
SNR after denoising is aligned (RNNoise delays by 10 ms) and scale-invariant (signals.snr_db).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.audio.signals import (
    RATE,
    align,
    pink_noise,
    snr_db,
    snr_with_noise_db,
    speech,
    white_noise,
)
from voicechat._native import dsp

MIN_IMPROVEMENT_DB = 6.0


def denoise(signal: np.ndarray, block: int = 960) -> tuple[np.ndarray, list[float]]:
    denoiser = dsp.Denoiser()
    out, probabilities = [], []
    for i in range(0, len(signal) - block + 1, block):
        samples, probability = denoiser.process(signal[i : i + block])
        out.append(samples)
        probabilities.append(probability)
    return np.concatenate(out), probabilities


@pytest.mark.parametrize(
    ("noise_kind", "rms"), [("white", 0.03), ("pink", 0.05)], ids=["white", "pink"]
)
def test_denoising_raises_speech_snr(noise_kind: str, rms: float) -> None:
    clean = speech()
    noise = white_noise(len(clean), rms) if noise_kind == "white" else pink_noise(len(clean), rms)
    noisy = clean + noise
    before = snr_with_noise_db(clean, noisy)
    out, _ = denoise(noisy)
    lag = align(clean, out)
    assert lag == 480  # RNNoise's own 10 ms
    after = snr_db(clean, out, lag)
    assert after - before >= MIN_IMPROVEMENT_DB, f"{before:.1f} dB -> {after:.1f} dB"


def test_voice_probability_is_high_for_speech_and_low_for_noise() -> None:
    clean = speech()
    noise = white_noise(2 * RATE, 0.03, seed=5)
    _, speech_probabilities = denoise(clean + white_noise(len(clean), 0.01))
    _, noise_probabilities = denoise(noise)
    assert max(noise_probabilities[20:]) < 0.5
    assert np.mean(np.array(speech_probabilities) > 0.5) > 0.3


def test_any_block_size_and_int16() -> None:
    clean = speech()[: RATE // 2]
    denoiser = dsp.Denoiser()
    pcm = (clean * 32767).astype(np.int16)
    blocks = [pcm[i : i + 441] for i in range(0, len(pcm), 441)]
    outs = [denoiser.process(block)[0] for block in blocks]
    assert [len(o) for o in outs] == [len(b) for b in blocks]
    assert all(o.dtype == np.int16 for o in outs)
    # Blocks that are not multiples of 480 cost one more 10 ms of buffering.
    assert denoiser.latency == 480


def test_bypass_passes_audio_through() -> None:
    clean = speech()[:9600]
    denoiser = dsp.Denoiser(bypass=True)
    out, _ = denoiser.process(clean)
    np.testing.assert_array_equal(out, clean)
    denoiser.bypass = False
    assert not denoiser.bypass
    out, _ = denoiser.process(clean)
    assert not np.array_equal(out, clean)


def test_voice_activity_tells_speech_from_silence_and_noise() -> None:
    clean = speech()
    frames = [clean[i : i + 960] for i in range(0, len(clean) - 959, 960)]
    silence = np.zeros(960, np.float32)

    vad = dsp.VoiceActivityDetector(hangover=0.2)
    assert not any(vad.process(silence)[1] for _ in range(25))
    decisions = [vad.process(frame)[1] for frame in frames]
    # espeak speaks for most of the clip; pauses between words are bridged by the hangover.
    assert np.mean(decisions) > 0.7
    # After a loud frame, silence: speaking ends once the 200 ms hangover has run out.
    assert vad.process(frames[np.argmax([np.abs(f).max() for f in frames])])[1]
    after = [vad.process(silence)[1] for _ in range(15)]
    assert after == [True] * 9 + [False] * 6

    # Speech under light hiss is still detected with the denoiser's voice probability.
    denoiser = dsp.Denoiser()
    noisy_vad = dsp.VoiceActivityDetector()
    noisy = clean + white_noise(len(clean), 0.01, seed=9)
    verdicts = []
    for i in range(0, len(noisy) - 959, 960):
        cleaned, probability = denoiser.process(noisy[i : i + 960])
        verdicts.append(noisy_vad.process(cleaned, probability)[1])
    assert np.mean(verdicts) > 0.6


def test_levels_follow_rfc_6464() -> None:
    vad = dsp.VoiceActivityDetector()
    t = np.arange(960) / RATE
    full_scale_sine = (np.sin(2 * np.pi * 1000 * t) * 32767).astype(np.int16)
    assert vad.process(full_scale_sine)[0] == 3
    assert vad.process(np.zeros(960, np.int16))[0] == dsp.SILENCE_DBOV
