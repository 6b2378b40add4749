"""The client's voice engine: sound devices <-> the native voice link <-> the voice call.

The per-frame work is native (`voicechat._native.sfu.VoiceLink`, docs/audio.md "Client
engine"): one native thread owns the capture pipeline (denoise, level and voice activity, Opus),
the gating (mute, deafen, push-to-talk, voice activity over the noise floor), sending through the
call's native peer, and the per-sender jitter buffers, decoding and mixing with per-user gains;
another native thread reads the peer's packets. Neither takes the GIL.

What stays in Python: PortAudio's input and output callbacks, which each make one native call
(`write_input` / `read_output`: a copy between the callback's buffer and a lock-free ring), the
settings (forwarded to the link) and the figures the UI polls (read from the link).

Without devices (`AudioConfig(input_device="none", output_device="none")`, or
`VoiceEngine(..., devices=False)`) a clock thread stands in for the callbacks, one frame each way
per frame period: input is what `feed_input()` queued (else silence), and output frames are kept
for `take_output()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from voicechat._native import SfuStoppedError
from voicechat._native.sfu import Peer as NativePeer
from voicechat._native.sfu import VoiceLink
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
#: How long before the output callback would run dry the link decodes and mixes a frame
#: (covers the link thread's wake-up).
OUTPUT_LEAD = 0.006
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


class NativePeerHolder(Protocol):
    """Something with the call's native peer (`voicechat.voice.Peer` is one)."""

    @property
    def native(self) -> NativePeer: ...


class MediaTransport(Protocol):
    """What the engine needs from a call; `voicechat.sdk.voice.VoiceCall` is one.

    The engine sends and receives through `peer.native` itself (natively), so nothing else may
    read the call's packets while it runs.
    """

    @property
    def peer(self) -> NativePeerHolder: ...

    def media_stats(self) -> dict[str, Any]: ...


