"""Signals and measurements shared by the end-to-end test and benches/test_client_audio.py."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tests.client_audio.conftest import RATE, tone
from tests.pulse import Link, PulseAudio
from voicechat.sdk import Client
from voicechat.sdk.audio import AudioConfig, VoiceEngine
from voicechat.sdk.voice import VoiceCall

ROOT = Path(__file__).resolve().parents[2]
BURST, GAP = 0.3, 0.9  # seconds of 1 kHz tone, then silence (longer than the VAD hangover)


def artifacts_dir() -> Path:
    """`$VOICECHAT_TEST_ARTIFACTS/client_audio`, else tests/artifacts/client_audio (ignored)."""
    base = os.environ.get("VOICECHAT_TEST_ARTIFACTS")
    folder = (Path(base) if base else ROOT / "tests" / "artifacts") / "client_audio"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_artifact(name: str, data: dict[str, Any]) -> Path:
    path = artifacts_dir() / name
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def bursts(count: int) -> NDArray[np.float32]:
    """`count` tone bursts, each followed by a gap, after 100 ms of silence."""
    one = np.concatenate([tone(1000, BURST), np.zeros(int(GAP * RATE), np.float32)])
    return np.concatenate([np.zeros(RATE // 10, np.float32), *([one] * count)])


def onsets(pcm: NDArray[np.float32], threshold: float = 0.03) -> NDArray[np.int64]:
    """Sample indexes where a burst starts: the 2 ms envelope crosses `threshold`, at least
    half a second after the previous onset."""
    envelope = np.convolve(np.abs(pcm), np.ones(96) / 96, mode="same") > threshold
    rising = np.flatnonzero(envelope[1:] & ~envelope[:-1]) + 1
    starts: list[int] = []
    for index in rising:
        if not starts or index - starts[-1] > RATE // 2:
            starts.append(int(index))
    return np.array(starts, dtype=np.int64)


def mouth_to_ear(probe: NDArray[np.float32]) -> list[float]:
    """Seconds from each burst onset at the microphone (left) to its onset at the speaker
    (right) of a `Link` probe recording; bursts that never arrived are left out."""
    mouth, ear = onsets(probe[:, 0]), onsets(probe[:, 1])
    delays = []
    for start in mouth:
        later = ear[(ear >= start) & (ear < start + RATE // 2)]
        if len(later):
            delays.append(float(later[0] - start) / RATE)
    return delays


@dataclass
class Call:
    """Two users in one voice channel of a live server, each with an engine on a card."""

    alice: VoiceEngine
    bob: VoiceEngine
    calls: tuple[VoiceCall, VoiceCall]


@asynccontextmanager
async def voice_call(
    base_url: str, link: Link, engine_class: type[VoiceEngine] = VoiceEngine, **config: Any
) -> AsyncIterator[Call]:
    """Alice (the link's mouth) and Bob (its ear) join a voice channel with engines running."""
    async with Client(base_url) as admin, Client(base_url) as alice, Client(base_url) as bob:
        await admin.register("admin", "admin password")
        channel = await admin.create_channel("Lounge", type="voice")
        await alice.register("alice", "alice password")
        await bob.register("bob", "bob password")
        async with VoiceCall(alice, channel.id) as a_call, VoiceCall(bob, channel.id) as b_call:
            await asyncio.sleep(1.0)  # the SFU's renegotiation offers are answered
            engines = []
            for card in (link.mouth, link.ear):
                cfg = AudioConfig(
                    input_device=card.input_device, output_device=card.output_device, **config
                )
                engines.append(engine_class(a_call if card is link.mouth else b_call, cfg))
            for engine in engines:
                await engine.start()
            try:
                yield Call(engines[0], engines[1], (a_call, b_call))
            finally:
                for engine in engines:
                    await engine.stop()


async def talk(pulse: PulseAudio, link: Link, count: int) -> NDArray[np.float32]:
    """Play `count` bursts into the mouth's microphone; return the probe recording."""
    recording = pulse.record(link.probe_monitor, channels=2)
    await asyncio.sleep(0.3)
    player = pulse.play(link.mouth.mic_sink, bursts(count))
    await asyncio.to_thread(player.wait)
    await asyncio.sleep(0.5)
    return recording.stop()
