"""Voice signaling over the gateway (SPEC §4 `voice.*`), in front of the media plane.

A voice channel is a room of the SFU; a participant is a user (one voice connection per user:
joining from a second socket moves the call there). Who is in which channel lives in Valkey
(`keys.voice_channel`), so every API instance can answer `voice.join` with the participant list
and clean up after a socket that closed or an instance that died.

The flow for a client:

1. `voice.join {channel_id}` → `{participants, ice_servers, audio}` (permission and user limit
   checked; nothing is connected yet);
2. `voice.offer {channel_id, sdp}` → `{sdp}`: the SFU's answer (ICE-lite, host candidates on
   `VOICECHAT_PUBLIC_IP`, so `voice.ice` is accepted but not needed);
3. the server then sends `voice.offer {channel_id, sdp}` notifications whenever the tracks the
   client should receive change; the client answers with `voice.answer {channel_id, sdp}`;
4. `voice.mute` / `voice.unmute` / `voice.leave {channel_id}`.

The channel's members hear `voice.user_joined`, `voice.user_left`, `voice.speaking` and
`voice.state`. The media plane is the SFU inside this process (`VOICECHAT_VOICE_MODE=embedded`:
every participant of a channel must reach the same instance) or `voicechat voice` nodes driven
over Valkey (`remote`: a channel is pinned to one node, any instance can serve its members;
docs/voice.md, "Voice nodes and the control channel").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from voicechat._native import (
    InvalidSdpError,
    RoomFullError,
    UnknownParticipantError,
)
from voicechat.cache import Cache, keys
from voicechat.chat.moderation import ensure_user_can_communicate
from voicechat.chat.permissions import Permission, require
from voicechat.db.pool import Pool
from voicechat.error_codes import ErrorCode, RpcErrorCode
from voicechat.errors import BadRequest, Conflict
from voicechat.events import Event
from voicechat.gateway.hub import Gateway
from voicechat.gateway.protocol import RpcError, notification_frame
from voicechat.gateway.socket import Socket
from voicechat.settings import Settings
from voicechat.voice import sfu_config
from voicechat.voice.plane import LocalMediaPlane, MediaPlane, PlaneEvent, VoiceUnavailable
from voicechat.voice.remote import RemoteMediaPlane

log = logging.getLogger(__name__)

MAX_SDP_CHARS = 32 * 1024
#: Published by `PUT /users/{id}/timeout` (api/routes/moderation.py): every instance mutes
#: the user in the calls it serves.
TIMED_OUT_EVENT = "internal.voice.timed_out"


@dataclass(slots=True)
class _Participant:
    """One user in a voice channel, served by this instance."""

    user_id: UUID
    channel_id: UUID
    socket: Socket
    can_speak: bool
    muted: bool
    #: In the SFU: set when `voice.offer` starts joining it, cleared when it leaves it.
    connected: bool = False
    pending: list[str] = field(default_factory=list)


class VoiceService:
    """The `voice.*` methods and events of one API instance."""

    def __init__(
        self,
        settings: Settings,
        db: Pool,
        cache: Cache,
        gateway: Gateway,
        plane: MediaPlane | None = None,
    ) -> None:
        self._settings = settings
        self._db = db
        self._cache = cache
        self._gateway = gateway
        self._instance = gateway.instance_id
        self._participants: dict[UUID, _Participant] = {}
        self._lock = asyncio.Lock()
        self.plane: MediaPlane = plane or _plane_for(settings, cache, self._instance)
        self._events_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the media plane and register the gateway methods."""
        await self.plane.start()
        self._events_task = asyncio.create_task(self._pump_events(), name="voice-events")
        for method, handler in {
            "voice.join": self._join,
            "voice.offer": self._offer,
            "voice.answer": self._answer,
            "voice.ice": self._ice,
            "voice.mute": self._mute,
            "voice.unmute": self._unmute,
            "voice.leave": self._leave,
        }.items():
            self._gateway.register_method(method, handler)
        self._gateway.on_detach.append(self._socket_closed)
        self._gateway.internal_handlers[TIMED_OUT_EVENT] = self._timed_out
        self._gateway.on_instance_dead.append(self._instance_died)
        log.info("voice: %s", self.plane.describe())

    async def stop(self) -> None:
        """Leave everyone and stop (or disconnect from) the media plane."""
        leaving = [
            self._remove(participant, announce=True)
            for participant in list(self._participants.values())
        ]
        if leaving:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.voice_request_timeout + 1):
                    await asyncio.gather(*leaving, return_exceptions=True)
        if self._events_task is not None:
            self._events_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._events_task
        await self.plane.aclose()

    # -- requests ---------------------------------------------------------------------------

    async def _join(self, socket: Socket, params: dict[str, Any]) -> Any:
        user_id, channel_id = _caller(socket), _channel(params)
        async with self._db.acquire() as conn:
            access = await require(conn, user_id, channel_id, Permission.VOICE_CONNECT)
        if access.channel.type not in ("voice", "dm"):
            raise BadRequest("that is not a voice channel", code=ErrorCode.NOT_A_VOICE_CHANNEL)
        limit = min(access.channel.user_limit or self._settings.voice_user_limit, 100)
        await self.plane.check_available()
        async with self._lock:
            present = await self._states(channel_id)
            if str(user_id) not in present and len(present) >= limit:
                raise Conflict(
                    f"the channel is full ({limit} users)", code=ErrorCode.VOICE_CHANNEL_FULL
                )
            previous = self._participants.get(user_id)
            if previous is not None:
                await self._remove(previous, announce=previous.channel_id != channel_id)
            can_speak = access.allows(Permission.VOICE_SPEAK)
            # A timed-out user joins muted and cannot unmute until the timeout ends.
            muted = not can_speak or access.timed_out_until is not None
            self._participants[user_id] = _Participant(
                user_id, channel_id, socket, can_speak=can_speak, muted=muted
            )
        return {
            "participants": [
                {"user_id": uid, **state} for uid, state in present.items() if uid != str(user_id)
            ],
            "ice_servers": [],
            "audio": {
                "bitrate": self._settings.voice_bitrate,
                "frame_ms": self._settings.voice_frame_ms,
            },
        }

    async def _offer(self, socket: Socket, params: dict[str, Any]) -> Any:
        participant = self._mine(socket, params)
        sdp = _sdp(params)
        if participant.connected:
            raise RpcError(
                RpcErrorCode.INVALID_REQUEST, "already connected; call voice.join to start again"
            )
        # Claimed before the await: a second offer meanwhile is refused, and a socket closing
        # meanwhile makes the SFU let the participant go.
        participant.connected = True
        try:
            answer = await self.plane.join(
                str(participant.channel_id), str(participant.user_id), sdp
            )
        except InvalidSdpError as exc:
            participant.connected = False
            raise RpcError(RpcErrorCode.INVALID_PARAMS, f"params.sdp: {exc}") from None
        except RoomFullError:
            participant.connected = False
            raise Conflict("the channel is full", code=ErrorCode.VOICE_CHANNEL_FULL) from None
        except BaseException:
            participant.connected = False
            raise
        if self._participants.get(participant.user_id) is not participant:
            with contextlib.suppress(UnknownParticipantError, VoiceUnavailable):
                await self.plane.leave(str(participant.user_id))
            raise RpcError(RpcErrorCode.INVALID_REQUEST, "the call ended meanwhile; join again")
        if participant.muted:
            await self.plane.set_muted(str(participant.user_id), True)
        await self._record(participant)
        await self._announce("voice.user_joined", participant, {"muted": participant.muted})
        return {"sdp": answer}

    async def _answer(self, socket: Socket, params: dict[str, Any]) -> Any:
        participant = self._mine(socket, params)
        try:
            await self.plane.accept_answer(str(participant.user_id), _sdp(params))
        except InvalidSdpError as exc:
            raise RpcError(RpcErrorCode.INVALID_PARAMS, f"params.sdp: {exc}") from None
        except UnknownParticipantError:
            raise RpcError(RpcErrorCode.INVALID_REQUEST, "send voice.offer first") from None
        return {}

    async def _ice(self, socket: Socket, params: dict[str, Any]) -> Any:
        # The SFU is ICE-lite with host candidates in its answer; trickled client candidates
        # are not needed (the client's checks reach us from its real address).
        self._mine(socket, params)
        return {}

    async def _mute(self, socket: Socket, params: dict[str, Any]) -> Any:
        return await self._set_muted(socket, params, muted=True)

    async def _unmute(self, socket: Socket, params: dict[str, Any]) -> Any:
        return await self._set_muted(socket, params, muted=False)

    async def _set_muted(self, socket: Socket, params: dict[str, Any], *, muted: bool) -> Any:
        participant = self._mine(socket, params)
        if not muted and not participant.can_speak:
            raise RpcError(RpcErrorCode.FORBIDDEN, "you need the voice_speak permission here")
        if not muted:
            async with self._db.acquire() as conn:
                await ensure_user_can_communicate(conn, participant.user_id)
        participant.muted = muted
        if participant.connected:
            with contextlib.suppress(UnknownParticipantError):
                await self.plane.set_muted(str(participant.user_id), muted)
        await self._record(participant)
        await self._announce("voice.state", participant, {"muted": muted})
        return {"muted": muted}

    async def _timed_out(self, event: Event) -> None:
        # A timeout set while the user is in a call here: the SFU stops forwarding them.
        participant = self._participants.get(UUID(str(event.params["user_id"])))
        if participant is None or participant.muted:
            return
        participant.muted = True
        if participant.connected:
            with contextlib.suppress(UnknownParticipantError):
                await self.plane.set_muted(str(participant.user_id), True)
        await self._record(participant)
        await self._announce("voice.state", participant, {"muted": True})

    async def _leave(self, socket: Socket, params: dict[str, Any]) -> Any:
        participant = self._mine(socket, params)
        await self._remove(participant, announce=True)
        return {}

    # -- bookkeeping ------------------------------------------------------------------------

    def _mine(self, socket: Socket, params: dict[str, Any]) -> _Participant:
        user_id = _caller(socket)
        channel_id = _channel(params) if "channel_id" in params else None
        participant = self._participants.get(user_id)
        if (
            participant is None
            or participant.socket is not socket
            or (channel_id is not None and participant.channel_id != channel_id)
        ):
            raise RpcError(RpcErrorCode.INVALID_REQUEST, "call voice.join for that channel first")
        return participant

    async def states(self, channel_ids: list[UUID]) -> dict[UUID, dict[str, dict[str, Any]]]:
        """Who is in each of these voice channels: `{channel: {user_id: {"muted": bool}}}`."""
        if not channel_ids:
            return {}
        pipe = self._cache.pipeline(transaction=False)
        for channel_id in channel_ids:
            pipe.hgetall(keys.voice_channel(channel_id))
        answers = await pipe.execute()
        return {
            channel_id: _parse_states(raw)
            for channel_id, raw in zip(channel_ids, answers, strict=True)
        }

    async def _states(self, channel_id: UUID) -> dict[str, dict[str, Any]]:
        return _parse_states(await self._cache.hgetall(keys.voice_channel(channel_id)))

    async def _record(self, participant: _Participant) -> None:
        state = json.dumps({"muted": participant.muted, "instance": self._instance})
        pipe = self._cache.pipeline(transaction=True)
        pipe.hset(keys.voice_channel(participant.channel_id), str(participant.user_id), state)
        pipe.sadd(
            keys.instance_voice(self._instance), f"{participant.channel_id}:{participant.user_id}"
        )
        await pipe.execute()

    async def _remove(self, participant: _Participant, *, announce: bool) -> None:
        if self._participants.get(participant.user_id) is participant:
            del self._participants[participant.user_id]
        if participant.connected:
            participant.connected = False
            # Gone already when it left by itself, or when its voice node is gone.
            with contextlib.suppress(UnknownParticipantError, VoiceUnavailable):
                await self.plane.leave(str(participant.user_id))
        removed = await self._forget(participant.channel_id, participant.user_id)
        if announce and removed:
            await self._announce("voice.user_left", participant, {})

    async def _forget(self, channel_id: UUID, user_id: UUID, instance: str | None = None) -> bool:
        pipe = self._cache.pipeline(transaction=True)
        pipe.hdel(keys.voice_channel(channel_id), str(user_id))
        pipe.srem(keys.instance_voice(instance or self._instance), f"{channel_id}:{user_id}")
        removed, _ = await pipe.execute()
        return bool(removed)

    async def _announce(
        self, method: str, participant: _Participant, extra: dict[str, Any]
    ) -> None:
        await self._gateway.events.publish(
            Event(
                method,
                {
                    "channel_id": str(participant.channel_id),
                    "user_id": str(participant.user_id),
                    **extra,
                },
                channel_id=participant.channel_id,
            )
        )

    async def _socket_closed(self, socket: Socket) -> None:
        participant = self._participants.get(_caller(socket)) if socket.auth else None
        if participant is not None and participant.socket is socket:
            await self._remove(participant, announce=True)

    async def _instance_died(self, instance_id: str) -> None:
        members = await self._cache.smembers(keys.instance_voice(instance_id))
        for member in members:
            text = member.decode() if isinstance(member, bytes) else member
            channel, _, user = text.partition(":")
            if await self._forget(UUID(channel), UUID(user), instance_id):
                await self._gateway.events.publish(
                    Event(
                        "voice.user_left",
                        {"channel_id": channel, "user_id": user},
                        channel_id=UUID(channel),
                    )
                )
        await self._cache.delete(keys.instance_voice(instance_id))

    # -- SFU events -------------------------------------------------------------------------

    async def _pump_events(self) -> None:
        async for event in self.plane.events():
            try:
                await self._on_sfu_event(event)
            except Exception:
                log.warning("voice: could not handle SFU event %s", event.kind, exc_info=True)

    async def _on_sfu_event(self, event: PlaneEvent) -> None:
        user_id = UUID(event.participant_id)
        participant = self._participants.get(user_id)
        if participant is None or str(participant.channel_id) != event.room_id:
            return
        if event.kind == "offer" and event.sdp is not None:
            participant.socket.push(
                notification_frame(
                    "voice.offer", {"channel_id": str(participant.channel_id), "sdp": event.sdp}
                )
            )
        elif event.kind == "speaking":
            await self._announce("voice.speaking", participant, {"speaking": bool(event.speaking)})
        elif event.kind == "left":
            log.info("voice: %s left %s (%s)", user_id, participant.channel_id, event.reason)
            # The SFU has let it go already.
            participant.connected = False
            if event.reason == "moved" and not await self._recorded_here(participant):
                # The user joined this channel again through another instance, which already
                # recorded its voice state: only our own bookkeeping goes.
                del self._participants[user_id]
                await self._cache.srem(
                    keys.instance_voice(self._instance), f"{participant.channel_id}:{user_id}"
                )
            else:
                await self._remove(participant, announce=True)

    async def _recorded_here(self, participant: _Participant) -> bool:
        raw = await self._cache.hget(
            keys.voice_channel(participant.channel_id), str(participant.user_id)
        )
        return raw is not None and json.loads(raw).get("instance") == self._instance


