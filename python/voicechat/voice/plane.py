"""The media plane behind the gateway's `voice.*` methods, wherever the SFU runs.

`VoiceService` talks to a `MediaPlane`: `LocalMediaPlane` drives an SFU inside the API process
(`VOICECHAT_VOICE_MODE=embedded`, the default of `voicechat serve`); `RemoteMediaPlane`
(`voicechat.voice.remote`) drives `voicechat voice` nodes over Valkey
(`VOICECHAT_VOICE_MODE=remote`, the compose deployment). Both raise the native SFU errors
(`InvalidSdpError`, `RoomFullError`, `UnknownParticipantError`, ...) for the same causes, and
`VoiceUnavailable` when no media plane can take the request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from voicechat._native import UnknownRoomError
from voicechat._native import sfu as native_sfu
from voicechat.error_codes import ErrorCode
from voicechat.errors import ServiceUnavailable
from voicechat.voice.media import Sfu, check_socket_buffers

EventKind = Literal["connected", "left", "speaking", "offer"]


class VoiceUnavailable(ServiceUnavailable):
    """No voice node answered (none alive, or the one holding the channel stopped answering)."""

    code = ErrorCode.VOICE_UNAVAILABLE

    def __init__(self, message: str = "voice is unavailable right now; try again shortly") -> None:
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class PlaneEvent:
    """Something the SFU says about one participant (see `SfuEvent` for the kinds).

    `reason` of a `left` event is the SFU's (`left`, `ice_timeout`, `closed`, `failed`), or,
    for remote nodes, `node_lost` (its heartbeat expired), `node_stopped` (it shut down) or
    `moved` (the same participant joined again through another API instance).
    """

    kind: EventKind
    room_id: str
    participant_id: str
    speaking: bool | None = None
    reason: str | None = None
    sdp: str | None = None

    @classmethod
    def from_sfu(cls, event: native_sfu.SfuEvent) -> PlaneEvent | None:
        """The plane's form of a native event; None for kinds this version does not know."""
        if event.kind == "unknown":
            return None
        return cls(
            kind=event.kind,
            room_id=event.room_id,
            participant_id=event.participant_id,
            speaking=event.speaking,
            reason=event.reason,
            sdp=event.sdp,
        )


class MediaPlane(Protocol):
    """What the voice service needs from an SFU, in-process or on voice nodes.

    Rooms are created on a participant's first join; ids follow the SFU's rules (1 to 64 of
    `A-Z a-z 0-9 _ . -`).
    """

    #: The `/health` component name: `sfu` (in-process) or `voice` (nodes).
    component: str

    async def start(self) -> None:
        """Bind the media socket, or connect to the control channel."""

    async def check_available(self) -> None:
        """Raise `VoiceUnavailable` when a join could not be served right now."""

    async def join(self, room_id: str, participant_id: str, offer_sdp: str) -> str:
        """Add a participant from its SDP offer; return the SDP answer."""

    async def accept_answer(self, participant_id: str, sdp: str) -> None:
        """Take a participant's answer to the SFU's renegotiation offer."""

    async def pending_offer(self, participant_id: str) -> str | None:
        """The offer awaiting this participant's answer, or None."""

    async def set_muted(self, participant_id: str, muted: bool) -> None:
        """Stop or resume forwarding a participant."""

    async def leave(self, participant_id: str) -> None:
        """Remove a participant."""

    async def stats(self, participant_id: str) -> dict[str, Any]:
        """A participant's counters (the fields of `ParticipantStats`)."""

    def events(self) -> AsyncIterator[PlaneEvent]:
        """Events about this instance's participants, until the plane is closed."""

    async def probe(self) -> str | None:
        """Raise if the plane cannot serve; else an optional detail for `/health`."""

    def describe(self) -> str:
        """Where media goes, for the start-up log."""

    async def aclose(self) -> None:
        """Stop (in-process) or disconnect (remote). Idempotent."""


def stats_dict(stats: native_sfu.ParticipantStats) -> dict[str, Any]:
    """`ParticipantStats` as plain JSON-able values."""
    names = (
        "packets_in",
        "bytes_in",
        "packets_out",
        "bytes_out",
        "loss_in",
        "jitter_in",
        "loss_out",
        "rtt",
        "connected",
        "muted",
        "speaking",
    )
    return {name: getattr(stats, name) for name in names}


class LocalMediaPlane:
    """The SFU inside this process (`VOICECHAT_VOICE_MODE=embedded`).

    Args:
        config: The native SFU configuration.
        room_user_limit: The user limit rooms are created with.
    """

    component = "sfu"

    def __init__(self, config: native_sfu.SfuConfig, room_user_limit: int) -> None:
        self._config = config
        self._room_user_limit = room_user_limit
        self._rooms: set[str] = set()
        self.sfu: Sfu | None = None

    def _running(self) -> Sfu:
        if self.sfu is None:
            raise VoiceUnavailable("the SFU is not running")
        return self.sfu

    async def start(self) -> None:
        """Bind the UDP media socket and start the media thread."""
        self.sfu = await asyncio.to_thread(Sfu, self._config)
        check_socket_buffers(self.sfu)

    async def check_available(self) -> None:
        """Raise `VoiceUnavailable` unless the SFU runs."""
        self._running()

    async def join(self, room_id: str, participant_id: str, offer_sdp: str) -> str:
        """Create the room if needed, then join it."""
        sfu = self._running()
        if room_id not in self._rooms:
            await sfu.create_room(room_id, self._room_user_limit)
            self._rooms.add(room_id)
        return await sfu.join(room_id, participant_id, offer_sdp)

    async def accept_answer(self, participant_id: str, sdp: str) -> None:
        """See `MediaPlane.accept_answer`."""
        await self._running().accept_answer(participant_id, sdp)

    async def pending_offer(self, participant_id: str) -> str | None:
        """See `MediaPlane.pending_offer`."""
        return await self._running().pending_offer(participant_id)

    async def set_muted(self, participant_id: str, muted: bool) -> None:
        """See `MediaPlane.set_muted`."""
        await self._running().set_muted(participant_id, muted)

    async def leave(self, participant_id: str) -> None:
        """See `MediaPlane.leave`."""
        await self._running().leave(participant_id)

    async def stats(self, participant_id: str) -> dict[str, Any]:
        """See `MediaPlane.stats`."""
        return stats_dict(await self._running().stats(participant_id))

    async def events(self) -> AsyncIterator[PlaneEvent]:
        """The SFU's events (all its participants are this instance's)."""
        async for event in self._running().events():
            converted = PlaneEvent.from_sfu(event)
            if converted is not None:
                yield converted

    async def probe(self) -> str | None:
        """Ask the media thread something: a stuck or dead thread shows as a timeout or error."""
        sfu = self._running()
        with contextlib.suppress(UnknownRoomError):
            await sfu.participants("health-probe")
        return self.describe()

    def describe(self) -> str:
        """`udp host:port` of the media socket."""
        sfu = self._running()
        return f"SFU in this process, udp {sfu.local_addr[0]}:{sfu.ports}"

    async def aclose(self) -> None:
        """Stop the media thread."""
        if self.sfu is not None:
            await self.sfu.aclose()
