"""Fixtures for the voice tests: an SFU on an OS-chosen port and a signaling pump.

The pump plays the gateway's part: it answers the SFU's renegotiation offers for each
participant and records every other event, as `voice.offer`/`voice.answer` will over the
WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from numpy.typing import NDArray

from voicechat._native.sfu import SfuConfig, SfuEvent
from voicechat.voice import Sfu

#: Answers an SDP offer for one participant.
Answerer = Callable[[str], Awaitable[str]]


@dataclass
class Signaling:
    """Answers offers for registered participants; keeps the other events."""

    sfu: Sfu
    answerers: dict[str, Answerer] = field(default_factory=dict)
    events: list[SfuEvent] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    async def run(self) -> None:
        async for event in self.sfu.events():
            if event.kind == "offer" and event.sdp is not None:
                answer = self.answerers.get(event.participant_id)
                if answer is None:
                    continue
                try:
                    sdp = await answer(event.sdp)
                    await self.sfu.accept_answer(event.participant_id, sdp)
                except Exception as exc:  # reported by settle()
                    self.errors.append(exc)
            else:
                self.events.append(event)

    async def settle(self, participants: list[str], within: float = 15.0) -> None:
        """Wait until every participant is connected and has no offer pending."""
        async with asyncio.timeout(within):
            while True:
                assert not self.errors, self.errors
                connected = {e.participant_id for e in self.events if e.kind == "connected"}
                pending = [await self.sfu.pending_offer(p) for p in participants]
                if set(participants) <= connected and all(p is None for p in pending):
                    return
                await asyncio.sleep(0.05)

    def find(self, kind: str, participant_id: str) -> SfuEvent | None:
        return next(
            (e for e in self.events if e.kind == kind and e.participant_id == participant_id),
            None,
        )


@pytest.fixture
async def sfu() -> AsyncIterator[Sfu]:
    # Above the native peer's idle consent interval (3 s); browsers check about every 5 s.
    async with Sfu(SfuConfig(media_port=0, ice_timeout=5.0)) as sfu:
        await sfu.create_room("room")
        yield sfu


@pytest.fixture
async def signaling(sfu: Sfu) -> AsyncIterator[Signaling]:
    signaling = Signaling(sfu)
    task = asyncio.create_task(signaling.run())
    yield signaling
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def tone(freq: float, start: int, count: int, amplitude: float = 0.3) -> NDArray[np.int16]:
    """`count` samples of a sine at `freq` Hz (48 kHz), from sample `start`."""
    t = (np.arange(count) + start) / 48_000
    return (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def dominant_frequency(samples: NDArray[np.int16]) -> tuple[float, float]:
    """The strongest frequency of 48 kHz mono audio, and its share of the spectrum's power."""
    x = samples.astype(np.float64) * np.hanning(len(samples))
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / 48_000)
    peak = int(np.argmax(power))
    band = power[max(peak - 3, 0) : peak + 4].sum()
    return float(freqs[peak]), float(band / power.sum())


def share_at(samples: NDArray[np.int16], freq: float) -> float:
    """The share of the spectrum's power of 48 kHz mono audio within a few bins of `freq`."""
    x = samples.astype(np.float64) * np.hanning(len(samples))
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / 48_000)
    i = int(np.argmin(np.abs(freqs - freq)))
    return float(power[max(i - 3, 0) : i + 4].sum() / power.sum())
