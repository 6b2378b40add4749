"""Mouth-to-ear latency of the desktop client's audio, against references in the same run.

Everything runs on a private PulseAudio daemon (tests/pulse.py): a 1 kHz tone burst is played
into Alice's virtual microphone, and one stereo recording holds Alice's microphone (left) and
Bob's speaker (right) on one sample clock, so the onset difference is the mouth-to-ear latency,
sample-accurate. Rows (10 bursts each, median):

- `reference-devices`: the same sounddevice input and output streams as the engine (same
  block, same suggested latency) with the input callback's blocks handed straight to the output
  callback: what the sound devices alone cost.
- `reference-pulse-loopback`: PulseAudio's own module-loopback from the microphone to the
  speaker (latency_msec=1), the floor of this sound server.
- `engine-*`: two `VoiceEngine`s through a live server's SFU (Opus, DTLS-SRTP over loopback
  UDP, jitter buffer), with 20 ms and 10 ms Opus frames; RNNoise off (it adds a fixed 10 ms,
  and on a pure tone it also eats into the onset, which would blur the measurement).
- `engine-20ms-busy-loop`: as `engine-20ms` while the asyncio loop (where a Kivy GUI runs)
  spends 30 ms of every 100 in pure Python: the engine's audio never waits for the loop, only
  the sound card callbacks wait for the GIL, so this shows what a slow GUI costs the audio.
- `engine-20ms-busy-loop-5ms-switch`: the same with Python's default 5 ms GIL switch interval
  (the engine's `switch_interval=None`), instead of the 1 ms `VoiceEngine.start()` sets.

Each engine row reports its ratio to `reference-devices` and the difference, which is what the
voice path adds (frame, codec, network, jitter buffer, mixing), and the CPU while the bursts
play: `cpu_per_client_percent` (process CPU over wall time, halved: both engines and both SDK
clients run in this process) and `cpu_threads_percent` (% of a core per thread name, both
clients, from `/proc/self/task/*/stat`). The timing pytest-benchmark
shows is the length of the whole measurement, not the latency: read `extra_info` (or the
printed table). Run: `scripts/bench.sh -k client_audio`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sounddevice as sd  # type: ignore[import-untyped]

from tests.client_audio.measure import mouth_to_ear, talk, voice_call, write_artifact
from tests.conftest import LiveServer
from tests.pulse import PulseAudio, pulse_audio, pulse_cards  # noqa: F401  (fixtures)
from voicechat.sdk.audio import VoiceEngine
from voicechat.sdk.audio.engine import DEVICE_BLOCK_MS, DEVICE_LATENCY

BURSTS = 10
RESULTS: dict[str, float] = {}

pytestmark = pytest.mark.slow


async def _devices_reference(pulse: PulseAudio) -> list[float]:
    link = pulse.add_link("ref_a", "ref_b")
    blocks: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
    block = 48 * DEVICE_BLOCK_MS

    def captured(indata: Any, frames: int, time: Any, status: Any) -> None:
        blocks.put(indata[:, 0].copy())

    def play(outdata: Any, frames: int, time: Any, status: Any) -> None:
        try:
            outdata[:, 0] = blocks.get_nowait()
        except queue.Empty:
            outdata.fill(0)

    settings = {"samplerate": 48000, "blocksize": block, "channels": 1, "dtype": "float32"}
    with (
        sd.InputStream(
            device=link.mouth.input_device, latency=DEVICE_LATENCY, callback=captured, **settings
        ),
        sd.OutputStream(
            device=link.ear.output_device, latency=DEVICE_LATENCY, callback=play, **settings
        ),
    ):
        await asyncio.sleep(0.5)
        probe = await talk(pulse, link, BURSTS)
    return mouth_to_ear(probe)


async def _loopback_reference(pulse: PulseAudio) -> list[float]:
    link = pulse.add_link("loop_a", "loop_b")
    module = pulse.pactl(
        "load-module",
        "module-loopback",
        "source=vc_loop_a_mic_in",
        "sink=vc_loop_b_speaker",
        "latency_msec=1",
    )
    try:
        await asyncio.sleep(1.0)
        probe = await talk(pulse, link, BURSTS)
    finally:
        pulse.pactl("unload-module", module)
    return mouth_to_ear(probe)


async def _busy_gui() -> None:
    """A slow GUI on the event loop: 30 ms of pure-Python work (holding the GIL) every 100 ms."""
    while True:
        until = time.perf_counter() + 0.03
        spins = 0
        while time.perf_counter() < until:
            spins += 1
        await asyncio.sleep(0.07)


def _thread_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of each thread of this process, with its name."""
    ticks = os.sysconf("SC_CLK_TCK")
    threads: dict[int, tuple[str, float]] = {}
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            stat = (task / "stat").read_text()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            tid = int(task.name)
            if tid == os.getpid():
                name = "main (asyncio loop)"
            elif name in ("pytest", "python", "python3"):
                # Threads without an OS name: PortAudio's callback threads, asyncio.to_thread.
                name = "unnamed (PortAudio callbacks)"
            threads[tid] = (name, (int(fields[11]) + int(fields[12])) / ticks)
    return threads


