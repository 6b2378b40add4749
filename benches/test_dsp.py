"""Per-stream cost of the audio DSP, as a fraction of real time, against references.

Every benchmark processes one second of mono 48 kHz audio (50 frames of 20 ms), so its time in
seconds *is* the fraction of one CPU core a stream costs. Each group has three rows measured in
the same run:

- `voicechat`: `voicechat._native.dsp` called from Python frame by frame (what the client does);
- `reference`: the same work with the established library through ctypes: `opuslib` (the system
  libopus) for the codec, `pyrnnoise` (C RNNoise) for denoising, and both composed with NumPy for
  the pipelines;
- `native`: the same frames inside Rust (`dsp_bench.NativeBench`, a bench-only extension that
  the first native row builds if it is missing: `benches/native`), without the Python boundary.

Run: `scripts/bench.sh -k dsp` (or `pytest benches/test_dsp.py --benchmark-only`). opuslib needs
`libopus0` from apt at run time (scripts/test.sh installs it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import opuslib  # type: ignore[import-untyped]
import opuslib.api.ctl as opus_ctl  # type: ignore[import-untyped]
import opuslib.api.encoder as opus_encoder  # type: ignore[import-untyped]
import pytest
from pyrnnoise import rnnoise  # type: ignore[import-untyped]

from benches.native import dsp_bench
from voicechat._native import dsp

FRAMES = 50  # one second of 20 ms frames
FRAME = 960


def _signal() -> tuple[list[np.ndarray], list[np.ndarray]]:
    t = np.arange(FRAMES * FRAME) / 48_000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.sin(2 * np.pi * 3100 * t)).astype(
        np.float32
    )
    floats = [audio[k * FRAME : (k + 1) * FRAME] for k in range(FRAMES)]
    pcm = [(f * 32767).astype(np.int16) for f in floats]
    return floats, pcm


FLOATS, PCM = _signal()
PCM_BYTES = [p.tobytes() for p in PCM]
PACKETS = [dsp.OpusEncoder().encode(p) for p in PCM]


# The first native row may build `dsp_bench` (a release build, minutes from a clean clone).
BUILD_TIMEOUT = 1200


@pytest.fixture(scope="module")
def native_bench() -> Any:
    """The `dsp_bench.NativeBench` class, built and installed first if it is missing."""
    return dsp_bench().NativeBench


def run(benchmark: Any, work: Callable[[], object]) -> None:
    benchmark.extra_info["audio_seconds"] = 1.0
    benchmark.pedantic(work, rounds=30, iterations=1, warmup_rounds=2)


def opuslib_encoder() -> opuslib.Encoder:
    encoder = opuslib.Encoder(48_000, 1, opuslib.APPLICATION_VOIP)
    encoder.bitrate = 64_000
    encoder.complexity = 10
    # opuslib's `inband_fec` property setter is broken; set it (and the voice hint) directly.
    opus_encoder.encoder_ctl(encoder.encoder_state, opus_ctl.set_inband_fec, 1)
    opus_encoder.encoder_ctl(encoder.encoder_state, opus_ctl.set_signal, 3001)
    return encoder


# --- Opus encode -------------------------------------------------------------------------


@pytest.mark.benchmark(group="dsp-encode")
def test_encode_voicechat(benchmark: Any) -> None:
    encoder = dsp.OpusEncoder()
    run(benchmark, lambda: [encoder.encode(p) for p in PCM])


@pytest.mark.benchmark(group="dsp-encode")
def test_encode_reference_opuslib(benchmark: Any) -> None:
    encoder = opuslib_encoder()
    run(benchmark, lambda: [encoder.encode(p, FRAME) for p in PCM_BYTES])


@pytest.mark.benchmark(group="dsp-encode")
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_encode_native(benchmark: Any, native_bench: Any) -> None:
    native = native_bench("encode")
    run(benchmark, lambda: native.run(FRAMES))


# --- Opus decode -------------------------------------------------------------------------


@pytest.mark.benchmark(group="dsp-decode")
def test_decode_voicechat(benchmark: Any) -> None:
    decoder = dsp.OpusDecoder()
    run(benchmark, lambda: [decoder.decode(p) for p in PACKETS])


@pytest.mark.benchmark(group="dsp-decode")
def test_decode_reference_opuslib(benchmark: Any) -> None:
    decoder = opuslib.Decoder(48_000, 1)
    run(benchmark, lambda: [np.frombuffer(decoder.decode(p, FRAME), np.int16) for p in PACKETS])


@pytest.mark.benchmark(group="dsp-decode")
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_decode_native(benchmark: Any, native_bench: Any) -> None:
    native = native_bench("decode")
    run(benchmark, lambda: native.run(FRAMES))


# --- Denoise -----------------------------------------------------------------------------


@pytest.mark.benchmark(group="dsp-denoise")
def test_denoise_voicechat(benchmark: Any) -> None:
    denoiser = dsp.Denoiser()
    run(benchmark, lambda: [denoiser.process(f) for f in FLOATS])


@pytest.mark.benchmark(group="dsp-denoise")
def test_denoise_reference_pyrnnoise(benchmark: Any) -> None:
    state = rnnoise.create()

    def work() -> None:
        for p in PCM:
            rnnoise.process_mono_frame(state, p[:480])
            rnnoise.process_mono_frame(state, p[480:])

    try:
        run(benchmark, work)
    finally:
        rnnoise.destroy(state)


@pytest.mark.benchmark(group="dsp-denoise")
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_denoise_native(benchmark: Any, native_bench: Any) -> None:
    native = native_bench("denoise")
    run(benchmark, lambda: native.run(FRAMES))


# --- Capture pipeline: denoise -> level/VAD -> encode -----------------------------------


@pytest.mark.benchmark(group="dsp-capture")
def test_capture_voicechat(benchmark: Any) -> None:
    capture = dsp.CapturePipeline()
    run(benchmark, lambda: [capture.push(f) for f in FLOATS])


@pytest.mark.benchmark(group="dsp-capture")
def test_capture_reference_pyrnnoise_opuslib(benchmark: Any) -> None:
    state = rnnoise.create()
    encoder = opuslib_encoder()

    def work() -> None:
        for p in PCM:
            first, _ = rnnoise.process_mono_frame(state, p[:480])
            second, _ = rnnoise.process_mono_frame(state, p[480:])
            clean = np.concatenate([first, second])
            mean_square = float(np.mean(clean.astype(np.float64) ** 2))
            _level = min(127, round(-10 * np.log10(max(mean_square, 1e-13) / 32768**2)))
            encoder.encode(clean.tobytes(), FRAME)

    try:
        run(benchmark, work)
    finally:
        rnnoise.destroy(state)


@pytest.mark.benchmark(group="dsp-capture")
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_capture_native(benchmark: Any, native_bench: Any) -> None:
    native = native_bench("capture")
    run(benchmark, lambda: native.run(FRAMES))


# --- Playback pipeline: jitter buffer -> decode -> mix ---------------------------------


@pytest.mark.benchmark(group="dsp-playback")
def test_playback_voicechat(benchmark: Any) -> None:
    clock = [0]

    def work() -> None:
        playback = dsp.PlaybackPipeline()
        for k, packet in enumerate(PACKETS):
            now = 0.02 * k
            playback.push(1, k, FRAME * k, packet, now)
            playback.pop(now)
        clock[0] += 1

    run(benchmark, work)


@pytest.mark.benchmark(group="dsp-playback")
def test_playback_reference_opuslib(benchmark: Any) -> None:
    def work() -> None:
        # No jitter buffer: decode in order, scale and clip with NumPy.
        decoder = opuslib.Decoder(48_000, 1)
        for packet in PACKETS:
            pcm = np.frombuffer(decoder.decode(packet, FRAME), np.int16)
            np.clip(pcm.astype(np.float32) / 32768 * 1.0, -1.0, 1.0)

    run(benchmark, work)


@pytest.mark.benchmark(group="dsp-playback")
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_playback_native(benchmark: Any, native_bench: Any) -> None:
    native = native_bench("playback")
    run(benchmark, lambda: native.run(FRAMES))
