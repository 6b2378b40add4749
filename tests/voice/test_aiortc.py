"""Interop with aiortc, an independent WebRTC implementation: two clients join a room, each
sends its own tone and hears the other's, never its own.

aioice leaves 127.0.0.1 out of its host candidates (`aioice.ice.get_host_addresses`), so a
client on this machine can only offer its non-loopback addresses. The SFU is therefore bound
to the first such address, found with that same aioice function; no aioice behaviour is
patched. Without a non-loopback IPv4 address the test is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections.abc import AsyncIterator

import av
import numpy as np
import pytest
from aioice.ice import get_host_addresses
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from tests.voice.conftest import Signaling, dominant_frequency, tone
from voicechat._native.sfu import SfuConfig
from voicechat.voice import Sfu

TONES = {"alice": 440.0, "bob": 1_000.0}
FRAME = 960


class Tone(MediaStreamTrack):
    """A sine at a fixed frequency, paced in real time, 20 ms mono frames at 48 kHz."""

    kind = "audio"

    def __init__(self, freq: float) -> None:
        super().__init__()
        self._freq = freq
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._n * 0.02 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        samples = tone(self._freq, self._n * FRAME, FRAME)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48_000
        frame.pts = self._n * FRAME
        frame.time_base = fractions.Fraction(1, 48_000)
        self._n += 1
        return frame


def host_ip() -> str:
    addresses = get_host_addresses(use_ipv4=True, use_ipv6=False)
    if not addresses:
        pytest.skip("aiortc needs a non-loopback IPv4 address for its host candidates")
    return addresses[0]


@pytest.fixture
async def lan_sfu() -> AsyncIterator[Sfu]:
    async with Sfu(SfuConfig(bind_ip=host_ip(), media_port=0, ice_timeout=5.0)) as sfu:
        await sfu.create_room("room")
        yield sfu


@pytest.fixture
async def lan_signaling(lan_sfu: Sfu) -> AsyncIterator[Signaling]:
    signaling = Signaling(lan_sfu)
    task = asyncio.create_task(signaling.run())
    yield signaling
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Client:
    """One aiortc peer connection sending a tone and recording what it receives per track."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(Tone(TONES[name]))
        self.received: dict[str, list[np.ndarray]] = {}
        self._readers: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._readers.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        frames = self.received.setdefault(track.id, [])
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.AudioFrame)
                pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
                frames.append(pcm.astype(np.int16))

    async def answer(self, offer: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def join(self, sfu: Sfu, signaling: Signaling) -> None:
        signaling.answerers[self.name] = self.answer
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await sfu.join("room", self.name, self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def close(self) -> None:
        await self.pc.close()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


async def test_two_aiortc_clients_hear_each_other_and_never_themselves(
    lan_sfu: Sfu, lan_signaling: Signaling
) -> None:
    alice, bob = Client("alice"), Client("bob")
    try:
        await alice.join(lan_sfu, lan_signaling)
        await bob.join(lan_sfu, lan_signaling)
        await lan_signaling.settle(["alice", "bob"], within=30)
        await asyncio.sleep(3)
        for me, other in [(alice, bob), (bob, alice)]:
            # One track per other participant, named after it (msid): never our own.
            assert set(me.received) == {other.name}, (me.name, list(me.received))
            frames = me.received[other.name]
            assert len(frames) >= 50, (me.name, len(frames))
            pcm = np.concatenate(frames[-50:])
            freq, share = dominant_frequency(pcm)
            assert abs(freq - TONES[other.name]) < 15, (me.name, freq)
            assert share > 0.5, (me.name, share)
            _own, own_share = _share_at(pcm, TONES[me.name])
            assert own_share < 0.01, (me.name, own_share)
        stats = await lan_sfu.stats("alice")
        assert stats.packets_in > 100
        assert stats.packets_out > 100
    finally:
        await alice.close()
        await bob.close()


def _share_at(samples: np.ndarray, freq: float) -> tuple[float, float]:
    x = samples.astype(np.float64) * np.hanning(len(samples))
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / 48_000)
    i = int(np.argmin(np.abs(freqs - freq)))
    return float(freqs[i]), float(power[max(i - 3, 0) : i + 4].sum() / power.sum())
