"""The client's voice engine: sound devices <-> native DSP pipelines <-> the voice call.

Threads (none of them is the asyncio loop, so a busy GUI never delays audio):

- PortAudio's input and output callbacks only move buffers: the input callback copies its
  block into a queue; the output callback copies the frame the worker left for it (or
  silence) and tells the worker it was taken.
- The worker thread owns both pipelines (a native pipeline object belongs to one thread): it
  encodes input frames and sends them (gated by mute, deafen, push-to-talk or voice
  activity), pushes received packets into the per-sender jitter buffers, and decodes and mixes
  the next output frame just in time, `OUTPUT_LEAD` before the output callback is due.
- The receive thread waits for packets from the call's native peer and hands them to the
  worker with their arrival time.

Without devices (`AudioConfig(input_device="none", output_device="none")`, or
`VoiceEngine(..., devices=False)`) a clock thread stands in for the callbacks: input is what
`feed_input()` queued (else silence), and output frames are kept for `take_output()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from voicechat._native import CorruptPacketError, SfuStoppedError
from voicechat._native.dsp import CapturePipeline, PlaybackPipeline
from voicechat._native.sfu import ReceivedPacket
from voicechat.sdk.audio.devices import (
    NO_DEVICE,
    AudioDeviceError,
    AudioError,
    find_device,
    sounddevice,
    stream_closed,
    stream_opened,
)

log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000
#: How long before the output callback would run dry the worker decodes and mixes a frame
#: (covers thread wake-up and a GIL switch interval).
OUTPUT_LEAD = 0.006
#: Seconds between stats snapshots (the window of loss and jitter figures).
STATS_INTERVAL = 1.0
#: Output frames a device-less engine keeps for `take_output` (20 s of 20 ms frames).
TAP_FRAMES = 1000
#: Jitter buffer bounds (SPEC §6: 20-200 ms adaptive).
MIN_DELAY, MAX_DELAY = 0.02, 0.2

#: Sound card block (PortAudio period), independent of the Opus frame: PortAudio's ALSA host
#: API (and the ALSA pulse plugin) buffers about two blocks of input and three of output, so
#: the block sets most of the device latency (docs/audio.md, "Client engine").
DEVICE_BLOCK_MS = 10
#: PortAudio's suggested latency; it keeps to whole blocks anyway.
DEVICE_LATENCY = 0.005

#: The interpreter's GIL switch interval while an engine runs (Python's default is 5 ms).
GIL_SWITCH_INTERVAL = 0.001

Mode = Literal["voice_activity", "push_to_talk"]


class AudioConfigError(AudioError, ValueError):
    """An audio setting outside its range."""


@dataclass
class AudioConfig:
    """Everything the Settings screen sets.

    Args:
        input_device: Input device name (see `list_devices`); None for the system default;
            "none" for no microphone (the engine sends what `feed_input` queued, else silence).
        output_device: Output device name; None for the default; "none" for no speaker (output
            frames are kept for `take_output`).
        noise_suppression: RNNoise on the microphone.
        mode: "voice_activity" sends while the voice activity detector hears speech (with
            300 ms hangover); "push_to_talk" sends while `push_to_talk(True)`.
        bitrate: Opus bitrate, 24000 to 96000 bit/s.
        frame_ms: Opus frame, 10, 20, 40 or 60 ms.
    """

    input_device: str | None = None
    output_device: str | None = None
    noise_suppression: bool = True
    mode: Mode = "voice_activity"
    bitrate: int = 64000
    frame_ms: int = 20

    def __post_init__(self) -> None:
        if self.mode not in ("voice_activity", "push_to_talk"):
            raise AudioConfigError(
                f"mode must be 'voice_activity' or 'push_to_talk', not {self.mode!r}"
            )
        if not 24000 <= self.bitrate <= 96000:
            raise AudioConfigError(f"bitrate must be 24000 to 96000 bit/s, not {self.bitrate}")
        if self.frame_ms not in (10, 20, 40, 60):
            raise AudioConfigError(f"frame_ms must be 10, 20, 40 or 60, not {self.frame_ms}")

    @property
    def frame_samples(self) -> int:
        return SAMPLE_RATE * self.frame_ms // 1000


class MediaTransport(Protocol):
    """What the engine needs from a call; `voicechat.sdk.voice.VoiceCall` is one."""

    def send(self, opus_packet: bytes, audio_level: int = 127) -> None: ...

    def receive(self, timeout: float) -> ReceivedPacket | None: ...

    def media_stats(self) -> dict[str, Any]: ...


# Worker events: (kind, payload, time).
_INPUT, _DEMAND, _PACKET, _COMMAND, _STOP = range(5)
_Event = tuple[int, Any, float]


@dataclass
class _Snapshot:
    input_level: float = 0.0
    speaking_local: bool = False
    sending: bool = False
    remote_levels: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


class VoiceEngine:
    """Captures, encodes and sends the microphone; receives, decodes, mixes and plays the others.

    Args:
        call: The voice call (its `send`, `receive` and `media_stats`).
        config: Devices and codec settings.
        devices: False runs without sound devices whatever `config` says (for tests and
            headless use), as if both devices were "none".
        block_ms: Sound card block, 5, 10 or 20 ms (see `DEVICE_BLOCK_MS`).
        device_latency: PortAudio's suggested latency (seconds, or "low"/"high").
        switch_interval: `start()` lowers the interpreter's GIL switch interval to this
            (process-wide, never raised) so that audio threads do not wait 5 ms for the GIL
            behind a busy GUI; None leaves it alone.

    `start()` opens the streams and starts the threads; `stop()` closes them. Settings apply
    live through the properties and `apply()`.
    """

    def __init__(
        self,
        call: MediaTransport,
        config: AudioConfig,
        *,
        devices: bool = True,
        block_ms: int = DEVICE_BLOCK_MS,
        device_latency: float | str = DEVICE_LATENCY,
        switch_interval: float | None = GIL_SWITCH_INTERVAL,
    ) -> None:
        if block_ms not in (5, 10, 20):
            raise AudioConfigError(f"block_ms must be 5, 10 or 20, not {block_ms}")
        self._devices = devices
        self._switch_interval = switch_interval
        self._block = SAMPLE_RATE * block_ms // 1000
        self._device_latency = device_latency
        self._current: NDArray[np.float32] | None = None
        self._offset = 0
        self._input_frame = np.zeros(config.frame_samples, np.float32)
        self._input_filled = 0
        self.call = call
        config = self._device_less(config)
        self._config = config
        self._muted = False
        self._deafened = False
        self._ptt = False
        self._volumes: dict[str, float] = {}
        self._events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self._output: deque[NDArray[np.float32]] = deque()
        self._fed: deque[NDArray[np.float32]] = deque()
        self._tap: deque[NDArray[np.float32]] = deque(maxlen=TAP_FRAMES)
        self._snapshot = _Snapshot()
        self._counters = {
            "underruns": 0,
            "input_overflows": 0,
            "output_underflows": 0,
            "callback_max_us": 0,
        }
        self._input_stream: Any = None
        self._output_stream: Any = None
        self._threads: list[threading.Thread] = []
        self._clock: threading.Thread | None = None
        self._clock_stop = threading.Event()
        self._running = threading.Event()
        self._started = False
        self._closing = False
        #: A readable sentence when a device failed mid-call (re-open with `apply`), else None.
        self.device_error: str | None = None

    # ---- settings -------------------------------------------------------------------------

    @property
    def config(self) -> AudioConfig:
        return self._config

    @property
    def muted(self) -> bool:
        """Whether the microphone is off (nothing is sent); deafened implies muted."""
        return self._muted or self._deafened

    @muted.setter
    def muted(self, value: bool) -> None:
        self._muted = bool(value)

    @property
    def deafened(self) -> bool:
        """Whether the speaker is silent (and the microphone off)."""
        return self._deafened

    @deafened.setter
    def deafened(self, value: bool) -> None:
        self._deafened = bool(value)

    def push_to_talk(self, pressed: bool) -> None:
        """The push-to-talk key went down (True) or up; only matters in push_to_talk mode."""
        self._ptt = bool(pressed)

    def set_user_volume(self, user_id: str, volume: float) -> None:
        """Set how loud `user_id` plays here: 0.0 (silent) to 2.0 (+6 dB); 1.0 unchanged."""
        if not (isinstance(volume, int | float) and 0.0 <= volume <= 2.0):
            raise AudioConfigError(f"volume must be 0.0 to 2.0, not {volume!r}")
        self._volumes[str(user_id)] = float(volume)
        self._command(lambda worker: worker.set_gain(str(user_id), float(volume)))

    def apply(self, config: AudioConfig) -> None:
        """Apply new settings live; streams are re-opened only if devices or frame changed.

        Raises:
            AudioDeviceError: A new device cannot be opened (the old streams stay closed).
        """
        config = self._device_less(config)
        old, self._config = self._config, config
        if config.frame_ms != old.frame_ms:
            self._command(lambda worker: worker.rebuild(config))
        else:
            if config.bitrate != old.bitrate:
                self._command(lambda worker: worker.capture.set_bitrate(config.bitrate))
            if config.noise_suppression != old.noise_suppression:
                self._command(
                    lambda worker: setattr(worker.capture, "denoise", config.noise_suppression)
                )
        if self._started and (
            config.input_device != old.input_device
            or config.output_device != old.output_device
            or config.frame_ms != old.frame_ms
        ):
            self._close_streams()
            try:
                self._open_streams()
            except AudioDeviceError as exc:
                self.device_error = str(exc)
                raise

    # ---- what the UI shows ------------------------------------------------------------------

    @property
    def input_level(self) -> float:
        """Microphone level for a meter, 0 (silence, -60 dBov or less) to 1 (full scale)."""
        return self._snapshot.input_level

    @property
    def speaking_local(self) -> bool:
        """Whether this user is being sent as speaking right now."""
        return self._snapshot.sending

    @property
    def remote_levels(self) -> dict[str, int]:
        """RFC 6464 level (0 loud .. 127 silent) of each sender's last played frame."""
        return dict(self._snapshot.remote_levels)

    def stats(self) -> dict[str, Any]:
        """Figures for a connection-quality indicator.

        `packets_sent`, `packets_received` (the peer's counters), `loss` (fraction of frames
        lost over the last second, before FEC/concealment), `jitter` (s), `jitter_buffer_delay`
        (largest target delay, s), `rtt` (s, or None: the native peer does not measure it),
        `underruns` (output frames the worker was late for), `input_overflows` and
        `output_underflows` (PortAudio's), `callback_max_us` (longest audio callback),
        `device_error` (see the attribute), `quality` ("good", "fair", "poor", or "unknown"
        before anything was received).
        """
        stats = dict(self._snapshot.stats)
        try:
            media = self.call.media_stats()
        except SfuStoppedError:
            media = {}
        stats["packets_sent"] = int(media.get("packets_sent", 0))
        stats["packets_received"] = int(media.get("packets_received", 0))
        stats["rtt"] = media.get("rtt")
        stats.update(self._counters)
        stats["device_error"] = self.device_error
        stats.setdefault("quality", "unknown")
        return stats

    # ---- device-less I/O --------------------------------------------------------------------

    def feed_input(self, samples: NDArray[np.float32] | NDArray[np.int16]) -> None:
        """Queue mono 48 kHz audio as if the (device-less) microphone heard it."""
        data = np.asarray(samples)
        pcm = (
            (data.astype(np.float32) / 32768) if data.dtype == np.int16 else data.astype(np.float32)
        )
        n = self._config.frame_samples
        pcm = np.concatenate([pcm, np.zeros((-len(pcm)) % n, np.float32)]).astype(np.float32)
        self._fed.extend(pcm[k : k + n] for k in range(0, len(pcm), n))

    def take_output(self) -> NDArray[np.float32]:
        """What the device-less speaker played since the last call (float32, 48 kHz), at most
        the last `TAP_FRAMES` frames."""
        frames = []
        while self._tap:
            frames.append(self._tap.popleft())
        return np.concatenate(frames) if frames else np.zeros(0, np.float32)

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the streams and start moving audio both ways.

        Raises:
            AudioDeviceError: A device is missing or cannot be opened.
        """
        if self._started:
            return
        if self._switch_interval is not None and sys.getswitchinterval() > self._switch_interval:
            # Process-wide: a thread wanting the GIL (an audio callback) gets it within this
            # time from a busy one (the GUI), instead of Python's default 5 ms.
            sys.setswitchinterval(self._switch_interval)
        self._running.set()
        worker = _Worker(self)
        self._worker = worker
        self._threads = [
            threading.Thread(target=worker.run, name="voice-worker", daemon=True),
            threading.Thread(target=self._receive_loop, name="voice-receive", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._started = True
        try:
            # Opening a device can take tens of milliseconds: not on the loop.
            await asyncio.to_thread(self._open_streams)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close the streams and stop the threads. Idempotent."""
        if not self._started:
            return
        self._started = False
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._close_streams()
        self._running.clear()
        self._events.put((_STOP, None, 0.0))
        for thread in self._threads:
            thread.join(5)
        self._threads = []

    # ---- internals --------------------------------------------------------------------------

    def _device_less(self, config: AudioConfig) -> AudioConfig:
        if self._devices:
            return config
        return replace(config, input_device=NO_DEVICE, output_device=NO_DEVICE)

    def _command(self, action: Any) -> None:
        self._events.put((_COMMAND, action, 0.0))

    def _receive_loop(self) -> None:
        while self._running.is_set():
            try:
                packet = self.call.receive(0.1)
            except SfuStoppedError:
                return
            if packet is not None:
                self._events.put((_PACKET, packet, time.monotonic()))

    def _open_streams(self) -> None:
        self.device_error = None
        config = self._config
        self._input_frame = np.zeros(config.frame_samples, np.float32)
        self._input_filled = 0
        block = min(self._block, config.frame_samples)
        need_clock = NO_DEVICE in (config.input_device, config.output_device)
        if config.input_device != NO_DEVICE:
            sd = sounddevice()
            try:
                self._input_stream = sd.InputStream(
                    samplerate=SAMPLE_RATE,
                    blocksize=block,
                    device=find_device(config.input_device, output=False),
                    channels=1,
                    dtype="float32",
                    latency=self._device_latency,
                    callback=self._input_callback,
                    finished_callback=lambda: self._stream_finished("input"),
                )
                self._input_stream.start()
                stream_opened()
            except sd.PortAudioError as exc:
                self._input_stream = None
                raise AudioDeviceError(
                    f"cannot open the input device {config.input_device or 'default'}: {exc}"
                ) from exc
        if config.output_device != NO_DEVICE:
            sd = sounddevice()
            try:
                self._output_stream = sd.OutputStream(
                    samplerate=SAMPLE_RATE,
                    blocksize=block,
                    device=find_device(config.output_device, output=True),
                    channels=1,
                    dtype="float32",
                    latency=self._device_latency,
                    callback=self._output_callback,
                    finished_callback=lambda: self._stream_finished("output"),
                )
                self._output_stream.start()
                stream_opened()
            except sd.PortAudioError as exc:
                self._output_stream = None
                self._close_streams()
                raise AudioDeviceError(
                    f"cannot open the output device {config.output_device or 'default'}: {exc}"
                ) from exc
        if need_clock:
            self._clock_stop = threading.Event()
            clock = threading.Thread(
                target=self._virtual_device,
                args=(config, self._clock_stop),
                name="voice-clock",
                daemon=True,
            )
            self._clock = clock
            clock.start()

    def _stream_finished(self, kind: str) -> None:
        # PortAudio ends a stream by itself only when the device fails (e.g. unplugged).
        if not self._closing:
            self.device_error = f"the {kind} device stopped working (unplugged?)"

    def _close_streams(self) -> None:
        self._closing = True
        for name in ("_input_stream", "_output_stream"):
            stream = getattr(self, name)
            if stream is not None:
                setattr(self, name, None)
                with contextlib.suppress(Exception):
                    stream.stop()
                    stream.close()
                stream_closed()
        if self._clock is not None:
            self._clock_stop.set()
            self._clock.join(5)
            self._clock = None
        self._closing = False

    def _input_callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        started = time.perf_counter()
        if status.input_overflow:
            self._counters["input_overflows"] += 1
        # Hand over whole frames only: one worker wake-up per frame, not per block.
        block = indata[:, 0]
        buffer, filled = self._input_frame, self._input_filled
        taken = 0
        while taken < len(block):
            n = min(len(block) - taken, len(buffer) - filled)
            buffer[filled : filled + n] = block[taken : taken + n]
            filled += n
            taken += n
            if filled == len(buffer):
                self._events.put((_INPUT, buffer.copy(), 0.0))
                filled = 0
        self._input_filled = filled
        self._callback_time(started)

    def _callback_time(self, started: float) -> None:
        took = int((time.perf_counter() - started) * 1e6)
        if took > self._counters["callback_max_us"]:
            self._counters["callback_max_us"] = took

    def _output_callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        started = time.perf_counter()
        if status.output_underflow:
            self._counters["output_underflows"] += 1
        out = outdata[:, 0]
        filled, late = 0, False
        while filled < frames:
            current = self._current
            if current is None or self._offset >= len(current):
                if not self._output:
                    out[filled:] = 0
                    late = True
                    break
                current = self._current = self._output.popleft()
                self._offset = 0
            n = min(frames - filled, len(current) - self._offset)
            out[filled : filled + n] = current[self._offset : self._offset + n]
            filled += n
            self._offset += n
        remaining = sum(len(f) for f in self._output)
        if self._current is not None:
            remaining += len(self._current) - self._offset
        if late or remaining < 2 * frames:
            # The worker only needs to hear of callbacks after which a new frame is due soon.
            self._events.put((_DEMAND, (late, remaining, frames), time.monotonic()))
        self._callback_time(started)

    def _virtual_device(self, config: AudioConfig, stop: threading.Event) -> None:
        """The device-less direction(s): one frame each way per frame period."""
        period = config.frame_ms / 1000
        silence = np.zeros(config.frame_samples, np.float32)
        next_tick = time.monotonic()
        while not stop.is_set():
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            if config.input_device == NO_DEVICE:
                frame = self._fed.popleft() if self._fed else silence
                self._events.put((_INPUT, frame, 0.0))
            if config.output_device == NO_DEVICE:
                try:
                    self._tap.append(self._output.popleft())
                    late = False
                except IndexError:
                    self._tap.append(silence)
                    late = True
                self._events.put((_DEMAND, (late, 0, len(silence)), time.monotonic()))


