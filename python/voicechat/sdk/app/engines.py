"""How the session drives audio: an engine per call, made by an injectable factory.

The default factory builds `voicechat.sdk.audio.VoiceEngine` (sound devices through
sounddevice, the native DSP and peer). Tests and headless tools pass their own factory, e.g.
an engine that feeds the same real native peer from a file or a generator and never opens a
device.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

from voicechat.sdk.app.settings import AudioSettings
from voicechat.sdk.call import VoiceCall


class VoiceEngineLike(Protocol):
    """What the session needs of an audio engine (the AUDIO helper's `VoiceEngine`)."""

    muted: bool
    deafened: bool

    async def start(self) -> None:
        """Open the streams and start moving packets both ways."""

    async def stop(self) -> None:
        """Stop (idempotent)."""

    def push_to_talk(self, pressed: bool) -> None:
        """The push-to-talk key went down or up."""

    def set_user_volume(self, user_id: str, volume: float) -> None:
        """Playback volume of one participant, 0.0 to 2.0."""

    def stats(self) -> dict[str, Any]:
        """Packets, loss, jitter buffer delay, round-trip time."""


class EngineFactory(Protocol):
    """Makes the engine of a call, and applies changed settings to a running one."""

    def create(self, call: VoiceCall, audio: AudioSettings) -> VoiceEngineLike:
        """A stopped engine for `call` (`audio` has bitrate and frame_ms filled in)."""

    def apply(self, engine: VoiceEngineLike, audio: AudioSettings) -> None:
        """Give a running engine new settings (devices, bitrate, denoising, mode)."""


class DeviceEngineFactory:
    """The real thing: `voicechat.sdk.audio.VoiceEngine` on the system's sound devices."""

    def create(self, call: VoiceCall, audio: AudioSettings) -> VoiceEngineLike:
        """A `VoiceEngine` with these settings."""
        audio_module = importlib.import_module("voicechat.sdk.audio")
        engine: VoiceEngineLike = audio_module.VoiceEngine(call, self._config(audio))
        return engine

    def apply(self, engine: VoiceEngineLike, audio: AudioSettings) -> None:
        """`VoiceEngine.apply` with these settings."""
        apply: Callable[[Any], None] = engine.apply  # type: ignore[attr-defined]
        apply(self._config(audio))

    @staticmethod
    def _config(audio: AudioSettings) -> Any:
        # Imported by name: the audio package pulls in sounddevice (and PortAudio), which
        # headless users of the session never load.
        audio_module = importlib.import_module("voicechat.sdk.audio")
        values = {k: v for k, v in audio.model_dump().items() if v is not None}
        return audio_module.AudioConfig(**values)
