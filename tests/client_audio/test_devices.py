"""Sound devices as the Settings screen lists them, and readable errors for bad ones."""

from __future__ import annotations

import pytest

from tests.client_audio.conftest import PeerCall, Room
from tests.pulse import PulseAudio
from voicechat.sdk.audio import AudioConfig, AudioDeviceError, VoiceEngine, list_devices


def test_virtual_cards_are_listed(pulse_cards: PulseAudio) -> None:
    card = pulse_cards.add_card("settings")
    devices = list_devices()
    assert card.input_device in [d.name for d in devices.inputs]
    assert card.output_device in [d.name for d in devices.outputs]
    assert sum(d.default for d in devices.inputs) == 1
    assert sum(d.default for d in devices.outputs) == 1


async def test_a_missing_device_is_a_readable_error(pulse_cards: PulseAudio, room: Room) -> None:
    call: PeerCall = room.calls["alice"]
    engine = VoiceEngine(call, AudioConfig(input_device="USB headset that was unplugged"))
    with pytest.raises(AudioDeviceError, match="no input device called 'USB headset"):
        await engine.start()
    await engine.stop()
    card = pulse_cards.add_card("good")
    engine = VoiceEngine(
        call, AudioConfig(input_device=card.input_device, output_device="no such speaker")
    )
    with pytest.raises(AudioDeviceError, match="no output device called 'no such speaker'"):
        await engine.start()
    await engine.stop()
