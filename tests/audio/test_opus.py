"""Opus through `voicechat._native.dsp`: round trips keep a test tone, loss is concealed or
rebuilt from FEC, and libopus is the vendored static build.

SNR is measured after aligning the decoded signal to the input by cross-correlation (Opus
delays by its lookahead, 6.5 ms) and projecting out a level change: what remains is codec
distortion. The test tone is a 440 Hz sine with a 3 Hz tremolo (-8 dBFS peak), so the
alignment is unique. Thresholds are about 3 dB under what libopus 1.6 reaches here.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.audio.signals import RATE, align, snr_db
from voicechat._native import dsp

BITRATES = [24_000, 32_000, 48_000, 64_000, 96_000]
FRAME_MS = [10, 20, 40, 60]

# Minimum SNR (dB) of the round trip by bitrate; the same at every frame size.
MIN_SNR_DB = {24_000: 24.0, 32_000: 26.0, 48_000: 26.0, 64_000: 26.0, 96_000: 31.0}


def tremolo_tone() -> np.ndarray:
    t = np.arange(2 * RATE) / RATE
    envelope = 0.75 + 0.25 * np.sin(2 * np.pi * 3 * t)
    return (0.4 * np.sin(2 * np.pi * 440 * t) * envelope).astype(np.float32)


def round_trip(signal: np.ndarray, encoder: dsp.OpusEncoder) -> np.ndarray:
    decoder = dsp.OpusDecoder(encoder.channels)
    n = encoder.frame_samples * encoder.channels
    chunks = [
        decoder.decode_float(encoder.encode(signal[i : i + n]))
        for i in range(0, len(signal) - n + 1, n)
    ]
    return np.concatenate(chunks)


@pytest.mark.parametrize("frame_ms", FRAME_MS)
@pytest.mark.parametrize("bitrate", BITRATES)
def test_round_trip_keeps_a_tone(bitrate: int, frame_ms: int) -> None:
    signal = tremolo_tone()
    encoder = dsp.OpusEncoder(bitrate=bitrate, frame_ms=frame_ms)
    decoded = round_trip(signal, encoder)
    assert len(decoded) == len(signal) // encoder.frame_samples * encoder.frame_samples
    lag = align(signal, decoded)
    # The codec delay is its lookahead give or take its internal resampler: 5-10 ms.
    assert 240 <= lag <= 480
    # Skip the first quarter second while the encoder settles.
    snr = snr_db(signal[RATE // 4 :], decoded[RATE // 4 :], lag)
    assert snr >= MIN_SNR_DB[bitrate], f"{bitrate} bit/s, {frame_ms} ms: {snr:.1f} dB"


def test_int16_round_trip_and_packet_sizes_follow_the_bitrate() -> None:
    pcm = (tremolo_tone() * 32767).astype(np.int16)
    sizes = {}
    for bitrate in (24_000, 96_000):
        encoder = dsp.OpusEncoder(bitrate=bitrate)
        decoder = dsp.OpusDecoder()
        packets = [encoder.encode(pcm[i : i + 960]) for i in range(0, len(pcm), 960)]
        out = np.concatenate([decoder.decode(p) for p in packets])
        assert out.dtype == np.int16
        assert len(out) == len(pcm)
        sizes[bitrate] = sum(len(p) for p in packets) * 8 / 2.0
    # Average bitrate within 25 % of the target (VBR).
    assert sizes[24_000] == pytest.approx(24_000, rel=0.25)
    assert sizes[96_000] == pytest.approx(96_000, rel=0.25)


def test_stereo_keeps_channels_apart() -> None:
    left = tremolo_tone()
    right = np.zeros_like(left)
    interleaved = np.stack([left, right], axis=1)  # frames x channels
    encoder = dsp.OpusEncoder(channels=2, bitrate=96_000)
    decoder = dsp.OpusDecoder(2)
    out = np.concatenate(
        [
            decoder.decode_float(encoder.encode(interleaved[i : i + 960]))
            for i in range(0, 96_000, 960)
        ]
    ).reshape(-1, 2)
    energy_left = float(np.mean(out[RATE // 4 :, 0] ** 2))
    energy_right = float(np.mean(out[RATE // 4 :, 1] ** 2))
    assert energy_left > 0.03
    assert energy_right < energy_left / 100


def test_fec_rebuilds_a_lost_frame_better_than_concealment() -> None:
    signal = tremolo_tone()
    pcm = (signal * 32767).astype(np.int16)
    encoder = dsp.OpusEncoder(bitrate=32_000, expected_loss_percent=20)
    packets = [encoder.encode(pcm[i : i + 960]) for i in range(0, len(pcm), 960)]
    lost = 50
    results = {}
    for mode in ("fec", "plc"):
        decoder = dsp.OpusDecoder()
        out = []
        for k, packet in enumerate(packets):
            if k == lost:
                if mode == "fec":
                    out.append(decoder.decode_fec(packets[k + 1], 960))
                else:
                    out.append(decoder.conceal(960))
            else:
                out.append(decoder.decode(packet))
        results[mode] = np.concatenate(out).astype(np.float32) / 32768
    reference = round_trip(signal, dsp.OpusEncoder(bitrate=32_000, expected_loss_percent=20))
    lag = align(signal, reference)
    frame = slice(lost * 960 + lag, (lost + 1) * 960 + lag)

    def frame_snr(decoded: np.ndarray) -> float:
        return snr_db(signal[lost * 960 : (lost + 1) * 960], decoded[frame], 0)

    assert frame_snr(results["fec"]) > frame_snr(results["plc"]) + 3
    assert frame_snr(results["fec"]) > 10


def test_dtx_shrinks_silence_to_tiny_packets() -> None:
    encoder = dsp.OpusEncoder(dtx=True)
    sizes = [len(encoder.encode(np.zeros(960, np.int16))) for _ in range(100)]
    # libopus still refreshes its comfort noise every 400 ms; the rest is 1-2 bytes.
    tiny = sum(size <= 2 for size in sizes[10:])
    assert tiny >= 0.9 * len(sizes[10:]), sizes
    assert dsp.OpusEncoder(dtx=False).encode(np.zeros(960, np.int16))


def test_settings_are_reported_and_changeable() -> None:
    encoder = dsp.OpusEncoder(
        bitrate=48_000, frame_ms=40, complexity=5, fec=False, dtx=True, expected_loss_percent=10
    )
    assert (encoder.bitrate, encoder.frame_ms, encoder.frame_samples) == (48_000, 40, 1920)
    assert (encoder.complexity, encoder.fec, encoder.dtx) == (5, False, True)
    assert encoder.lookahead == 312
    encoder.set_bitrate(24_000)
    encoder.set_expected_loss_percent(30)
    assert (encoder.bitrate, encoder.expected_loss_percent) == (24_000, 30)


def test_packet_duration_is_read_from_the_toc() -> None:
    for frame_ms in FRAME_MS:
        encoder = dsp.OpusEncoder(frame_ms=frame_ms)
        packet = encoder.encode(np.zeros(encoder.frame_samples, np.float32))
        assert dsp.packet_samples(packet) == 48 * frame_ms


def test_libopus_is_the_vendored_static_build() -> None:
    assert dsp.libopus_version().startswith("libopus 1.6")
    # Linked into the extension module: a fresh interpreter that loads only our module and
    # encodes a frame maps no shared libopus (this process may hold aiortc's, via PyAV).
    probe = (
        "import numpy, voicechat._native.dsp as d;"
        "d.OpusEncoder().encode(numpy.zeros(960, numpy.int16));"
        "print(open('/proc/self/maps').read())"
    )
    maps = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert "_native" in maps
    assert "libopus" not in maps