class _Worker:
    """Owns the pipelines; runs on the worker thread only."""

    def __init__(self, engine: VoiceEngine) -> None:
        self.engine = engine
        self.senders: dict[str, int] = {}
        self.names: dict[int, str] = {}
        self.rebuild(engine.config)
        self.due: float | None = None
        self.call_closed = False
        self.previous: dict[str, float] = {}
        self.next_stats = time.monotonic() + STATS_INTERVAL

    def rebuild(self, config: AudioConfig) -> None:
        self.period = config.frame_ms / 1000
        self.capture = CapturePipeline(
            bitrate=config.bitrate,
            frame_ms=config.frame_ms,
            fec=True,
            dtx=False,  # gating is ours: unsent frames still advance the peer's RTP clock
            denoise=config.noise_suppression,
        )
        self.playback = PlaybackPipeline(
            frame_ms=config.frame_ms, min_delay=MIN_DELAY, max_delay=MAX_DELAY
        )
        self.activity = NoiseFloorGate(config.frame_ms)
        for user_id, index in self.senders.items():
            self.playback.set_gain(index, self.engine._volumes.get(user_id, 1.0))
        self.engine._output.clear()
        self.engine._current = None

    def set_gain(self, user_id: str, volume: float) -> None:
        index = self.senders.get(user_id)
        if index is not None:
            self.playback.set_gain(index, volume)

    def run(self) -> None:
        engine = self.engine
        events = engine._events
        while True:
            timeout = None if self.due is None else max(0.0, self.due - time.monotonic())
            try:
                kind, payload, at = events.get(timeout=timeout)
            except queue.Empty:
                kind, payload, at = -1, None, 0.0
            try:
                if kind == _STOP:
                    return
                if kind == _INPUT:
                    self.on_input(payload)
                elif kind == _PACKET:
                    self.on_packet(payload, at)
                elif kind == _DEMAND:
                    late, remaining, block = payload
                    # The first callback that will find too little buffered is due then.
                    callbacks = remaining // block + 1
                    self.due = at + callbacks * block / SAMPLE_RATE - OUTPUT_LEAD
                    if late:  # the callback ran dry: catch up now
                        engine._counters["underruns"] += 1
                        self.produce()
                        self.due = None
                elif kind == _COMMAND:
                    payload(self)
                if self.due is not None and time.monotonic() >= self.due:
                    self.due = None
                    self.produce()
                if time.monotonic() >= self.next_stats:
                    self.snapshot()
            except Exception:
                log.exception("voice engine: worker step failed")

    def on_input(self, frame: NDArray[np.float32]) -> None:
        engine = self.engine
        for packet in self.capture.push(frame):
            config = engine._config
            speech = self.activity.update(packet.level, packet.voice)
            gate = speech if config.mode == "voice_activity" else engine._ptt
            sending = gate and not engine.muted
            snapshot = engine._snapshot
            snapshot.input_level = level_to_meter(packet.level)
            snapshot.speaking_local = speech
            snapshot.sending = sending
            if self.call_closed:
                continue
            try:
                if sending:
                    engine.call.send(packet.payload, packet.level)
                else:
                    # The TOC byte alone is a DTX frame: not sent, but the peer's RTP clock
                    # moves on, so the next talk spurt shows a timestamp gap, not a late packet.
                    engine.call.send(packet.payload[:1], 127)
            except SfuStoppedError:
                self.call_closed = True  # the call ended under a running engine

    def on_packet(self, packet: ReceivedPacket, arrival: float) -> None:
        user_id = packet.participant_id or f"mid:{packet.mid}"
        index = self.senders.get(user_id)
        if index is None:
            index = len(self.senders)
            self.senders[user_id] = index
            self.names[index] = user_id
            self.playback.set_gain(index, self.engine._volumes.get(user_id, 1.0))
        with contextlib.suppress(CorruptPacketError):  # dropped, the stream goes on
            self.playback.push(index, packet.seq, packet.timestamp, packet.payload, arrival)

    def produce(self) -> None:
        engine = self.engine
        frame = self.playback.pop(time.monotonic() + OUTPUT_LEAD)
        if engine.deafened:
            frame.fill(0)
        queued = engine._output
        if len(queued) > 0 and not frame.any():
            # A frame behind since an underrun, and silent: skip this one to catch up.
            return
        queued.append(frame)

    def snapshot(self) -> None:
        self.next_stats = time.monotonic() + STATS_INTERVAL
        totals = {"played": 0.0, "lost": 0.0}
        jitter = delay = 0.0
        for index in self.playback.senders():
            stats = self.playback.stats(index)
            if stats is None:
                continue
            totals["played"] += stats["played"]
            totals["lost"] += stats["lost"]
            jitter = max(jitter, stats["jitter"])
            delay = max(delay, stats["target_delay"])
        played = totals["played"] - self.previous.get("played", 0.0)
        lost = totals["lost"] - self.previous.get("lost", 0.0)
        self.previous = totals
        loss = lost / (played + lost) if played + lost > 0 else 0.0
        if totals["played"] == 0:
            quality = "unknown"
        elif loss > 0.1 or delay > 0.15:
            quality = "poor"
        elif loss > 0.02 or delay > 0.08:
            quality = "fair"
        else:
            quality = "good"
        levels = {self.names[i]: level for i, level in self.playback.levels() if i in self.names}
        snapshot = self.engine._snapshot
        self.engine._snapshot = _Snapshot(
            input_level=snapshot.input_level,
            speaking_local=snapshot.speaking_local,
            sending=snapshot.sending,
            remote_levels=levels,
            stats={
                "loss": loss,
                "jitter": jitter,
                "jitter_buffer_delay": delay,
                "quality": quality,
                "senders": len(self.senders),
            },
        )