def _per_thread_percent(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], wall: float
) -> dict[str, float]:
    """Percent of a core per thread name (summed over threads of that name) in `wall` s."""
    usage: dict[str, float] = {}
    for tid, (name, cpu) in after.items():
        used = cpu - before.get(tid, (name, 0.0))[1]
        usage[name] = usage.get(name, 0.0) + used / wall * 100
    return {name: round(value, 2) for name, value in sorted(usage.items()) if value >= 0.05}


class KeepSwitchIntervalEngine(VoiceEngine):
    """The engine without its GIL switch interval change (`switch_interval=None`)."""

    def __init__(self, call: Any, config: Any, **options: Any) -> None:
        super().__init__(call, config, switch_interval=None, **options)


async def _engine(
    pulse: PulseAudio,
    base_url: str,
    busy_loop: bool = False,
    engine_class: type[VoiceEngine] = VoiceEngine,
    python_switch_interval: float | None = None,
    **config: Any,
) -> list[float]:
    link = pulse.add_link("alice", "bob")
    previous = sys.getswitchinterval()
    if python_switch_interval is not None:
        sys.setswitchinterval(python_switch_interval)
        engine_class = KeepSwitchIntervalEngine
    try:
        return await _engine_call(pulse, base_url, link, busy_loop, engine_class, **config)
    finally:
        sys.setswitchinterval(previous)


async def _engine_call(
    pulse: PulseAudio,
    base_url: str,
    link: Any,
    busy_loop: bool,
    engine_class: type[VoiceEngine],
    **config: Any,
) -> list[float]:
    async with voice_call(base_url, link, engine_class, **config) as call:
        await asyncio.sleep(0.5)
        busy = asyncio.create_task(_busy_gui()) if busy_loop else None
        cpu, wall, threads = time.process_time(), time.monotonic(), _thread_cpu()
        probe = await talk(pulse, link, BURSTS)
        if busy is not None:
            busy.cancel()
        # Both engines and both SDK clients live in this process: half is one client's share.
        elapsed = time.monotonic() - wall
        RESULTS["cpu_per_client"] = (time.process_time() - cpu) / elapsed / 2
        RESULTS["threads"] = _per_thread_percent(threads, _thread_cpu(), elapsed)  # type: ignore[assignment]
        RESULTS["stats"] = call.bob.stats()  # type: ignore[assignment]
    return mouth_to_ear(probe)


ROWS: dict[str, dict[str, Any] | None] = {
    "reference-devices": None,
    "reference-pulse-loopback": None,
    "engine-20ms": {"frame_ms": 20, "noise_suppression": False},
    "engine-10ms": {"frame_ms": 10, "noise_suppression": False},
    "engine-20ms-busy-loop": {"frame_ms": 20, "noise_suppression": False, "busy_loop": True},
    "engine-20ms-busy-loop-5ms-switch": {
        "frame_ms": 20,
        "noise_suppression": False,
        "busy_loop": True,
        "python_switch_interval": 0.005,
    },
}


@pytest.mark.parametrize("row", list(ROWS))
def test_mouth_to_ear(
    benchmark: Any,
    row: str,
    pulse_cards: PulseAudio,  # noqa: F811
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    tmp_path: Any,
) -> None:
    config = ROWS[row]
    if row == "reference-devices":
        measure = lambda: asyncio.run(_devices_reference(pulse_cards))  # noqa: E731
    elif row == "reference-pulse-loopback":
        measure = lambda: asyncio.run(_loopback_reference(pulse_cards))  # noqa: E731
    else:
        server = live_server_factory(
            {
                "VOICECHAT_DATABASE_URL": database_url,
                "VOICECHAT_VALKEY_URL": clean_valkey,
                "VOICECHAT_DATA_DIR": str(tmp_path / "live-data"),
            }
        )
        measure = lambda: asyncio.run(  # noqa: E731
            _engine(pulse_cards, server.base_url, **(config or {}))
        )
    delays = benchmark.pedantic(measure, rounds=1, iterations=1)
    assert delays, "no burst arrived"
    median = float(np.median(delays)) * 1000
    RESULTS[row] = median
    info: dict[str, Any] = {
        "mouth_to_ear_ms": round(median, 1),
        "min_ms": round(min(delays) * 1000, 1),
        "max_ms": round(max(delays) * 1000, 1),
        "bursts_heard": f"{len(delays)}/{BURSTS}",
        "all_ms": [round(d * 1000, 1) for d in delays],
    }
    reference = RESULTS.get("reference-devices")
    if row.startswith("engine") and reference:
        info["ratio_to_devices"] = round(median / reference, 2)
        info["added_ms"] = round(median - reference, 1)
        stats = RESULTS.get("stats")
        if isinstance(stats, dict):
            info["jitter_buffer_delay_ms"] = round(stats["jitter_buffer_delay"] * 1000, 1)
            info["underruns"] = stats["underruns"]
            info["callback_max_us"] = stats["callback_max_us"]
        info["cpu_per_client_percent"] = round(RESULTS["cpu_per_client"] * 100, 1)
        # Percent of a core per thread name, both clients (and the SFU's media thread).
        info["cpu_threads_percent"] = RESULTS["threads"]
    benchmark.extra_info.update(info)
    write_artifact(f"bench-{row}.json", info)
    print(f"\n{row}: {info}")