def _plane_for(settings: Settings, cache: Cache, instance_id: str) -> MediaPlane:
    if settings.voice_mode == "remote":
        return RemoteMediaPlane(
            cache,
            instance_id,
            request_timeout=settings.voice_request_timeout,
            room_user_limit=settings.voice_user_limit,
        )
    return LocalMediaPlane(sfu_config(settings), settings.voice_user_limit)


def _parse_states(raw: dict[Any, Any]) -> dict[str, dict[str, Any]]:
    states = {}
    for key, value in raw.items():
        user = key.decode() if isinstance(key, bytes) else key
        states[user] = {"muted": bool(json.loads(value).get("muted", False))}
    return states


def _caller(socket: Socket) -> UUID:
    if socket.auth is None:
        raise RpcError(RpcErrorCode.UNAUTHORIZED, "not authenticated")
    return socket.auth.user_id


def _channel(params: dict[str, Any]) -> UUID:
    try:
        return UUID(str(params["channel_id"]))
    except (KeyError, ValueError):
        raise RpcError(
            RpcErrorCode.INVALID_PARAMS, "params.channel_id must be a channel id"
        ) from None


def _sdp(params: dict[str, Any]) -> str:
    sdp = params.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip() or len(sdp) > MAX_SDP_CHARS:
        raise RpcError(
            RpcErrorCode.INVALID_PARAMS, "params.sdp must be an SDP string (at most 32 KiB)"
        )
    return sdp
