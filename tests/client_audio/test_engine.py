"""The voice engine without sound devices or an API server: two engines on real pipelines,
talking through a real SFU with native peers; what each user would hear is read from the
device-less speaker (`take_output`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from tests.audio.signals import speech, white_noise
from tests.client_audio.conftest import RATE, Room, tone, tone_power
from voicechat._native import DspInputError
from voicechat._native.sfu import Peer as NativePeer
from voicechat._native.sfu import VoiceLink
from voicechat.sdk.audio import AudioConfig, AudioConfigError, VoiceEngine

HEARD_RMS = 0.02  # the tone is sent at 0.3 amplitude (about 0.21 RMS)


@pytest.fixture
async def engines(room: Room) -> AsyncIterator[dict[str, VoiceEngine]]:
    config = AudioConfig(noise_suppression=False)  # a pure tone is what RNNoise removes
    engines = {name: VoiceEngine(call, config, devices=False) for name, call in room.calls.items()}
    for engine in engines.values():
        await engine.start()
    yield engines
    for engine in engines.values():
        await engine.stop()


async def speak(engines: dict[str, VoiceEngine], seconds: float = 1.5) -> dict[str, np.ndarray]:
    """Alice says a 1 kHz tone; return what everyone heard meanwhile (and just after)."""
    for engine in engines.values():
        engine.take_output()
    engines["alice"].feed_input(tone(1000, seconds))
    await asyncio.sleep(seconds + 0.4)
    return {name: engine.take_output() for name, engine in engines.items()}


async def test_bob_hears_alice_and_alice_hears_no_echo(engines: dict[str, VoiceEngine]) -> None:
    heard = await speak(engines)
    rms, share = tone_power(heard["bob"], 1000)
    assert rms > HEARD_RMS, rms
    assert share > 0.8, share
    assert tone_power(heard["alice"], 1000)[0] < 1e-4
    stats = engines["bob"].stats()
    assert stats["packets_received"] >= 50
    assert stats["quality"] == "good"
    assert engines["alice"].stats()["packets_sent"] >= 50


async def test_mute_and_deafen(engines: dict[str, VoiceEngine]) -> None:
    engines["alice"].muted = True
    assert tone_power((await speak(engines))["bob"], 1000)[0] < 1e-4
    engines["alice"].muted = False
    engines["bob"].deafened = True
    assert engines["bob"].muted  # deafen implies mute
    assert tone_power((await speak(engines))["bob"], 1000)[0] < 1e-4
    engines["bob"].deafened = False
    assert tone_power((await speak(engines))["bob"], 1000)[0] > HEARD_RMS


async def test_per_user_volume(engines: dict[str, VoiceEngine]) -> None:
    normal = tone_power((await speak(engines))["bob"], 1000)[0]
    engines["bob"].set_user_volume("alice", 0.5)
    half = tone_power((await speak(engines))["bob"], 1000)[0]
    engines["bob"].set_user_volume("alice", 0.0)
    silent = tone_power((await speak(engines))["bob"], 1000)[0]
    assert 0.4 < half / normal < 0.6, (half, normal)
    assert silent < 1e-4
    with pytest.raises(AudioConfigError, match=r"volume must be 0\.0 to 2\.0"):
        engines["bob"].set_user_volume("alice", 3.0)


async def test_push_to_talk(engines: dict[str, VoiceEngine]) -> None:
    alice = engines["alice"]
    alice.apply(AudioConfig(noise_suppression=False, mode="push_to_talk"))
    assert tone_power((await speak(engines))["bob"], 1000)[0] < 1e-4
    alice.push_to_talk(True)
    assert tone_power((await speak(engines))["bob"], 1000)[0] > HEARD_RMS
    alice.push_to_talk(False)
    assert tone_power((await speak(engines))["bob"], 1000)[0] < 1e-4


async def test_voice_activity_gates_silence(engines: dict[str, VoiceEngine]) -> None:
    alice = engines["alice"]
    await speak(engines, 0.5)
    await asyncio.sleep(1.0)  # silence after the hangover: nothing is sent
    sent = alice.stats()["packets_sent"]
    await asyncio.sleep(0.5)
    assert alice.stats()["packets_sent"] == sent
    assert not alice.speaking_local
    engines["alice"].feed_input(tone(1000, 1.0))
    await asyncio.sleep(0.5)
    assert alice.speaking_local
    assert alice.input_level > 0.5


async def test_live_bitrate_frame_and_denoise_changes(engines: dict[str, VoiceEngine]) -> None:
    alice = engines["alice"]
    alice.apply(AudioConfig(noise_suppression=False, bitrate=24000, frame_ms=40))
    rms, share = tone_power((await speak(engines))["bob"], 1000)
    assert rms > HEARD_RMS, rms
    assert share > 0.8, share
    alice.apply(AudioConfig(noise_suppression=True, bitrate=96000, frame_ms=40))
    await speak(engines)  # RNNoise runs on the tone without error


def test_bad_settings_are_refused() -> None:
    with pytest.raises(AudioConfigError, match="bitrate must be 24000 to 96000"):
        AudioConfig(bitrate=8000)
    with pytest.raises(AudioConfigError, match="frame_ms must be 10, 20, 40 or 60"):
        AudioConfig(frame_ms=25)
    with pytest.raises(AudioConfigError, match="mode must be"):
        AudioConfig(mode="always")  # type: ignore[arg-type]


async def test_default_settings_send_speech_not_room_noise(room: Room) -> None:
    """Noise suppression and voice activity on (the defaults): speech is heard, a steady hiss
    on its own is not sent at all."""
    alice = VoiceEngine(room.calls["alice"], AudioConfig(), devices=False)
    bob = VoiceEngine(room.calls["bob"], AudioConfig(), devices=False)
    await alice.start()
    await bob.start()
    try:
        alice.feed_input(white_noise(RATE * 5, rms=0.01))  # -40 dBFS: RNNoise calls it voice
        await asyncio.sleep(3.5)  # the noise floor adapts within 3 s
        sent = alice.stats()["packets_sent"]
        await asyncio.sleep(1.2)
        assert alice.stats()["packets_sent"] == sent, "steady noise alone is not sent"
        bob.take_output()
        words = speech()
        alice.feed_input(words + white_noise(len(words), rms=0.01))
        await asyncio.sleep(len(words) / RATE + 0.5)
        heard = bob.take_output()
        assert alice.stats()["packets_sent"] > sent + 50
        assert np.sqrt(np.mean(heard**2)) > 0.02
    finally:
        await alice.stop()
        await bob.stop()


async def test_the_call_ending_under_a_running_engine(room: Room) -> None:
    engine = VoiceEngine(room.calls["alice"], AudioConfig(), devices=False)
    await engine.start()
    await room.calls["alice"].peer.aclose()
    engine.feed_input(tone(1000, 0.5))
    await asyncio.sleep(0.6)
    assert engine.stats()["packets_sent"] == 0  # the peer's counters are gone with it
    await engine.stop()
    await engine.stop()  # idempotent


def test_the_native_link_refuses_bad_buffers_and_settings() -> None:
    """What the sound card callbacks hand the native link must be float32 samples it can use;
    anything else is a clear error, never a crash."""
    peer = NativePeer()
    link = VoiceLink(peer, denoise=False)
    try:
        link.write_input(np.zeros(480, np.float32))
        out = np.ones(480, np.float32)
        assert link.read_output(out) == 0  # nothing received yet: silence
        assert not out.any()
        with pytest.raises(ValueError, match="float32"):
            link.write_input(np.zeros(480, np.int16))
        with pytest.raises(ValueError, match="contiguous"):
            link.read_output(np.zeros(960, np.float32)[::2])
        readonly = np.zeros(480, np.float32)
        readonly.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            link.read_output(readonly)
        with pytest.raises(DspInputError, match="gain"):
            link.set_gain("alice", 9.0)
        with pytest.raises(DspInputError):
            link.configure(frame_ms=25, bitrate=64000, denoise=False)
        with pytest.raises(DspInputError):
            VoiceLink(peer, frame_ms=25)
    finally:
        link.close()
        link.close()  # idempotent
        peer.close()
