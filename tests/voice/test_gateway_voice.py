"""Voice through the real gateway: SDK clients signal over `/ws` (`voice.*`), native peers carry
the media to the SFU inside a live `voicechat serve`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import LiveServer
from voicechat.sdk import Client, GatewayEvent
from voicechat.sdk.app import readable_error
from voicechat.sdk.gateway import GatewayError
from voicechat.voice import Peer

pytestmark = pytest.mark.slow

LOUD = 20  # dBov: well above the SFU's speaking threshold


@dataclass
class VoiceClient:
    """One user: an SDK client for signaling and a native peer for media."""

    chat: Client
    peer: Peer
    events: list[GatewayEvent] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def pump(self) -> None:
        # Answers the server's renegotiation offers, as a real client does, and keeps the rest.
        async for event in self.chat.events():
            if event.method == "voice.offer":
                answer = await self.peer.accept_offer(event.params["sdp"])
                await self.chat.gateway.request(
                    "voice.answer", {"channel_id": event.params["channel_id"], "sdp": answer}
                )
            self.events.append(event)

    async def join(self, channel_id: str) -> dict[str, Any]:
        self.task = asyncio.create_task(self.pump())
        joined: dict[str, Any] = await self.chat.gateway.request(
            "voice.join", {"channel_id": channel_id}
        )
        answer = await self.chat.gateway.request(
            "voice.offer", {"channel_id": channel_id, "sdp": await self.peer.offer()}
        )
        await self.peer.accept_answer(answer["sdp"])
        async with asyncio.timeout(15):
            await self.peer.wait_connected()
        return joined

    def seen(self, method: str, **params: Any) -> bool:
        return any(
            e.method == method and all(e.params.get(k) == v for k, v in params.items())
            for e in self.events
        )


@pytest.fixture
async def voice_clients(live_server: LiveServer) -> AsyncIterator[list[VoiceClient]]:
    clients: list[VoiceClient] = []
    for name in ("admin", "alice", "bob"):
        chat = Client(live_server.base_url)
        await chat.register(name, f"{name} password")
        clients.append(VoiceClient(chat, Peer()))
    yield clients
    for client in clients:
        if client.task is not None:
            client.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client.task
        await client.peer.aclose()
        await client.chat.close()


async def _eventually(check: Any, within: float = 15.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 (polling what other tasks collect)
            await asyncio.sleep(0.05)


async def test_two_users_talk_through_the_gateway(voice_clients: list[VoiceClient]) -> None:
    admin, alice, bob = voice_clients
    channel = await admin.chat.create_channel("Lounge", type="voice")
    cid = str(channel.id)
    first = await alice.join(cid)
    assert first["participants"] == []
    assert first["audio"] == {"bitrate": 64000, "frame_ms": 20}
    # Someone who is not in the call sees who is (what a client loads on connect).
    states = await admin.chat.voice_states()
    assert [(s.channel_id, s.user_id, s.muted) for s in states] == [
        (channel.id, alice.chat.user.id if alice.chat.user else None, False)
    ]
    second = await bob.join(cid)
    assert second["participants"] == [
        {"user_id": str(alice.chat.user.id if alice.chat.user else ""), "muted": False}
    ]
    alice_id = str(alice.chat.user.id if alice.chat.user else "")
    bob_id = str(bob.chat.user.id if bob.chat.user else "")
    await _eventually(lambda: alice.seen("voice.user_joined", user_id=bob_id))

    # Bob receives Alice's packets on a track named after her, once renegotiation settled.
    async def talk() -> None:
        for _ in range(150):
            alice.peer.send(b"\xf8\xff\xfe" * 20, LOUD)
            await asyncio.sleep(0.02)

    talker = asyncio.create_task(talk())
    received: list[str | None] = []
    async with asyncio.timeout(20):
        async for packet in bob.peer.packets():
            received.append(packet.participant_id)
            if len(received) >= 20:
                break
    await talker
    assert set(received) == {alice_id}
    await _eventually(lambda: bob.seen("voice.speaking", user_id=alice_id, speaking=True))

    await alice.chat.gateway.request("voice.mute", {"channel_id": cid})
    await _eventually(lambda: bob.seen("voice.state", user_id=alice_id, muted=True))

    await bob.chat.gateway.request("voice.leave", {"channel_id": cid})
    await _eventually(lambda: alice.seen("voice.user_left", user_id=bob_id))


async def test_bad_requests_get_json_rpc_errors(voice_clients: list[VoiceClient]) -> None:
    admin, alice, _ = voice_clients
    voice = await admin.chat.create_channel("Voice", type="voice")
    text = await admin.chat.create_channel("text")
    with pytest.raises(GatewayError) as not_voice:
        await alice.chat.gateway.request("voice.join", {"channel_id": str(text.id)})
    assert not_voice.value.code == "-32000"
    with pytest.raises(GatewayError) as not_joined:
        await alice.chat.gateway.request("voice.offer", {"channel_id": str(voice.id), "sdp": "x"})
    assert not_joined.value.code == "-32600"
    await alice.chat.gateway.request("voice.join", {"channel_id": str(voice.id)})
    for sdp in ["garbage", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", ""]:
        with pytest.raises(GatewayError) as bad_sdp:
            await alice.chat.gateway.request(
                "voice.offer", {"channel_id": str(voice.id), "sdp": sdp}
            )
        assert bad_sdp.value.code == "-32602"
    with pytest.raises(GatewayError) as missing:
        await alice.chat.gateway.request("voice.join", {"channel_id": "nope"})
    assert missing.value.code == "-32602"


async def test_a_full_channel_refuses_the_next_user(voice_clients: list[VoiceClient]) -> None:
    admin, alice, bob = voice_clients
    channel = await admin.chat.create_channel("Duo", type="voice", user_limit=1)
    await alice.join(str(channel.id))
    with pytest.raises(GatewayError) as full:
        await bob.chat.gateway.request("voice.join", {"channel_id": str(channel.id)})
    assert "full" in full.value.message
    assert full.value.reason == "voice_channel_full"
    assert readable_error(full.value) == "That voice channel is full."
