"""What the desktop client shows, kept current by :class:`~voicechat.sdk.app.AppSession`:
the channel tree, members with presence, voice state, change records. Timelines are in
:mod:`voicechat.sdk.app.timeline`, the outbox's messages in :mod:`voicechat.sdk.app.outbox`.

Everything here is plain data plus the bookkeeping that merges server listings and gateway
events into it; nothing draws, nothing blocks, nothing here knows the session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from voicechat.sdk.models import Channel, User

ConnectionState = Literal["offline", "connecting", "online", "reconnecting"]
Presence = Literal["online", "idle", "dnd", "offline"]


@dataclass(frozen=True, slots=True)
class Change:
    """Something the GUI may need to redraw.

    `kind` is one of: `state` (connection state; payload: the state), `me`, `channels`,
    `members`, `selected` (the shown channel), `timeline` (messages of `channel_id`),
    `typing` (payload: the users typing in `channel_id`), `voice` (the call or someone's
    voice state in `channel_id`), `error` (payload: the sentence, None when cleared),
    `session_ended` (show Login). Redraw everything on a kind you do not know.
    """

    kind: str
    channel_id: UUID | None = None
    payload: Any = None


@dataclass(frozen=True, slots=True)
class CategoryGroup:
    """A category (None: channels outside any category) and its channels, in display order."""

    category: Channel | None
    channels: list[Channel]


_TYPE_ORDER = {"text": 0, "voice": 1}


class ChannelTree:
    """Every channel the user can see: categories with their text and voice channels, and DMs."""

    def __init__(self) -> None:
        self._by_id: dict[UUID, Channel] = {}
        # Who is in which voice channel, as far as voice.* events (and our own voice.join)
        # have told since the session started: the server has no listing of it.
        self.voice_rooms: dict[UUID, dict[UUID, VoiceParticipant]] = {}

    def voice_members(self, channel_id: UUID) -> list[UUID]:
        """Users seen in a voice channel (in the order they were seen)."""
        return list(self.voice_rooms.get(channel_id, {}))

    def replace(self, channels: list[Channel]) -> None:
        """Take a fresh listing from the server."""
        self._by_id = {c.id: c for c in channels}

    def upsert(self, channel: Channel) -> None:
        """Add or update one channel (a `channel.update` create/update)."""
        previous = self._by_id.get(channel.id)
        if previous is not None and channel.members is None and previous.members is not None:
            channel = channel.model_copy(update={"members": previous.members})
        self._by_id[channel.id] = channel

    def remove(self, channel_id: UUID) -> Channel | None:
        """Drop one channel (deleted, or no longer visible)."""
        return self._by_id.pop(channel_id, None)

    def get(self, channel_id: UUID) -> Channel | None:
        """The channel with this id, if visible."""
        return self._by_id.get(channel_id)

    def __contains__(self, channel_id: object) -> bool:
        return channel_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def all(self) -> list[Channel]:
        """Every channel, unordered."""
        return list(self._by_id.values())

    @property
    def categories(self) -> list[CategoryGroup]:
        """Channels grouped for the sidebar: first those without a category, then each
        category by position; text channels before voice channels, then by position and name."""
        groups: dict[UUID | None, list[Channel]] = {None: []}
        categories = sorted(
            (c for c in self._by_id.values() if c.type == "category"),
            key=lambda c: (c.position, c.name.lower(), c.id),
        )
        for category in categories:
            groups[category.id] = []
        for channel in self._by_id.values():
            if channel.type in ("text", "voice"):
                key = channel.category_id if channel.category_id in groups else None
                groups[key].append(channel)
        for channels in groups.values():
            channels.sort(key=lambda c: (_TYPE_ORDER[c.type], c.position, c.name.lower(), c.id))
        result = [CategoryGroup(None, groups[None])] if groups[None] else []
        result += [CategoryGroup(c, groups[c.id]) for c in categories]
        return result

    @property
    def dms(self) -> list[Channel]:
        """DMs, newest first."""
        return sorted((c for c in self._by_id.values() if c.type == "dm"), key=lambda c: c.id)[::-1]


@dataclass(frozen=True, slots=True)
class Member:
    """A user of the community as the member list shows them."""

    user: User
    presence: Presence = "offline"

    @property
    def name(self) -> str:
        """What to show."""
        return self.user.name


_PRESENCE_ORDER = {"online": 0, "idle": 1, "dnd": 2, "offline": 3}


def sorted_members(members: dict[UUID, Member]) -> list[Member]:
    """Members for the list: online first, then idle, dnd, offline; by name within each."""
    return sorted(members.values(), key=lambda m: (_PRESENCE_ORDER[m.presence], m.name.lower()))


@dataclass(frozen=True, slots=True)
class VoiceParticipant:
    """Someone in a voice channel."""

    user_id: UUID
    muted: bool = False
    speaking: bool = False


@dataclass(slots=True)
class VoiceState:
    """The call the user is in."""

    channel_id: UUID
    participants: dict[UUID, VoiceParticipant] = field(default_factory=dict)
    muted: bool = False
    deafened: bool = False
    # Muted by a moderator (`voice.state` with `server_mute`): the user cannot unmute.
    server_muted: bool = False
    connected: bool = False
    bitrate: int | None = None
    frame_ms: int | None = None
    # "good" / "fair" / "poor" / "unknown", refreshed by AppSession.voice_stats().
    quality: str = "unknown"


Listener = Callable[[Change], None]
