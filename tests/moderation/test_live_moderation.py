"""Moderation on a live `voicechat serve`: sockets, typing and voice, through the SDK."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import LiveServer
from voicechat.sdk import Client, GatewayEvent
from voicechat.sdk.errors import ApiError
from voicechat.sdk.gateway import GatewayError
from voicechat.voice import Peer

pytestmark = pytest.mark.slow


async def _next(client: Client, method: str, within: float = 15.0) -> GatewayEvent:
    async with asyncio.timeout(within):
        async for event in client.events():
            if event.method == method:
                return event
    raise AssertionError("unreachable")


def _answerer(client: Client, peer: Peer) -> Callable[[GatewayEvent], Awaitable[None]]:
    # Answers the SFU's renegotiation offers, as a real client (VoiceCall) does.
    async def answer(event: GatewayEvent) -> None:
        sdp = await peer.accept_offer(event.params["sdp"])
        await client.gateway.request(
            "voice.answer", {"channel_id": event.params["channel_id"], "sdp": sdp}
        )

    return answer


async def test_a_ban_closes_the_socket_and_a_timeout_stops_typing_and_voice(
    live_server: LiveServer,
) -> None:
    admin, alice, bob = (Client(live_server.base_url) for _ in range(3))
    try:
        await admin.register("admin", "admin password")
        await alice.register("alice", "alice password")
        await bob.register("bob", "bob password")
        assert alice.user is not None
        assert bob.user is not None
        text = await admin.create_channel("general")
        voice = await admin.create_channel("Lounge", type="voice")
        await bob.gateway.connected()
        await alice.gateway.connected()

        # Timed out: typing is refused with the code and the end time; voice stays silent.
        until = datetime.now(UTC) + timedelta(minutes=10)
        await admin.timeout(alice.user.id, until, reason="cool down")
        update = await _next(bob, "member.update")
        assert update.params["user_id"] == str(alice.user.id)
        assert update.params["communication_disabled_until"] is not None
        with pytest.raises(GatewayError) as typing:
            await alice.typing(text.id)
        assert typing.value.reason == "timed_out"

        alice_peer, bob_peer = Peer(), Peer()
        try:
            for client, peer in ((alice, alice_peer), (bob, bob_peer)):
                client.gateway.handle("voice.offer", _answerer(client, peer))
                await client.gateway.request("voice.join", {"channel_id": str(voice.id)})
                answer = await client.gateway.request(
                    "voice.offer", {"channel_id": str(voice.id), "sdp": await peer.offer()}
                )
                await peer.accept_answer(answer["sdp"])
                async with asyncio.timeout(15):
                    await peer.wait_connected()
            with pytest.raises(GatewayError) as unmute:
                await alice.gateway.request("voice.unmute", {"channel_id": str(voice.id)})
            assert unmute.value.reason == "timed_out"
            await asyncio.sleep(1.0)  # renegotiation settles: Bob has Alice's track
            for _ in range(50):
                alice_peer.send(b"\xf8\xff\xfe" * 20, 20)
                await asyncio.sleep(0.02)
            # Bob got nothing of Alice's (the SFU does not forward her).
            assert bob_peer.native.stats()["packets_received"] == 0
            # The timeout cleared, she unmutes and is heard.
            await admin.clear_timeout(alice.user.id)
            await alice.gateway.request("voice.unmute", {"channel_id": str(voice.id)})

            async def talk() -> None:
                for _ in range(250):
                    alice_peer.send(b"\xf8\xff\xfe" * 20, 20)
                    await asyncio.sleep(0.02)

            talker = asyncio.create_task(talk())
            async with asyncio.timeout(10):
                async for packet in bob_peer.packets():
                    assert packet.participant_id == str(alice.user.id)
                    break
            talker.cancel()
        finally:
            await alice_peer.aclose()
            await bob_peer.aclose()

        # Banned: her socket closes (4003) and the SDK reports why; login is refused.
        await admin.ban(alice.user.id, reason="spam")
        failed = await _next(alice, "gateway.auth_failed")
        assert failed.params == {"code": "banned"}
        assert [b["user_id"] for b in await admin.list_bans()] == [str(alice.user.id)]
        again = Client(live_server.base_url)
        try:
            with pytest.raises(ApiError) as login:
                await again.login("alice", "alice password")
            assert login.value.code == "banned"
        finally:
            await again.close()
    finally:
        for client in (admin, alice, bob):
            await client.close()
