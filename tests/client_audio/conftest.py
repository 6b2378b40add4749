"""Fixtures for the client audio tests: the private PulseAudio daemon (tests/pulse.py), and
two users in a call through a real in-process SFU (native peers, DTLS-SRTP over loopback UDP)
for engine tests that need no API server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import pytest
from numpy.typing import NDArray

from tests.pulse import pulse_audio, pulse_cards  # noqa: F401  (fixtures)
from voicechat._native.sfu import ReceivedPacket, SfuConfig
from voicechat.voice import Peer, Sfu

RATE = 48_000


class PeerCall:
    """A call as the engine sees it (`MediaTransport`), over a native peer in an SFU room."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    def send(self, opus_packet: bytes, audio_level: int = 127) -> None:
        self.peer.send(opus_packet, audio_level)

    def receive(self, timeout: float) -> ReceivedPacket | None:
        return self.peer.native.recv(timeout)

    def media_stats(self) -> dict[str, int]:
        return self.peer.native.stats()


@dataclass
class Room:
    sfu: Sfu
    calls: dict[str, PeerCall]


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    """Users "alice" and "bob" connected in one SFU room, renegotiated, ready to talk."""
    async with Sfu(SfuConfig(media_port=0, ice_timeout=5.0)) as sfu:
        await sfu.create_room("room")
        peers = {"alice": Peer(), "bob": Peer()}

        async def pump() -> None:
            async for event in sfu.events():
                if event.kind == "offer" and event.sdp is not None:
                    answer = await peers[event.participant_id].accept_offer(event.sdp)
                    await sfu.accept_answer(event.participant_id, answer)

        task = asyncio.create_task(pump())
        try:
            for name, peer in peers.items():
                await peer.accept_answer(await sfu.join("room", name, await peer.offer()))
            async with asyncio.timeout(15):
                for name, peer in peers.items():
                    await peer.wait_connected()
                    # The SFU has no signal to await for "renegotiated": poll it.
                    while await sfu.pending_offer(name) is not None:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # the answers reach the peers
            yield Room(sfu, {name: PeerCall(peer) for name, peer in peers.items()})
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for peer in peers.values():
                await peer.aclose()


def tone(frequency: float, seconds: float, amplitude: float = 0.3) -> NDArray[np.float32]:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def tone_power(pcm: NDArray[np.float32], frequency: float) -> tuple[float, float]:
    """(RMS of the signal, share of its power within 30 Hz of `frequency`)."""
    if len(pcm) == 0:
        return 0.0, 0.0
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm)))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / RATE)
    total = float(spectrum.sum())
    band = float(spectrum[np.abs(freqs - frequency) < 30].sum())
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    return rms, band / total if total > 0 else 0.0
