"""Gateway events applied to a session's state: one handler per event name, in one table.

Every event first goes to the device's encryption (a `to_device` hint makes it read its
inbox); then :data:`EventApplier.handlers` says what changes. An event without a handler
changes nothing (newer servers may send events this client does not know).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from voicechat.sdk.app.conversations import Conversations
from voicechat.sdk.app.feed import Background, ChangeFeed
from voicechat.sdk.app.roster import Roster
from voicechat.sdk.app.state import Change, ChannelTree
from voicechat.sdk.app.voice_controller import VoiceController
from voicechat.sdk.client import Client
from voicechat.sdk.gateway import GatewayEvent
from voicechat.sdk.models import Channel, Message

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], Awaitable[None]]


class EventApplier:
    """Applies gateway events to the parts of one session.

    Args:
        client: decrypts encrypted messages (once encryption is on).
        feed: where channel changes go.
        background: runs what must not hold up the next event (leaving a deleted channel).
        channels: the channel tree.
        roster: members and presence.
        conversations: the timelines.
        voice: the call and the voice rooms.
        delivered: messages the server has (the outbox drops them).
        reconnected: catches up after the gateway reconnected.
        session_ended: the server ended the session (signed out elsewhere, tokens revoked).
    """

    def __init__(
        self,
        client: Client,
        feed: ChangeFeed,
        background: Background,
        *,
        channels: ChannelTree,
        roster: Roster,
        conversations: Conversations,
        voice: VoiceController,
        delivered: Callable[[list[Message]], None],
        reconnected: Callable[[], Awaitable[None]],
        session_ended: Callable[[], None],
    ) -> None:
        self._client = client
        self._feed = feed
        self._background = background
        self._channels = channels
        self._roster = roster
        self._conversations = conversations
        self._voice = voice
        self._delivered = delivered
        self._reconnected = reconnected
        self._session_ended = session_ended
        self.handlers: dict[str, Handler] = {
            "message.new": self._message,
            "message.edit": self._message,
            "message.delete": self._message_deleted,
            "channel.update": self._channel_changed,
            "typing.start": self._typing,
            "typing.stop": self._typing,
            "presence.update": self._presence,
            "voice.user_joined": self._voice_participant,
            "voice.user_left": self._voice_participant,
            "voice.speaking": self._voice_participant,
            "voice.state": self._voice_participant,
            "member.update": self._member_updated,
            "gateway.reconnected": self._gateway_reconnected,
            "gateway.auth_failed": self._gateway_auth_failed,
        }

    async def apply(self, event: GatewayEvent) -> None:
        """Apply one event."""
        crypto = self._client.crypto
        if crypto is not None:
            await crypto.on_gateway_event(event.method, event.params)
        handler = self.handlers.get(event.method)
        if handler is not None:
            await handler(event.method, event.params)

    async def follow(self) -> None:
        """Apply the client's events until it closes (a failing event is logged, skipped)."""
        async for event in self._client.events():
            try:
                await self.apply(event)
            except Exception:
                log.exception("could not apply %s", event.method)

    # -- the handlers -------------------------------------------------------------------------

    async def _message(self, method: str, params: dict[str, Any]) -> None:
        crypto = self._client.crypto
        if crypto is not None and params.get("encrypted"):
            message = await crypto.decrypt_event(params)
        else:
            message = Message.model_validate(params)
        timeline = self._conversations.timeline(message.channel_id)
        if method == "message.new":
            self._delivered([message])
            timeline.add(message)
        else:
            timeline.replace(message)
        self._roster.note_authors([message])

    async def _message_deleted(self, _method: str, params: dict[str, Any]) -> None:
        self._conversations.timeline(params["channel_id"]).remove(UUID(params["id"]))

    async def _channel_changed(self, _method: str, params: dict[str, Any]) -> None:
        channel = Channel.model_validate(params["channel"])
        if params.get("action") == "delete":
            self._channels.remove(channel.id)
            self._conversations.drop(channel.id)
            if self._voice.in_channel(channel.id):
                self._background.spawn(self._voice.leave())
        else:
            self._channels.upsert(channel)
            for user in channel.members or []:
                self._roster.set_member(user, user.status)
        self._feed.notify(Change("channels", channel.id))

    async def _typing(self, method: str, params: dict[str, Any]) -> None:
        user_id = UUID(params["user_id"])
        if user_id == self._roster.my_id:
            return
        timeline = self._conversations.timeline(params["channel_id"])
        self._roster.learn(user_id)
        if method == "typing.start":
            timeline.typing_started(user_id, float(params.get("expires_in") or 8))
        else:
            timeline.typing_stopped(user_id)

    async def _presence(self, _method: str, params: dict[str, Any]) -> None:
        await self._roster.presence_changed(UUID(params["user_id"]), params["status"])

    async def _voice_participant(self, method: str, params: dict[str, Any]) -> None:
        self._voice.participant_changed(method, params)

    async def _member_updated(self, _method: str, params: dict[str, Any]) -> None:
        self._roster.member_updated(params)

    async def _gateway_reconnected(self, _method: str, _params: dict[str, Any]) -> None:
        await self._reconnected()

    async def _gateway_auth_failed(self, _method: str, _params: dict[str, Any]) -> None:
        self._session_ended()
