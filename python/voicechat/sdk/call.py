"""A voice call from the SDK: signaling over the gateway, media through the native peer.

    async with VoiceCall(chat, channel_id) as call:
        call.send(opus_packet, audio_level)
        async for packet in call.packets():      # packet.participant_id says who spoke
            ...

The call answers the server's renegotiation offers (`voice.offer`) by itself, so the
application keeps reading `chat.events()` for everything else. Bots, the desktop client and the
load generator use it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any
from uuid import UUID

from voicechat._native.sfu import ReceivedPacket
from voicechat.sdk.gateway import GatewayEvent
from voicechat.voice.media import Peer

if TYPE_CHECKING:
    from voicechat.sdk.client import Client

log = logging.getLogger(__name__)


class VoiceCall:
    """One user's presence in one voice channel."""

    def __init__(
        self, client: Client, channel_id: UUID | str, *, bind_ip: str = "127.0.0.1"
    ) -> None:
        self.client = client
        self.channel_id = str(channel_id)
        self.peer = Peer(bind_ip=bind_ip)
        self.joined: dict[str, Any] = {}

    async def __aenter__(self) -> VoiceCall:
        await self.join()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.leave()

    async def join(self, timeout: float = 15.0) -> dict[str, Any]:
        """Join the channel and connect the media; returns `voice.join`'s answer
        (`participants`, `audio` settings)."""
        gateway = self.client.gateway
        gateway.handle("voice.offer", self._renegotiate)
        self.joined = await gateway.request("voice.join", {"channel_id": self.channel_id})
        offer = await self.peer.offer()
        answer = await gateway.request("voice.offer", {"channel_id": self.channel_id, "sdp": offer})
        await self.peer.accept_answer(answer["sdp"])
        async with asyncio.timeout(timeout):
            await self.peer.wait_connected()
        return self.joined

    async def _renegotiate(self, event: GatewayEvent) -> None:
        if event.params.get("channel_id") != self.channel_id:
            return
        try:
            answer = await self.peer.accept_offer(event.params["sdp"])
            await self.client.gateway.request(
                "voice.answer", {"channel_id": self.channel_id, "sdp": answer}
            )
        except Exception:
            log.warning("voice: renegotiation failed", exc_info=True)

    def send(self, opus_packet: bytes, audio_level: int = 127) -> None:
        """Send one Opus packet with its RFC 6464 level (0 loud … 127 silent)."""
        self.peer.send(opus_packet, audio_level)

    def packets(self) -> AsyncIterator[ReceivedPacket]:
        """Packets of the other participants as they arrive.

        `packet.participant_id` is the sender's user id. One consumer at a time: this or
        `receive`.
        """
        return self.peer.packets()

    def receive(self, timeout: float) -> ReceivedPacket | None:
        """Wait up to `timeout` seconds for the next packet, blocking: for a media thread
        (the audio engine's), which then never depends on the event loop being free.

        Raises:
            SfuStoppedError: The call's peer was closed.
        """
        return self.peer.native.recv(timeout)

    def media_stats(self) -> dict[str, int]:
        """The peer's counters: packets_sent, packets_not_sent, packets_received,
        datagrams_lost, dtx_frames."""
        return self.peer.native.stats()

    async def mute(self) -> None:
        """Stop being forwarded to the others."""
        await self.client.gateway.request("voice.mute", {"channel_id": self.channel_id})

    async def unmute(self) -> None:
        """Be heard again."""
        await self.client.gateway.request("voice.unmute", {"channel_id": self.channel_id})

    async def leave(self) -> None:
        """Leave the channel and close the media connection."""
        try:
            await self.client.gateway.request("voice.leave", {"channel_id": self.channel_id})
        except Exception:
            log.info("voice: leave request failed (already gone?)", exc_info=True)
        await self.peer.aclose()
