"""The asyncio wrappers: events survive a cancelled consumer; closing ends the iterators."""

from __future__ import annotations

import asyncio
import contextlib

from voicechat._native.sfu import SfuConfig, SfuEvent
from voicechat.voice import Peer, Sfu


async def _first(sfu: Sfu) -> SfuEvent:
    async for event in sfu.events():
        return event
    raise AssertionError("events() ended")


async def test_a_cancelled_consumer_loses_no_event() -> None:
    async with Sfu(SfuConfig(media_port=0)) as sfu, Peer() as peer:
        await sfu.create_room("room")
        # Cancel a consumer while its background poll is waiting; then cause an event.
        waiting = asyncio.create_task(_first(sfu))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await peer.accept_answer(await sfu.join("room", "p", await peer.offer()))
        await sfu.leave("p")
        kinds = []
        async with asyncio.timeout(10):
            async for event in sfu.events():
                kinds.append(event.kind)
                if event.kind == "left":
                    break
        assert kinds[-1] == "left"


async def test_closing_ends_the_event_iterator() -> None:
    sfu = Sfu(SfuConfig(media_port=0))
    consumer = asyncio.create_task(_drain(sfu))
    await asyncio.sleep(0.05)
    await sfu.aclose()
    async with asyncio.timeout(5):
        assert await consumer == []


async def _drain(sfu: Sfu) -> list[SfuEvent]:
    return [event async for event in sfu.events()]
