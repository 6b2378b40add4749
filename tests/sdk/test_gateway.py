"""The SDK's gateway side against live `voicechat serve` processes: events arrive, typing and
presence go out, and the connection comes back by itself after a server restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.conftest import LiveServer
from tests.utils.net import free_port
from voicechat.sdk import Client, GatewayEvent

pytestmark = pytest.mark.slow


async def _next(events: AsyncIterator[GatewayEvent], method: str, wait: float = 15) -> GatewayEvent:
    async def find() -> GatewayEvent:
        async for event in events:
            if event.method == method:
                return event
        raise AssertionError("the event stream ended")

    return await asyncio.wait_for(find(), wait)


async def test_events_typing_and_presence(live_server: LiveServer) -> None:
    async with Client(live_server.base_url) as alice, Client(live_server.base_url) as bob:
        await alice.register("alice", "alice password")
        await bob.register("bob", "bob password")
        channel = await alice.create_channel("general")
        bob_events = bob.events()
        await bob.gateway.connected()
        assert bob.gateway.session["user"]["username"] == "bob"

        sent = await alice.send(channel.id, "hello bob")
        event = await _next(bob_events, "message.new")
        assert event.params["id"] == str(sent.id)
        assert event.params["content"] == "hello bob"

        await alice.typing(channel.id)
        typing = await _next(bob_events, "typing.start")
        assert typing.params["user_id"] == str(alice.user.id if alice.user else "")

        await alice.set_presence("dnd")
        presence = await _next(bob_events, "presence.update")
        assert presence.params["status"] in {"online", "dnd"}


async def test_reconnects_after_a_server_restart(
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> None:
    env = {
        "VOICECHAT_DATABASE_URL": database_url,
        "VOICECHAT_VALKEY_URL": clean_valkey,
        "VOICECHAT_DATA_DIR": str(tmp_path / "data"),
        "VOICECHAT_PORT": str(free_port()),
    }
    first = await asyncio.to_thread(live_server_factory, env)
    async with Client(first.base_url) as bot, Client(first.base_url) as user:
        await bot.register("bot", "bot password")
        await user.register("user", "user password")
        channel = await bot.create_channel("lobby")
        events = user.events()
        await user.gateway.connected()

        assert await asyncio.to_thread(first.stop) == 0
        second = await asyncio.to_thread(live_server_factory, env)
        assert second.base_url == first.base_url
        await _next(events, "gateway.reconnected", wait=60)
        await bot.send(channel.id, "still here")
        event = await _next(events, "message.new")
        assert event.params["content"] == "still here"
