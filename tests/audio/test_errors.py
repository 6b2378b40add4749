"""Bad input raises a clear exception and never crashes the interpreter."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import pytest

import voicechat._native as native
from voicechat._native import dsp


@pytest.mark.parametrize(
    "array",
    [
        np.zeros(960, np.float64),
        np.zeros(960, np.int32),
        np.zeros(960, np.uint8),
        np.zeros(960, np.complex64),
    ],
    ids=["float64", "int32", "uint8", "complex64"],
)
def test_wrong_dtypes_are_refused_everywhere(array: np.ndarray) -> None:
    calls: list[Callable[[np.ndarray], object]] = [
        dsp.OpusEncoder().encode,
        lambda a: dsp.Denoiser().process(a),
        lambda a: dsp.VoiceActivityDetector().process(a),
        lambda a: dsp.Resampler(44_100, 48_000).process(a),
        lambda a: dsp.CapturePipeline().push(a),
        lambda a: dsp.mix([a]),
    ]
    for call in calls:
        with pytest.raises(native.DspInputError, match=r"expected int16 or float32"):
            call(array)


def test_non_arrays_are_type_errors() -> None:
    with pytest.raises(TypeError, match="expected a numpy int16 or float32 array, got list"):
        dsp.OpusEncoder().encode([0] * 960)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        dsp.Denoiser().process(b"\x00" * 1920)  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [0, 1, 959, 961, 1920])
def test_wrong_frame_sizes_are_refused(length: int) -> None:
    with pytest.raises(native.DspInputError, match="invalid frame size"):
        dsp.OpusEncoder().encode(np.zeros(length, np.int16))


def test_stereo_frames_need_both_channels() -> None:
    encoder = dsp.OpusEncoder(channels=2)
    assert encoder.encode(np.zeros((960, 2), np.float32))
    with pytest.raises(native.DspInputError):
        encoder.encode(np.zeros(960, np.float32))
    with pytest.raises(native.DspInputError, match="3-dimensional"):
        encoder.encode(np.zeros((480, 2, 2), np.float32))
    with pytest.raises(native.DspInputError, match="multiple of the channel count"):
        dsp.Resampler(44_100, 48_000, 2).process(np.zeros(3, np.float32))


def test_non_finite_floats_are_refused() -> None:
    frame = np.zeros(960, np.float32)
    frame[5] = np.nan
    with pytest.raises(native.DspInputError, match="finite"):
        dsp.OpusEncoder().encode(frame)
    frame[5] = np.inf
    with pytest.raises(native.DspInputError, match="finite"):
        dsp.Denoiser().process(frame)


def test_empty_input() -> None:
    assert len(dsp.Denoiser().process(np.zeros(0, np.float32))[0]) == 0
    assert dsp.CapturePipeline().push(np.zeros(0, np.int16)) == []
    with pytest.raises(native.DspInputError, match="non-empty"):
        dsp.VoiceActivityDetector().process(np.zeros(0, np.int16))
    with pytest.raises(native.CorruptPacketError, match="empty packet"):
        dsp.OpusDecoder().decode(b"")
    with pytest.raises(native.CorruptPacketError, match="empty packet"):
        dsp.packet_samples(b"")
    with pytest.raises(native.CorruptPacketError):
        dsp.PlaybackPipeline().push(1, 0, 0, b"", 0.0)
    assert len(dsp.mix([])) == 0


def test_corrupt_packets_raise_and_the_decoder_goes_on() -> None:
    encoder = dsp.OpusEncoder()
    decoder = dsp.OpusDecoder()
    good = encoder.encode(np.zeros(960, np.int16))
    # Code 3 (arbitrary frame count) with zero frames; code 2 with a size beyond the packet.
    for bad in (b"\x03\x00", b"\x02\xff", b"\x03\xff" + b"\x00" * 10):
        with pytest.raises(native.CorruptPacketError, match="corrupt packet"):
            decoder.decode(bad)
        with pytest.raises(ValueError, match="corrupt packet"):
            dsp.PlaybackPipeline().push(1, 0, 0, bad, 0.0)
    assert len(decoder.decode(good)) == 960


def test_random_bytes_never_crash() -> None:
    rng = np.random.default_rng(11)
    decoder = dsp.OpusDecoder(2)
    playback = dsp.PlaybackPipeline()
    decoded = refused = 0
    for k in range(2_000):
        packet = rng.bytes(int(rng.integers(1, 401)))
        try:
            decoder.decode(packet)
            decoded += 1
        except native.CorruptPacketError:
            refused += 1
        with contextlib.suppress(native.CorruptPacketError):
            playback.push(7, k % 65_536, 960 * k, packet, 0.02 * k)
        playback.pop(0.02 * k)
    assert decoded + refused == 2_000
    assert refused > 0


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: dsp.OpusEncoder(bitrate=8_000), "bitrate"),
        (lambda: dsp.OpusEncoder(bitrate=128_000), "bitrate"),
        (lambda: dsp.OpusEncoder(frame_ms=30), "frame_ms"),
        (lambda: dsp.OpusEncoder(channels=3), "channels"),
        (lambda: dsp.OpusEncoder(complexity=11), "complexity"),
        (lambda: dsp.OpusEncoder(expected_loss_percent=101), "expected_loss_percent"),
        (lambda: dsp.OpusDecoder(0), "channels"),
        (lambda: dsp.Resampler(1_000, 48_000), "sample rate"),
        (lambda: dsp.VoiceActivityDetector(hangover=-1.0), "hangover"),
        (lambda: dsp.VoiceActivityDetector(min_voice_probability=2.0), "min_voice_probability"),
        (lambda: dsp.JitterBuffer(min_delay=0.3), "delay"),
        (lambda: dsp.JitterBuffer(max_delay=float("nan")), "max_delay"),
        (lambda: dsp.PlaybackPipeline(frame_ms=25), "frame_ms"),
        (lambda: dsp.CapturePipeline(input_rate=4_000), "sample rate"),
    ],
)
def test_bad_settings_name_the_parameter(factory: object, message: str) -> None:
    with pytest.raises(native.DspInputError, match=message):
        factory()  # type: ignore[operator]


def test_bad_runtime_values() -> None:
    with pytest.raises(native.DspInputError, match="bitrate"):
        dsp.OpusEncoder().set_bitrate(200_000)
    with pytest.raises(native.DspInputError, match="multiple of 120"):
        dsp.OpusDecoder().conceal(100)
    with pytest.raises(native.DspInputError, match="gain"):
        dsp.PlaybackPipeline().set_gain(1, -0.5)
    with pytest.raises(native.DspInputError, match="gain"):
        dsp.mix([np.zeros(4, np.float32)], [9.0])
    with pytest.raises(native.DspInputError, match="gains for"):
        dsp.mix([np.zeros(4, np.float32)], [1.0, 1.0])
    with pytest.raises(native.DspInputError, match="int16 and float32"):
        dsp.mix([np.zeros(4, np.float32), np.zeros(4, np.int16)])
    with pytest.raises(native.DspInputError, match="now"):
        dsp.JitterBuffer().pop(-1.0)
    with pytest.raises(native.DspInputError, match="arrival"):
        dsp.PlaybackPipeline().push(1, 0, 0, b"\xf8\xff\xfe", float("inf"))
    with pytest.raises(OverflowError):
        dsp.JitterBuffer().push(70_000, 0, b"x", 0.0)
