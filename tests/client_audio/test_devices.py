"""Sound devices as the Settings screen lists them, and readable errors for bad ones."""

from __future__ import annotations

from dataclasses import replace

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


async def test_switching_to_a_missing_device_mid_call(pulse_cards: PulseAudio, room: Room) -> None:
    card = pulse_cards.add_card("switch")
    config = AudioConfig(input_device=card.input_device, output_device=card.output_device)
    engine = VoiceEngine(room.calls["alice"], config)
    await engine.start()
    try:
        with pytest.raises(AudioDeviceError, match="no output device called 'gone'"):
            engine.apply(replace(config, output_device="gone"))
        assert engine.stats()["device_error"] == "no output device called 'gone'"
        engine.apply(config)  # back to a working device
        assert engine.device_error is None
    finally:
        await engine.stop()
