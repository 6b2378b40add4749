"""A session's link to its server: the connection state, following the gateway, and catching
up after being away (or after a start without the server).

The gateway replays nothing: after a reconnect, :class:`ServerLink` fetches the profile,
channels, members and voice rooms again, reloads the loaded timelines, sends the outbox and
dials the call again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from voicechat.sdk.app.conversations import Conversations
from voicechat.sdk.app.event_applier import EventApplier
from voicechat.sdk.app.feed import NETWORK_ERRORS, Background, ChangeFeed
from voicechat.sdk.app.outbox import Outbox
from voicechat.sdk.app.roster import Roster
from voicechat.sdk.app.state import Change, ChannelTree, ConnectionState
from voicechat.sdk.app.voice_controller import VoiceController
from voicechat.sdk.client import Client
from voicechat.sdk.errors import ApiError
from voicechat.sdk.gateway import GatewayState

_GATEWAY_STATES: dict[GatewayState, ConnectionState] = {
    "connecting": "connecting",
    "online": "online",
    "reconnecting": "reconnecting",
    "closed": "offline",
}


class ServerLink:
    """Keeps one session's parts in step with the server.

    Args:
        client: the session's client (its gateway's state is followed).
        feed: where `state` and listing changes go.
        background: runs catching up without holding up events.
        channels, roster, conversations, calls, outbox: the parts kept current.
        events: applies the gateway's events.
        on_ended: the server ended the session (called after the state went offline).
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
        calls: VoiceController,
        outbox: Outbox,
        events: EventApplier,
        on_ended: Callable[[], None],
    ) -> None:
        self._client = client
        self._feed = feed
        self._background = background
        self._channels = channels
        self._roster = roster
        self._conversations = conversations
        self._calls = calls
        self._outbox = outbox
        self._events = events
        self._on_ended = on_ended
        self.state: ConnectionState = "connecting"
        self._pump: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._started = False
        self._synced = False

    @property
    def online(self) -> bool:
        """Whether the gateway is connected."""
        return self.state == "online"

    async def start(self) -> None:
        """Follow the gateway and load everything (idempotent). When the server cannot be
        reached the state stays `connecting` and everything loads once the gateway gets
        through."""
        if self._started:
            return
        self._started = True
        self._unsubscribe = self._client.gateway.on_state(self._on_gateway_state)
        self._pump = asyncio.create_task(self._events.follow(), name="voicechat-app-events")
        try:
            await self.sync()
        except NETWORK_ERRORS as exc:
            self._feed.report(exc)

    async def stop(self) -> None:
        """Stop following the gateway."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump

    async def sync(self) -> None:
        """Fetch what the gateway does not replay: profile, channels, members, the newest
        page of every loaded timeline; then send the outbox."""
        self._roster.set_me(await self._client.me())
        self._channels.replace(await self._client.channels())
        self._conversations.keep_only(self._channels)
        users, states = await asyncio.gather(self._client.users(), self._client.voice_states())
        for user in users:
            self._roster.set_member(user, user.status)
        self._calls.load_rooms(states)
        for kind in ("me", "channels", "members"):
            self._feed.notify(Change(kind))
        for timeline in self._conversations:
            if timeline.loaded:
                try:
                    await timeline.load_latest()
                except ApiError as exc:
                    self._feed.report(exc)
        self._synced = True
        await self._outbox.flush()

    async def resync(self) -> None:
        """Catch up after a reconnect, and dial the call again."""
        try:
            await self.sync()
        except (ApiError, *NETWORK_ERRORS) as exc:
            self._feed.report(exc)
            return
        if self._calls.voice is not None:
            # Not awaited: dialling waits for ICE and DTLS, and events must keep flowing.
            self._background.spawn(self._calls.rejoin())

    def ended(self) -> None:
        """The server ended the session: offline for good."""
        self._feed.report("Your session has ended. Sign in again.")
        self.set_state("offline")
        self._on_ended()

    def set_state(self, state: ConnectionState) -> None:
        """The connection state changed (a `state` change when it did)."""
        if state != self.state:
            self.state = state
            self._feed.notify(Change("state", payload=state))

    def _on_gateway_state(self, state: GatewayState) -> None:
        self.set_state(_GATEWAY_STATES[state])
        if state == "online" and not self._synced and self._started:
            # The first connection after a start without the server: catch up now.
            self._background.spawn(self.resync())
        if state == "reconnecting":
            self._calls.connection_lost()
