"""The asyncio wrappers: events survive a cancelled consumer; closing ends the iterators."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest

from voicechat._native.sfu import SfuConfig, SfuEvent
from voicechat.voice import Peer, Sfu
from voicechat.voice.media import check_socket_buffers


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


def _sysctl(name: str) -> int:
    return int(Path(f"/proc/sys/net/core/{name}").read_text())


async def test_media_socket_buffers_are_what_the_kernel_allows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The SFU asks for 4 MiB; Linux caps it at rmem_max/wmem_max and reports twice that.
    asked = 4 * 1024 * 1024
    expected = (2 * min(_sysctl("rmem_max"), asked), 2 * min(_sysctl("wmem_max"), asked))
    with caplog.at_level(logging.INFO, logger="voicechat.voice.media"):
        async with Sfu(SfuConfig(media_port=0, worker_threads=2)) as sfu:
            assert sfu.native.socket_buffer_sizes == [expected, expected]
            check_socket_buffers(sfu)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    if expected[0] // 2 < asked:  # a kernel that caps the buffer: the operator is told how
        assert len(warnings) == 1
        assert "sysctl -w net.core.rmem_max=4194304" in warnings[0]
    else:
        assert warnings == []
