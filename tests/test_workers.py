"""`voicechat serve` with several worker processes: REST, the gateway across workers, voice on
the one voice node beside them, and every child stopped by Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from redis.asyncio import Redis

from tests.conftest import LiveServer
from tests.utils.dirs import service_dir
from voicechat.cache import keys
from voicechat.sdk import Client, GatewayEvent
from voicechat.sdk.voice import VoiceCall

pytestmark = pytest.mark.slow

PASSWORD = "workers test password"


class Member:
    """An SDK client whose gateway notifications are collected."""

    def __init__(self, base_url: str) -> None:
        self.chat = Client(base_url)
        self.events: list[GatewayEvent] = []
        self.task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        async def collect() -> None:
            async for event in self.chat.events():
                self.events.append(event)

        self.task = asyncio.create_task(collect())
        await self.chat.gateway.connected()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.chat.close()


async def _instances_of(valkey: Redis, user_id: object) -> set[str]:
    """The API instances (workers) holding the user's open sockets."""
    return {v.decode() for v in await valkey.hvals(keys.presence(str(user_id)))}  # type: ignore[misc]


async def _eventually(check: Callable[[], bool], within: float = 15.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 (polling what other tasks collect)
            await asyncio.sleep(0.05)


def _children(server: LiveServer) -> list[psutil.Process]:
    return psutil.Process(server.process.pid).children(recursive=True)


async def test_two_workers_share_rest_gateway_and_one_voice_node(
    live_server_factory: Callable[..., LiveServer],
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> None:
    server = await asyncio.to_thread(
        live_server_factory,
        {
            "VOICECHAT_DATABASE_URL": database_url,
            "VOICECHAT_VALKEY_URL": clean_valkey,
            "VOICECHAT_DATA_DIR": str(tmp_path / "data"),
            "VOICECHAT_WORKERS": "2",
        },
    )
    assert "(2 workers)" in server.log
    children = _children(server)
    # Two workers and the voice node (and multiprocessing's resource tracker).
    spawned = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
    assert len(spawned) == 3, children
    async with httpx.AsyncClient() as http:
        health = (await http.get(f"{server.base_url}/health", timeout=10)).json()
    assert health["status"] == "ok"
    assert health["components"]["voice"]["detail"].startswith("1 node,")

    members: list[Member] = []
    valkey = Redis.from_url(clean_valkey)
    try:
        alice = Member(server.base_url)
        members.append(alice)
        await alice.chat.register("alice", PASSWORD)
        await alice.connect()
        assert alice.chat.user is not None
        alice_on = await _instances_of(valkey, alice.chat.user.id)
        text = await alice.chat.create_channel("general")
        lounge = await alice.chat.create_channel("Lounge", type="voice")

        # Bob opens sockets until one lands on the other worker (each is accepted by
        # whichever worker is quicker; ten on the same one has odds of 1 in 1024).
        bob: Member | None = None
        for attempt in range(10):
            bob = Member(server.base_url)
            members.append(bob)
            if attempt == 0:
                await bob.chat.register("bob", PASSWORD)
            else:
                await bob.chat.login("bob", PASSWORD)
            await bob.connect()
            assert bob.chat.user is not None
            if await _instances_of(valkey, bob.chat.user.id) - alice_on:
                break
        else:
            pytest.fail("every socket of bob landed on alice's worker")
        assert bob is not None

        # REST on any worker; the event reaches every socket, on both workers.
        sent = await alice.chat.send(text.id, "hello across workers")
        for member in members:
            await _eventually(
                lambda m=member: any(  # type: ignore[misc]
                    e.method == "message.new" and e.params["id"] == str(sent.id) for e in m.events
                )
            )
        page = await bob.chat.messages(text.id)
        assert [m.content for m in page.messages] == ["hello across workers"]

        # Voice: callers signalling through different workers meet in the one SFU.
        alice_call = VoiceCall(alice.chat, lounge.id)
        bob_call = VoiceCall(bob.chat, lounge.id)
        try:
            assert (await alice_call.join())["participants"] == []
            joined = await bob_call.join()
            assert joined["participants"] == [{"user_id": str(alice.chat.user.id), "muted": False}]
            await _eventually(lambda: any(e.method == "voice.user_joined" for e in alice.events))
        finally:
            await alice_call.peer.aclose()
            await bob_call.peer.aclose()
    finally:
        for member in members:
            await member.close()
        await valkey.aclose()

    # Ctrl-C stops the workers, then the voice node; nothing is left behind.
    server.process.send_signal(signal.SIGINT)
    status = await asyncio.to_thread(server.process.wait, 60)
    assert status == 0, server.log
    assert "voicechat: stopped (SIGINT)" in server.log
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], alive


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Somewhere the embedded PostgreSQL's own user can reach (not under root's /tmp/pytest-of).
    root = service_dir("workers")
    yield root / "data"
    shutil.rmtree(root, ignore_errors=True)


def test_sigterm_stops_workers_voice_node_and_embedded_services(
    live_server_factory: Callable[..., LiveServer], data_dir: Path
) -> None:
    server = live_server_factory({"VOICECHAT_DATA_DIR": str(data_dir), "VOICECHAT_WORKERS": "2"})
    log = server.log
    # The parent started PostgreSQL and Valkey once, and migrated once.
    assert log.count("postgres  embedded") == 1
    assert log.count("valkey    embedded") == 1
    assert log.count("schema migrated to 0001") == 1
    children = _children(server)
    assert any("postgres" in c.name() for c in children)
    health = httpx.get(f"{server.base_url}/health", timeout=10).json()
    assert health["status"] == "ok", health

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(60) == 0, server.log
    assert "voicechat: stopped (SIGTERM)" in server.log
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], alive
