"""The receive side and the composed pipelines from Python, on virtual time.

A simulated network between a CapturePipeline and a PlaybackPipeline: reordering, loss,
duplicates and jitter, with times passed in (the DSP never reads a clock). The Rust tests in
crates/audio_dsp/src/jitter/tests.rs cover the jitter buffer's profiles in depth.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests.audio.signals import RATE, align, snr_db, speech
from voicechat._native import dsp


def tone(seconds: float, frequency: float = 440.0, peak: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (
        peak * np.sin(2 * np.pi * frequency * t) * (0.75 + 0.25 * np.sin(6 * np.pi * t))
    ).astype(np.float32)


def opus_packets(signal: np.ndarray) -> list[bytes]:
    encoder = dsp.OpusEncoder(expected_loss_percent=10)
    return [encoder.encode(signal[i : i + 960]) for i in range(0, len(signal) - 959, 960)]


def test_jitter_buffer_reorders_drops_duplicates_and_offers_fec() -> None:
    packets = opus_packets(tone(1.0))
    buffer = dsp.JitterBuffer(min_delay=0.04)
    # Sequence numbers wrap during the run.
    seq0, ts0 = 65_530, 2**32 - 5 * 960
    order = list(range(50))
    order[10], order[11] = order[11], order[10]  # reordered
    played: list[int | None] = []
    fec_offered = 0
    now = 0.0
    arrivals = {k: 0.02 * k for k in order if k != 30}  # 30 is lost
    pending = sorted(arrivals.items(), key=lambda item: (item[1], order.index(item[0])))
    while now < 1.3:
        while pending and pending[0][1] <= now:
            k, at = pending.pop(0)
            outcome = buffer.push(
                (seq0 + k) % 2**16, (ts0 + 960 * k) % 2**32, packets[k], at, duration=960
            )
            assert outcome == "buffered"
            if k == 20:
                assert buffer.push((seq0 + k) % 2**16, (ts0 + 960 * k) % 2**32, packets[k], at) == (
                    "duplicate"
                )
        playout = buffer.pop(now)
        if playout is not None:
            if playout.lost:
                fec_offered += playout.payload is not None
                played.append(None)
            else:
                assert playout.payload == packets[((playout.seq or 0) - seq0) % 2**16]
                played.append(((playout.seq or 0) - seq0) % 2**16)
        now += 0.02
    assert [p for p in played if p is not None] == [k for k in range(50) if k != 30]
    assert played[played.index(29) + 1] is None
    assert fec_offered == 1
    stats = buffer.stats()
    assert (stats["lost"], stats["duplicates"], stats["late"]) == (1, 1, 0)
    assert 0.04 <= stats["target_delay"] <= 0.2
    assert buffer.push(seq0 % 2**16, ts0, packets[0], now) == "duplicate"


def run_call(
    signal: np.ndarray, loss: float, jitter: float, seed: int = 7, gain: float = 1.0
) -> tuple[np.ndarray, dict[str, float]]:
    """Capture → network (loss, uniform jitter, no reordering guarantee) → playback."""
    rng = np.random.default_rng(seed)
    capture = dsp.CapturePipeline(denoise=False, expected_loss_percent=round(loss * 100))
    playback = dsp.PlaybackPipeline()
    playback.set_gain(42, gain)
    in_flight: list[tuple[float, int, int, bytes]] = []
    out = []
    for k, i in enumerate(range(0, len(signal), 480)):
        now = 0.01 * (k + 1)
        for packet in capture.push(signal[i : i + 480]):
            if rng.random() >= loss:
                arrival = now + 0.03 + float(rng.uniform(0, jitter))
                in_flight.append((arrival, packet.seq, packet.timestamp, packet.payload))
        if k % 2 == 1:  # the sound card asks for 20 ms every 20 ms
            for item in sorted(in_flight):
                if item[0] <= now:
                    playback.push(42, item[1], item[2], item[3], item[0])
                    in_flight.remove(item)
            out.append(playback.pop(now))
    stats = playback.stats(42)
    assert stats is not None
    return np.concatenate(out), stats


def test_a_clean_network_carries_the_tone() -> None:
    signal = tone(3.0)
    out, stats = run_call(signal, loss=0.0, jitter=0.0)
    lag = align(signal, out, max_lag=8_000)
    assert snr_db(signal[RATE // 2 : -RATE // 2], out[RATE // 2 :], lag) > 24
    assert stats["lost"] == stats["concealed"] == 0
    # Mouth-to-ear through the DSP: 30 ms network + jitter buffer + codec, well under 100 ms.
    assert lag / RATE < 0.1


def test_loss_and_jitter_are_concealed() -> None:
    signal = tone(6.0)
    out, stats = run_call(signal, loss=0.05, jitter=0.04)
    assert stats["lost"] >= 5
    assert stats["concealed"] >= stats["lost"]
    assert stats["fec"] >= 0.5 * stats["lost"]
    assert 0.04 <= stats["target_delay"] <= 0.1
    # Concealment keeps the signal going: no 20 ms frame of the second half is silent.
    second_half = out[len(out) // 2 :]
    frame_energy = [
        float(np.mean(second_half[i : i + 960] ** 2)) for i in range(0, len(second_half) - 960, 960)
    ]
    assert min(frame_energy) > 1e-4  # -40 dB: quieter in places (PLC fades), never a gap


def test_per_sender_gain_and_mixing_without_clipping() -> None:
    signal = tone(2.0, peak=0.9)
    loud, _ = run_call(signal, loss=0.0, jitter=0.0, gain=4.0)
    muted, _ = run_call(signal, loss=0.0, jitter=0.0, gain=0.0)
    assert np.all(np.abs(loud) <= 1.0)
    assert np.max(np.abs(loud)) > 0.9
    assert not np.any(muted)

    a = tone(0.1, 300.0, 0.8)
    b = tone(0.1, 500.0, 0.8)
    mixed = dsp.mix([a, b], [1.0, 1.0])
    assert mixed.dtype == np.float32
    assert np.max(np.abs(mixed)) <= 1.0
    quiet = dsp.mix([(a * 0.1).astype(np.float32), (b * 0.1).astype(np.float32)])
    np.testing.assert_allclose(quiet, a * 0.1 + b * 0.1, atol=1e-6)
    pcm = dsp.mix([(a * 32767).astype(np.int16)] * 3)
    assert pcm.dtype == np.int16
    assert int(np.max(pcm)) <= 32767


def test_playback_tracks_several_senders() -> None:
    playback = dsp.PlaybackPipeline()
    packets = opus_packets(tone(0.5))
    for k, packet in enumerate(packets):
        for sender in (1, 2, 3):
            playback.push(sender, k, 960 * k, packet, 0.02 * k)
        frame = playback.pop(0.02 * k + 0.005)
        assert frame.shape == (960,)
        assert frame.dtype == np.float32
    assert playback.senders() == [1, 2, 3]
    assert all(level < 40 for _, level in playback.levels())
    assert playback.remove(2)
    assert playback.senders() == [1, 3]
    assert playback.pop_int16(1.0).dtype == np.int16


def test_capture_pipeline_marks_levels_voice_and_dtx() -> None:
    clean = speech()
    silence = np.zeros(RATE, np.float32)
    capture = dsp.CapturePipeline(dtx=True, initial_seq=65_535, initial_timestamp=1_000)
    packets = []
    for block in np.array_split(np.concatenate([silence, clean, silence]), 100):
        packets.extend(capture.push(block))
    stats = capture.stats()
    assert stats["frames"] == (2 * RATE + len(clean)) // 960
    assert stats["packets"] == len(packets)
    assert stats["dtx_frames"] > 40
    # Sequence numbers are consecutive (wrapping); timestamps jump over the unsent silence.
    assert [p.seq for p in packets[:3]] == [65_535, 0, 1]
    assert packets[0].marker
    assert packets[0].timestamp > 1_000
    assert all(p.voice for p in packets)
    assert min(p.level for p in packets) < 30


def test_capture_resamples_a_44100_hz_microphone() -> None:
    capture = dsp.CapturePipeline(input_rate=44_100, denoise=False)
    t = np.arange(44_100) / 44_100
    block = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    packets = capture.push(block)
    # One second of input is 50 frames, less the resampler's first partial chunk.
    assert 48 <= len(packets) <= 50

    resampler = dsp.Resampler(44_100, 48_000)
    out = np.concatenate([resampler.process(block[i : i + 512]) for i in range(0, 44_100, 512)])
    assert out.dtype == np.float32
    assert len(out) == 48_000
    spectrum = np.abs(np.fft.rfft(out[resampler.delay : resampler.delay + 24_000]))
    assert abs(np.argmax(spectrum) * 2 - 440) <= 2  # 2 Hz bins


def test_work_runs_without_the_gil() -> None:
    """A Python thread keeps running while another thread is inside the denoiser."""
    noise = np.random.default_rng(3).standard_normal(10 * RATE).astype(np.float32) * 0.1
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        start = time.perf_counter()
        dsp.Denoiser().process(noise)
        elapsed = time.perf_counter() - start
    finally:
        done.set()
        counter.join()
    assert elapsed > 0.01
    assert ticks > 100


@pytest.mark.parametrize("frame_ms", [10, 40])
def test_playback_frame_sizes(frame_ms: int) -> None:
    playback = dsp.PlaybackPipeline(frame_ms=frame_ms, output_rate=44_100)
    assert playback.frame_samples == 441 * frame_ms // 10
    assert len(playback.pop(0.0)) == playback.frame_samples
