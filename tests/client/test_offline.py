"""The outbox and reconnects: messages written while the server is down show as pending and
arrive exactly once when it is back; the session catches up and dials voice again."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.client.conftest import ServerEnv, headless_settings, until
from tests.conftest import LiveServer
from tests.utils.auth import DEFAULT_PASSWORD
from voicechat.sdk import Client
from voicechat.sdk.app import AppSession, Change, TokenStore

pytestmark = pytest.mark.slow  # restarts the server


async def test_offline_messages_arrive_once_and_voice_comes_back_after_a_restart(
    live_server_factory: Callable[..., LiveServer], server_env: ServerEnv, home: Path
) -> None:
    env = server_env()
    server = await asyncio.to_thread(live_server_factory, env)
    async with Client(server.base_url) as admin:
        await admin.register("admin", DEFAULT_PASSWORD)
        channel = await admin.create_channel("general")
        lounge = await admin.create_channel("Lounge", "voice")
        await admin.send(channel.id, "before the restart")

    settings = headless_settings(home, server.base_url)
    alice = await AppSession.register(
        server.base_url, "alice", DEFAULT_PASSWORD, settings=settings, tokens=TokenStore(home)
    )
    states: list[str] = []

    def follow(change: Change) -> None:
        if change.kind == "state":
            states.append(change.payload)

    alice.subscribe(follow)
    try:
        timeline = await alice.select_channel(channel.id)
        await until(lambda: alice.state == "online", "alice online")
        assert await alice.join_voice(lounge.id)

        assert await asyncio.to_thread(server.stop) == 0
        await until(lambda: alice.state == "reconnecting", "alice to notice")
        first = await alice.send(channel.id, "written offline 1")
        second = await alice.send(channel.id, "written offline 2")
        assert first.pending
        assert second.pending
        assert alice.outbox_size == 2
        assert [(e.content, e.pending) for e in timeline.entries] == [
            ("before the restart", False),
            ("written offline 1", True),
            ("written offline 2", True),
        ]

        again = await asyncio.to_thread(live_server_factory, env)
        assert again.base_url == server.base_url
        await until(lambda: alice.outbox_size == 0, "the outbox to flush", within=90)
        assert [(e.content, e.pending) for e in timeline.entries] == [
            ("before the restart", False),
            ("written offline 1", False),
            ("written offline 2", False),
        ]
        assert alice.state == "online"
        assert states[-1] == "online"
        assert "reconnecting" in states

        # Exactly once on the server, whatever retries happened.
        async with Client(again.base_url) as check:
            await check.login("admin", DEFAULT_PASSWORD)
            contents = [m.content async for m in check.history(channel.id)]
        assert contents == ["written offline 2", "written offline 1", "before the restart"]

        # The call was dialled again on the restarted server.
        await until(lambda: alice.voice is not None and alice.voice.connected, "voice back")
        assert alice.voice is not None
        assert alice.voice.channel_id == lounge.id

        # Down again; a message is written, and the client is quit before it could go out.
        assert await asyncio.to_thread(again.stop) == 0
        await until(lambda: alice.state == "reconnecting", "alice to notice again")
        assert (await alice.send(channel.id, "written before quitting")).pending
    finally:
        await alice.close()

    # The next start happens while the server is still down: the client opens anyway, from
    # the stored session, with the unsent message pending, and catches up once the server is
    # back.
    [kept] = (home / "outbox").iterdir()
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600, "unsent messages are private"
    resumed = await AppSession.resume(settings, tokens=TokenStore(home))
    assert resumed is not None
    try:
        assert resumed.state in ("connecting", "reconnecting")
        assert resumed.me is not None
        assert resumed.me.username == "alice"
        assert resumed.error is not None
        assert resumed.error.startswith("Cannot reach the server")
        assert resumed.outbox_size == 1
        [waiting] = resumed.timeline(channel.id).entries
        assert (waiting.content, waiting.pending) == ("written before quitting", True)
        third = await asyncio.to_thread(live_server_factory, env)
        await until(lambda: channel.id in resumed.channels, "the channels after the restart", 90)
        now: str = resumed.state  # (mypy keeps the narrowing from before the wait)
        assert now == "online"
        await until(lambda: resumed.outbox_size == 0, "the stored outbox to flush")
        timeline = await resumed.select_channel(channel.id)
        assert [(e.content, e.pending) for e in timeline.entries][-2:] == [
            ("written offline 2", False),
            ("written before quitting", False),
        ]
        async with Client(third.base_url) as check:
            await check.login("admin", DEFAULT_PASSWORD)
            contents = [m.content async for m in check.history(channel.id)]
        assert contents.count("written before quitting") == 1
        assert not list((home / "outbox").iterdir()), "nothing left on disk once sent"
    finally:
        await resumed.close()