class NoiseFloorGate:
    """Voice activity over an adaptive noise floor, on top of the pipeline's detector.

    The pipeline's detector (a fixed -50 dBov threshold and RNNoise's voice probability)
    passes steady noise louder than the threshold: RNNoise scores white hiss at -40 dBFS as
    voice (0.93 median). This gate also wants the frame `MARGIN_DB` louder than the noise
    floor, estimated as the `FLOOR_PERCENTILE`th percentile (towards quiet) of the last
    `WINDOW` seconds of frame levels, so a steady fan or hiss stops being sent within
    `WINDOW` seconds while speech over it still goes through. The decision holds for
    `HANGOVER` seconds after the last frame that passed, like the pipeline's.
    """

    WINDOW = 3.0
    FLOOR_PERCENTILE = 90  # of levels in -dBov, so the quiet end
    MARGIN_DB = 6.0
    HANGOVER = 0.3

    def __init__(self, frame_ms: int) -> None:
        frames = int(self.WINDOW * 1000 / frame_ms)
        # Start from silence: until a window of input is in, only the fixed threshold counts.
        self.levels: deque[int] = deque([127] * frames, maxlen=frames)
        self.hangover = max(1, int(self.HANGOVER * 1000 / frame_ms))
        self.floor = 127.0
        self.open_for = 0
        self.refresh = max(1, 200 // frame_ms)  # re-estimate every 200 ms
        self.count = 0

    def update(self, level: int, voice: bool) -> bool:
        """Take one frame's RFC 6464 level and the pipeline's decision; return the gate's."""
        self.levels.append(level)
        self.count += 1
        if self.count % self.refresh == 0:
            self.floor = float(np.percentile(self.levels, self.FLOOR_PERCENTILE))
        if voice and level <= self.floor - self.MARGIN_DB:
            self.open_for = self.hangover
        elif self.open_for > 0:
            self.open_for -= 1
        return self.open_for > 0


def level_to_meter(level: int) -> float:
    """An RFC 6464 level (0 loud .. 127 silent) as a 0..1 meter value over 60 dB."""
    return max(0.0, 1.0 - min(level, 60) / 60)


__all__ = ["AudioConfig", "AudioConfigError", "MediaTransport", "VoiceEngine"]
