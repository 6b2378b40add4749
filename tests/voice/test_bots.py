"""The example bots against a live server: one plays a WAV file into a voice channel, the
other records the channel to a WAV file, and the recording carries the played tone."""

from __future__ import annotations

import asyncio
import importlib.util
import wave
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.conftest import LiveServer
from tests.voice.conftest import dominant_frequency
from voicechat.sdk import Client

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tone_wav(path: Path, frequency: float, seconds: float, rate: int = 44100) -> None:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * 32767 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())


async def test_play_and_record_bots(live_server: LiveServer, tmp_path: Path) -> None:
    play_bot, record_bot = _example("play_wav_bot"), _example("record_bot")
    source, recording = tmp_path / "tone.wav", tmp_path / "recording.wav"
    _tone_wav(source, 523.0, seconds=3.0)  # 44.1 kHz: the bot resamples it
    async with Client(live_server.base_url) as admin:
        await admin.register("admin", "admin password")
        await admin.create_channel("Lounge", type="voice")
    async with (
        Client(live_server.base_url) as player,
        Client(live_server.base_url) as recorder,
    ):
        await player.register("player", "player password")
        await recorder.register("recorder", "recorder password")
        recording_task = asyncio.create_task(
            record_bot.record(recorder, "Lounge", recording, seconds=6.0)
        )
        await asyncio.sleep(1.5)  # the recorder is in the channel first
        await play_bot.play(player, "Lounge", source)
        await recording_task
    with wave.open(str(recording), "rb") as wav:
        assert wav.getframerate() == 48000
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    assert len(pcm) == 6 * 48000
    loud = pcm[np.abs(pcm) > 1000]
    assert len(loud) > 48000, "the recording should hold about 3 s of the tone"
    frequency, share = dominant_frequency(pcm)
    assert abs(frequency - 523.0) < 15
    assert share > 0.5
