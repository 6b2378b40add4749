"""The desktop client's audio: sound devices, and the engine between them and a voice call.

    engine = VoiceEngine(call, AudioConfig(input_device=None, output_device=None))
    await engine.start()          # microphone -> Opus -> call; call -> mix -> speaker
    engine.muted = True
    engine.set_user_volume(user_id, 1.5)
    engine.apply(AudioConfig(bitrate=32000, noise_suppression=False))
    await engine.stop()

See docs/audio.md ("Client engine") for the threads and the latency budget.
"""

from voicechat.sdk.audio.devices import (
    NO_DEVICE,
    AudioDevice,
    AudioDeviceError,
    AudioError,
    DeviceList,
    list_devices,
)
from voicechat.sdk.audio.engine import AudioConfig, AudioConfigError, MediaTransport, VoiceEngine

__all__ = [
    "NO_DEVICE",
    "AudioConfig",
    "AudioConfigError",
    "AudioDevice",
    "AudioDeviceError",
    "AudioError",
    "DeviceList",
    "MediaTransport",
    "VoiceEngine",
    "list_devices",
]
