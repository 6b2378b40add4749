"""Sound devices through sounddevice (PortAudio).

PortAudio is loaded on first use, not on import, so device-less engines (tests, bots) work on
machines without `libportaudio2`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

#: The device name that means "no device": a device-less direction (see `AudioConfig`).
NO_DEVICE = "none"


class AudioError(Exception):
    """An audio problem, with a message fit to show to the user."""


class AudioDeviceError(AudioError):
    """A sound device is missing, busy, or cannot do what the engine needs."""


@dataclass(frozen=True)
class AudioDevice:
    """One input or output device."""

    name: str
    index: int
    default: bool


@dataclass(frozen=True)
class DeviceList:
    """The machine's input and output devices."""

    inputs: list[AudioDevice]
    outputs: list[AudioDevice]


_lock = threading.Lock()
_open_streams = 0


def sounddevice() -> ModuleType:
    """The sounddevice module; AudioDeviceError if PortAudio is not installed."""
    try:
        import sounddevice as sd  # type: ignore[import-untyped]
    except OSError as exc:  # sounddevice raises OSError when libportaudio2 is missing
        raise AudioDeviceError(
            "no audio system: PortAudio (libportaudio2) is not installed"
        ) from exc
    module: ModuleType = sd
    return module


def stream_opened() -> None:
    global _open_streams
    with _lock:
        _open_streams += 1


def stream_closed() -> None:
    global _open_streams
    with _lock:
        _open_streams -= 1


def list_devices(*, refresh: bool = False) -> DeviceList:
    """The input and output devices, system defaults flagged.

    Args:
        refresh: Re-scan (re-initialise PortAudio) to see devices plugged in since start.
            Skipped while an engine has streams open, since it would close them.

    Raises:
        AudioDeviceError: PortAudio is not installed.
    """
    sd = sounddevice()
    with _lock:
        if refresh and _open_streams == 0:
            sd._terminate()
            sd._initialize()
        devices: list[dict[str, Any]] = list(sd.query_devices())
        default_in = _default_index(sd, "input")
        default_out = _default_index(sd, "output")
    inputs = [
        AudioDevice(d["name"], i, i == default_in)
        for i, d in enumerate(devices)
        if d["max_input_channels"] > 0
    ]
    outputs = [
        AudioDevice(d["name"], i, i == default_out)
        for i, d in enumerate(devices)
        if d["max_output_channels"] > 0
    ]
    return DeviceList(inputs, outputs)


def _default_index(sd: ModuleType, kind: str) -> int:
    try:
        return int(sd.query_devices(kind=kind)["index"])
    except (sd.PortAudioError, ValueError):  # no default device of that kind
        return -1


def find_device(name: str | None, *, output: bool) -> int | None:
    """The PortAudio index of the device called `name` (None: the system default).

    An exact name wins over a substring match, so "pulse" does not pick "pulse (2)".

    Raises:
        AudioDeviceError: No such device, or none that can record (play).
    """
    if name is None:
        return None
    devices = list_devices()
    candidates = devices.outputs if output else devices.inputs
    exact = [d for d in candidates if d.name == name]
    partial = [d for d in candidates if name.lower() in d.name.lower()]
    match = exact or partial
    if not match:
        kind = "output" if output else "input"
        raise AudioDeviceError(f"no {kind} device called {name!r}")
    return match[0].index