class VoiceEngine:
    """Captures, encodes and sends the microphone; receives, decodes, mixes and plays the others.

    Args:
        call: The voice call (its native peer and `media_stats`).
        config: Devices and codec settings.
        devices: False runs without sound devices whatever `config` says (for tests and
            headless use), as if both devices were "none".
        block_ms: Sound card block, 5, 10 or 20 ms (see `DEVICE_BLOCK_MS`).
        device_latency: PortAudio's suggested latency (seconds, or "low"/"high").
        switch_interval: `start()` lowers the interpreter's GIL switch interval to this
            (process-wide, never raised) so that the audio callbacks do not wait 5 ms for the
            GIL behind a busy GUI; None leaves it alone.

    `start()` starts the native link and opens the streams; `stop()` closes them. Settings
    apply live through the properties and `apply()`.
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
        self.call = call
        config = self._device_less(config)
        self._config = config
        self._muted = False
        self._deafened = False
        self._ptt = False
        self._volumes: dict[str, float] = {}
        self._link: VoiceLink | None = None
        self._fed: deque[NDArray[np.float32]] = deque()
        self._tap: deque[NDArray[np.float32]] = deque(maxlen=TAP_FRAMES)
        self._counters = {"input_overflows": 0, "output_underflows": 0, "callback_max_us": 0}
        self._input_stream: Any = None
        self._output_stream: Any = None
        self._clock: threading.Thread | None = None
        self._clock_stop = threading.Event()
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
        if self._link is not None:
            self._link.muted = self._muted

    @property
    def deafened(self) -> bool:
        """Whether the speaker is silent (and the microphone off)."""
        return self._deafened

    @deafened.setter
    def deafened(self, value: bool) -> None:
        self._deafened = bool(value)
        if self._link is not None:
            self._link.deafened = self._deafened

    def push_to_talk(self, pressed: bool) -> None:
        """The push-to-talk key went down (True) or up; only matters in push_to_talk mode."""
        self._ptt = bool(pressed)
        if self._link is not None:
            self._link.key_down = self._ptt

    def set_user_volume(self, user_id: str, volume: float) -> None:
        """Set how loud `user_id` plays here: 0.0 (silent) to 2.0 (+6 dB); 1.0 unchanged."""
        if not (isinstance(volume, int | float) and 0.0 <= volume <= 2.0):
            raise AudioConfigError(f"volume must be 0.0 to 2.0, not {volume!r}")
        self._volumes[str(user_id)] = float(volume)
        if self._link is not None:
            self._link.set_gain(str(user_id), float(volume))

    def apply(self, config: AudioConfig) -> None:
        """Apply new settings live; streams are re-opened only if devices or frame changed.

        Raises:
            AudioDeviceError: A new device cannot be opened (the old streams stay closed).
        """
        config = self._device_less(config)
        old, self._config = self._config, config
        link = self._link
        if link is not None:
            link.configure(
                frame_ms=config.frame_ms,
                bitrate=config.bitrate,
                denoise=config.noise_suppression,
            )
            link.push_to_talk = config.mode == "push_to_talk"
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
        return 0.0 if self._link is None else self._link.input_level

    @property
    def speaking_local(self) -> bool:
        """Whether this user is being sent as speaking right now."""
        return self._link is not None and self._link.sending

    @property
    def remote_levels(self) -> dict[str, int]:
        """RFC 6464 level (0 loud .. 127 silent) of each sender's last played frame."""
        return {} if self._link is None else self._link.remote_levels()

    def stats(self) -> dict[str, Any]:
        """Figures for a connection-quality indicator.

        `packets_sent`, `packets_received` (the peer's counters), `loss` (fraction of frames
        lost over the last second, before FEC/concealment), `jitter` (s), `jitter_buffer_delay`
        (largest target delay, s), `senders`, `rtt` (s, or None: the native peer does not
        measure it), `underruns` (output frames the link was late for), `input_overflows` and
        `output_underflows` (PortAudio's), `callback_max_us` (longest audio callback),
        `device_error` (see the attribute), `quality` ("good", "fair", "poor", or "unknown"
        before anything was received).
        """
        stats: dict[str, Any] = {}
        if self._link is not None:
            link = self._link.stats()
            for key in ("loss", "jitter", "jitter_buffer_delay", "quality", "senders"):
                stats[key] = link[key]
            stats["underruns"] = link["underruns"]
        try:
            media = self.call.media_stats()
        except SfuStoppedError:
            media = {}
        stats["packets_sent"] = int(media.get("packets_sent", 0))
        stats["packets_received"] = int(media.get("packets_received", 0))
        stats["rtt"] = media.get("rtt")
        stats.setdefault("underruns", 0)
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
        """Start the native link and open the streams.

        Raises:
            AudioDeviceError: A device is missing or cannot be opened.
        """
        if self._started:
            return
        if self._switch_interval is not None and sys.getswitchinterval() > self._switch_interval:
            # Process-wide: a thread wanting the GIL (an audio callback) gets it within this
            # time from a busy one (the GUI), instead of Python's default 5 ms.
            sys.setswitchinterval(self._switch_interval)
        config = self._config
        link = VoiceLink(
            self.call.peer.native,
            frame_ms=config.frame_ms,
            bitrate=config.bitrate,
            denoise=config.noise_suppression,
            push_to_talk=config.mode == "push_to_talk",
            min_delay=MIN_DELAY,
            max_delay=MAX_DELAY,
            output_lead=OUTPUT_LEAD,
        )
        link.muted = self._muted
        link.deafened = self._deafened
        link.key_down = self._ptt
        for user_id, volume in self._volumes.items():
            link.set_gain(user_id, volume)
        self._link = link
        self._started = True
        try:
            # Opening a device can take tens of milliseconds: not on the loop.
            await asyncio.to_thread(self._open_streams)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close the streams and stop the link. Idempotent."""
        if not self._started:
            return
        self._started = False
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._close_streams()
        if self._link is not None:
            self._link.close()

    # ---- internals --------------------------------------------------------------------------

    def _device_less(self, config: AudioConfig) -> AudioConfig:
        if self._devices:
            return config
        return replace(config, input_device=NO_DEVICE, output_device=NO_DEVICE)

    def _open_streams(self) -> None:
        self.device_error = None
        config = self._config
        link = self._link
        assert link is not None
        block = min(self._block, config.frame_samples)
        need_clock = NO_DEVICE in (config.input_device, config.output_device)
        if config.input_device != NO_DEVICE:
            sd = sounddevice()
            try:
                self._input_stream = sd.RawInputStream(
                    samplerate=SAMPLE_RATE,
                    blocksize=block,
                    device=find_device(config.input_device, output=False),
                    channels=1,
                    dtype="float32",
                    latency=self._device_latency,
                    callback=self._input_callback(link),
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
                self._output_stream = sd.RawOutputStream(
                    samplerate=SAMPLE_RATE,
                    blocksize=block,
                    device=find_device(config.output_device, output=True),
                    channels=1,
                    dtype="float32",
                    latency=self._device_latency,
                    callback=self._output_callback(link),
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
                args=(link, config, self._clock_stop),
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

    def _input_callback(self, link: VoiceLink) -> Any:
        """The input stream's callback: the block (a raw float32 buffer) into the link."""
        counters, write = self._counters, link.write_input
        clock = time.perf_counter

        def callback(indata: Any, frames: int, time_info: Any, status: Any) -> None:
            started = clock()
            write(indata)
            if status:
                counters["input_overflows"] += status.input_overflow
            took = int((clock() - started) * 1e6)
            if took > counters["callback_max_us"]:
                counters["callback_max_us"] = took

        return callback

    def _output_callback(self, link: VoiceLink) -> Any:
        """The output stream's callback: the link's next samples (or silence) into the block."""
        counters, read = self._counters, link.read_output
        clock = time.perf_counter

        def callback(outdata: Any, frames: int, time_info: Any, status: Any) -> None:
            started = clock()
            read(outdata)
            if status:
                counters["output_underflows"] += status.output_underflow
            took = int((clock() - started) * 1e6)
            if took > counters["callback_max_us"]:
                counters["callback_max_us"] = took

        return callback

    def _virtual_device(self, link: VoiceLink, config: AudioConfig, stop: threading.Event) -> None:
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
                link.write_input(self._fed.popleft() if self._fed else silence)
            if config.output_device == NO_DEVICE:
                frame = np.empty(config.frame_samples, np.float32)
                link.read_output(frame)
                self._tap.append(frame)


__all__ = ["AudioConfig", "AudioConfigError", "MediaTransport", "VoiceEngine"]
