"""The user's voice call and who is in which voice channel.

:class:`VoiceController` dials a :class:`~voicechat.sdk.call.VoiceCall`, gives it an audio
engine made by the session's :class:`~voicechat.sdk.app.engines.EngineFactory`, and keeps
:class:`~voicechat.sdk.app.state.VoiceState` and the voice rooms current from `voice.*`
events. Failures (the server, the network, the sound devices) are reported as sentences; a
call that could not be dialled leaves no half-open media behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any
from uuid import UUID

from voicechat.sdk.app.engines import EngineFactory, VoiceEngineLike
from voicechat.sdk.app.feed import NETWORK_ERRORS, ChangeFeed
from voicechat.sdk.app.roster import Roster
from voicechat.sdk.app.settings import AudioSettings, ClientSettings
from voicechat.sdk.app.state import Change, VoiceParticipant, VoiceState
from voicechat.sdk.call import VoiceCall
from voicechat.sdk.client import Client
from voicechat.sdk.errors import ApiError
from voicechat.sdk.models import VoiceState as CallMember

# Who is in which voice channel: channel id -> user id -> participant.
VoiceRooms = dict[UUID, dict[UUID, VoiceParticipant]]


class VoiceController:
    """One session's voice: the call it is in (at most one) and every channel's participants.

    Args:
        client: the gateway the call signals over.
        settings: audio settings and per-user volumes (saved when they change here).
        engine_factory: makes each call's audio engine.
        feed: where `voice` changes and failures go.
        rooms: who is in which voice channel (shared with the channel tree).
        roster: the signed-in user, and the profiles of people seen in calls.
        online: whether the gateway is connected (a call is left on the server only then).
    """

    def __init__(
        self,
        client: Client,
        settings: ClientSettings,
        engine_factory: EngineFactory,
        feed: ChangeFeed,
        rooms: VoiceRooms,
        roster: Roster,
        *,
        online: Callable[[], bool],
    ) -> None:
        self._client = client
        self._settings = settings
        self.engine_factory = engine_factory
        self._feed = feed
        self.rooms = rooms
        self._roster = roster
        self._online = online
        self.voice: VoiceState | None = None
        self._call: VoiceCall | None = None
        self._engine: VoiceEngineLike | None = None
        self._muted_before_deafen = False
        self._lock = asyncio.Lock()

    @property
    def engine(self) -> VoiceEngineLike | None:
        """The running audio engine (for its `input_level` meter), None outside a call."""
        return self._engine

    # -- joining and leaving ------------------------------------------------------------------

    async def join(self, channel_id: UUID | str) -> bool:
        """Join a voice channel (leaving the current one) and start the audio engine."""
        key = UUID(str(channel_id))
        async with self._lock:
            if self.voice is not None:
                await self._hang_up(announce=self.voice.channel_id != key)
            muted = self.voice.muted if self.voice else False
            deafened = self.voice.deafened if self.voice else False
            self.voice = VoiceState(channel_id=key, muted=muted, deafened=deafened)
            try:
                await self._dial(self.voice)
            except Exception as exc:  # the server, the network, or the sound devices
                # Tell the server too: voice.join may have succeeded before the media failed.
                await self._hang_up(announce=True)
                self.voice = None
                self._feed.report(exc)
                self._feed.notify(Change("voice"))
                return False
        self._feed.notify(Change("voice", key))
        return True

    async def rejoin(self) -> None:
        """Dial the current call again: the server forgot it when the socket dropped (or it
        restarted)."""
        async with self._lock:
            voice = self.voice
            if voice is None:
                return
            await self._hang_up(announce=False)
            voice.connected = False
            try:
                await self._dial(voice)
            except Exception as exc:  # the server, the network, or the sound devices
                await self._hang_up(announce=True)
                self.voice = None
                self._feed.report(exc)
        self._feed.notify(Change("voice", voice.channel_id))

    async def leave(self) -> None:
        """Leave the voice channel."""
        async with self._lock:
            if self.voice is None:
                return
            channel_id = self.voice.channel_id
            await self._hang_up(announce=self._online())
            self.voice = None
            room = self.rooms.get(channel_id)
            me = self._roster.my_id
            if room is not None and me is not None:
                room.pop(me, None)
        self._feed.notify(Change("voice", channel_id))

    async def _dial(self, voice: VoiceState) -> None:
        call = VoiceCall(self._client, voice.channel_id)
        self._call = call
        joined = await call.join()
        audio_info = joined.get("audio") or {}
        voice.bitrate = self._settings.audio.bitrate or audio_info.get("bitrate")
        voice.frame_ms = self._settings.audio.frame_ms or audio_info.get("frame_ms")
        room = self.rooms.setdefault(voice.channel_id, {})
        room.clear()
        for participant in joined.get("participants", []):
            user_id = UUID(str(participant["user_id"]))
            room[user_id] = VoiceParticipant(user_id, muted=bool(participant.get("muted")))
        me = self._roster.my_id
        if me is not None:
            room[me] = VoiceParticipant(me, muted=voice.muted)
        voice.participants = room
        audio = self._settings.audio.model_copy(
            update={"bitrate": voice.bitrate, "frame_ms": voice.frame_ms}
        )
        engine = self.engine_factory.create(call, audio)
        self._engine = engine
        engine.muted = voice.muted
        engine.deafened = voice.deafened
        for uid, volume in self._settings.user_volumes.items():
            engine.set_user_volume(uid, volume)
        await engine.start()
        if voice.muted:
            await call.mute()
        voice.connected = True

    async def _hang_up(self, *, announce: bool) -> None:
        engine, call = self._engine, self._call
        self._engine = self._call = None
        if engine is not None:
            with contextlib.suppress(Exception):
                await engine.stop()
        if call is not None:
            if announce:
                await call.leave()
            else:
                with contextlib.suppress(Exception):
                    await call.peer.aclose()

    # -- controls -----------------------------------------------------------------------------

    async def set_muted(self, muted: bool) -> bool:
        """Stop (or resume) sending your voice; the others see you muted."""
        voice = self.voice
        if voice is None:
            return False
        if not muted and voice.deafened:
            voice.deafened = False
            if self._engine is not None:
                self._engine.deafened = False
        voice.muted = muted
        if self._engine is not None:
            self._engine.muted = muted
        ok = True
        if self._call is not None:
            try:
                await (self._call.mute() if muted else self._call.unmute())
            except (ApiError, TimeoutError, *NETWORK_ERRORS) as exc:
                self._feed.report(exc)
                ok = False
        self._feed.notify(Change("voice", voice.channel_id))
        return ok

    async def set_deafened(self, deafened: bool) -> bool:
        """Hear nothing (and be muted); undeafening restores the mute state from before."""
        voice = self.voice
        if voice is None:
            return False
        if deafened and not voice.deafened:
            self._muted_before_deafen = voice.muted
        voice.deafened = deafened
        if self._engine is not None:
            self._engine.deafened = deafened
        return await self.set_muted(True if deafened else self._muted_before_deafen)

    def push_to_talk(self, pressed: bool) -> None:
        """The push-to-talk key went down (True) or up (False)."""
        if self._engine is not None:
            self._engine.push_to_talk(pressed)

    def set_user_volume(self, user_id: UUID | str, volume: float) -> None:
        """How loud one person plays here, 0.0 to 2.0 (kept in the settings)."""
        volume = min(2.0, max(0.0, float(volume)))
        volumes = dict(self._settings.user_volumes)
        volumes[str(user_id)] = volume
        self._settings.user_volumes = volumes
        self._settings.save()
        if self._engine is not None:
            self._engine.set_user_volume(str(user_id), volume)

    async def apply_audio(self, audio: AudioSettings) -> bool:
        """New audio settings: saved, and applied to a running call (False, and the error
        reported, when the engine cannot use them, e.g. a missing device)."""
        self._settings.audio = audio
        self._settings.save()
        if self._engine is not None and self.voice is not None:
            live = audio.model_copy(
                update={
                    "bitrate": audio.bitrate or self.voice.bitrate,
                    "frame_ms": audio.frame_ms or self.voice.frame_ms,
                }
            )
            try:
                self.engine_factory.apply(self._engine, live)
            except Exception as exc:  # AudioError from the engine: a message for a person
                self._feed.report(exc)
                return False
        return True

    def stats(self) -> dict[str, Any]:
        """The engine's packet, loss, jitter and round-trip figures, and `quality` (empty
        outside a call); also refreshes `voice.quality`."""
        if self._engine is None:
            return {}
        stats = self._engine.stats()
        if self.voice is not None:
            self.voice.quality = str(stats.get("quality", "unknown"))
        return stats

    # -- what the server says -----------------------------------------------------------------

    def load_rooms(self, states: list[CallMember]) -> None:
        """Who is in which call now (a fresh listing); speaking flags already known are kept."""
        rooms: VoiceRooms = {}
        for state in states:
            known = self.rooms.get(state.channel_id, {}).get(state.user_id)
            speaking = known is not None and known.speaking and not state.muted
            rooms.setdefault(state.channel_id, {})[state.user_id] = VoiceParticipant(
                state.user_id, muted=state.muted, speaking=speaking
            )
        self.rooms.clear()
        self.rooms.update(rooms)
        if self.voice is not None:
            self.voice.participants = self.rooms.setdefault(self.voice.channel_id, {})
        self._feed.notify(Change("voice"))

    def participant_changed(self, method: str, params: dict[str, Any]) -> None:
        """A `voice.user_joined`, `voice.user_left`, `voice.speaking` or `voice.state` event."""
        if "user_id" not in params or "channel_id" not in params:
            return
        channel_id, user_id = UUID(params["channel_id"]), UUID(params["user_id"])
        self._roster.learn(user_id)
        room = self.rooms.setdefault(channel_id, {})
        current = room.get(user_id, VoiceParticipant(user_id))
        if method == "voice.user_joined":
            room[user_id] = VoiceParticipant(user_id, muted=bool(params.get("muted")))
        elif method == "voice.user_left":
            room.pop(user_id, None)
        elif method == "voice.speaking":
            room[user_id] = VoiceParticipant(
                user_id, muted=current.muted, speaking=bool(params.get("speaking"))
            )
        else:  # voice.state
            muted = bool(params.get("muted")) or bool(params.get("server_mute"))
            if self.voice is not None and user_id == self._roster.my_id:
                self.voice.server_muted = bool(params.get("server_mute"))
            room[user_id] = VoiceParticipant(
                user_id, muted=muted, speaking=current.speaking and not muted
            )
        if self.voice is not None and self.voice.channel_id == channel_id:
            self.voice.participants = room
        self._feed.notify(Change("voice", channel_id, payload=user_id))

    def connection_lost(self) -> None:
        """The gateway is reconnecting: the call's media is not connected for now."""
        if self.voice is not None:
            self.voice.connected = False
            self._feed.notify(Change("voice", self.voice.channel_id))

    def in_channel(self, channel_id: UUID) -> bool:
        """Whether the user's call is in this channel."""
        return self.voice is not None and self.voice.channel_id == channel_id
