"""What the desktop client shows, kept current by :class:`~voicechat.sdk.app.AppSession`:
the channel tree, members with presence, per-channel timelines, voice state, change records.

Everything here is plain data plus the bookkeeping that merges server pages and gateway events
into it; nothing draws, nothing blocks. All of it lives on the session's event loop.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from voicechat.sdk.models import Attachment, Channel, Message, User

if TYPE_CHECKING:
    from voicechat.sdk.app.session import AppSession

ConnectionState = Literal["offline", "connecting", "online", "reconnecting"]
Presence = Literal["online", "idle", "dnd", "offline"]

PAGE_SIZE = 50
TYPING_SECONDS = 8.0


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
class TimelineEntry:
    """One line of a timeline: a message from the server, or one still in the outbox.

    A pending entry's `message` is a local stand-in (its id is not the server's); `error` is
    set when the server refused it for good.
    """

    message: Message
    pending: bool = False
    error: str | None = None

    @property
    def id(self) -> UUID:
        """The message id (a local one while pending)."""
        return self.message.id

    @property
    def nonce(self) -> str | None:
        """The nonce the message was (or will be) sent with."""
        return self.message.nonce

    @property
    def author(self) -> User:
        """Who wrote it."""
        return self.message.author

    @property
    def content(self) -> str | None:
        """Its text."""
        return self.message.content

    @property
    def created_at(self) -> datetime:
        """When it was written (here, while pending)."""
        return self.message.created_at

    @property
    def edited_at(self) -> datetime | None:
        """When it was last edited."""
        return self.message.edited_at

    @property
    def reply_to(self) -> UUID | None:
        """The message it answers."""
        return self.message.reply_to

    @property
    def attachments(self) -> list[Attachment]:
        """Its files (none while pending: they are still being uploaded)."""
        return self.message.attachments


class Timeline:
    """The messages of one channel, oldest to newest, as far back as has been loaded.

    The newest page is fetched first (:meth:`load_latest`); :meth:`load_older` fetches the page
    before the oldest loaded message while :attr:`has_more`. Gateway events are merged in;
    messages are unique by id, and a message from the outbox replaces its pending entry
    (matched by nonce).
    """

    def __init__(self, session: AppSession, channel_id: UUID, page_size: int = PAGE_SIZE) -> None:
        self._session = session
        self.channel_id = channel_id
        self.page_size = page_size
        self.messages: list[Message] = []
        self.has_more = True
        self.loaded = False
        # Messages from others that arrived while another channel was shown.
        self.unread = 0
        self._ids: set[UUID] = set()
        self._early: list[Message] = []
        self._sent: list[TimelineEntry] | None = None
        self._entry_of: dict[UUID, TimelineEntry] = {}
        self._lock = asyncio.Lock()
        self._typing: dict[UUID, asyncio.TimerHandle] = {}

    # -- reading --------------------------------------------------------------------------

    @property
    def entries(self) -> list[TimelineEntry]:
        """What to draw: the loaded messages, then this channel's messages still being sent."""
        if self._sent is None:
            # Redraws read this after every change: reuse the entries of unchanged messages.
            cache = self._entry_of
            sent = []
            for message in self.messages:
                entry = cache.get(message.id)
                if entry is None or entry.message is not message:
                    entry = cache[message.id] = TimelineEntry(message)
                sent.append(entry)
            self._sent = sent
        return self._sent + self._session.pending_entries(self.channel_id)

    @property
    def typing_user_ids(self) -> list[UUID]:
        """Ids of the others typing here right now."""
        return list(self._typing)

    @property
    def typing_users(self) -> list[User]:
        """Others typing here right now (each for 8 s after their last signal)."""
        users = []
        for user_id in self._typing:
            member = self._session.members.get(user_id)
            users.append(
                member.user if member else User(id=user_id, username="someone", status="online")
            )
        return users

    def get(self, message_id: UUID) -> Message | None:
        """A loaded message by id."""
        if message_id not in self._ids:
            return None
        for message in self.messages:
            if message.id == message_id:
                return message
        return None

    # -- loading --------------------------------------------------------------------------

    async def load_latest(self) -> None:
        """(Re)load the newest page, keeping what was loaded before it when the two overlap.

        Messages edited or deleted within the newest page while the client was away are
        corrected; when the page does not reach back to what was loaded, the timeline restarts
        from it (the gap is filled by :meth:`load_older`).
        """
        async with self._lock:
            page = await self._session.client.messages(self.channel_id, limit=self.page_size)
            fresh = sorted(page.messages, key=lambda m: m.id)
            # Messages that arrived as events while the page was on its way, newer than it.
            arrived = self.messages if self.loaded else self._early
            newer = [m for m in arrived if not fresh or m.id > fresh[-1].id]
            if self.loaded and fresh and self.messages and fresh[0].id <= self.messages[-1].id:
                kept = [m for m in self.messages if m.id < fresh[0].id]
                self.messages = kept + fresh + newer
            else:
                self.messages = fresh + newer
                self.has_more = page.has_more
            self._early = []
            self._ids = {m.id for m in self.messages}
            self._entry_of = {k: v for k, v in self._entry_of.items() if k in self._ids}
            self.loaded = True
        self._session.forget_delivered(self.messages)
        self._session.note_authors(fresh)
        self._changed()

    async def load_older(self) -> int:
        """Fetch the page before the oldest loaded message; returns how many were added."""
        if not self.loaded:
            await self.load_latest()
            return len(self.messages)
        async with self._lock:
            if not self.has_more:
                return 0
            before = self.messages[0].id if self.messages else None
            page = await self._session.client.messages(
                self.channel_id, before=before, limit=self.page_size
            )
            older = sorted((m for m in page.messages if m.id not in self._ids), key=lambda m: m.id)
            self.messages = older + self.messages
            self._ids.update(m.id for m in older)
            self.has_more = page.has_more and bool(page.messages)
        self._session.note_authors(older)
        self._changed()
        return len(older)

    # -- events ---------------------------------------------------------------------------

    def add(self, message: Message) -> None:
        """A new message (from the gateway or from our own send)."""
        self._stop_typing(message.author.id, notify=True)
        me = self._session.me.id if self._session.me else None
        if (
            message.author.id != me
            and self._session.selected_channel != self.channel_id
            and message.id not in self._ids
        ):
            self.unread += 1  # for the sidebar's badge; select_channel() clears it
        if not self.loaded:
            if self._lock.locked():
                self._early.append(message)  # the first page is being fetched
            else:
                self._changed()
            return
        if message.id in self._ids:
            self.replace(message)
            return
        if not self.messages or message.id > self.messages[-1].id:
            index = len(self.messages)  # the usual case: the newest message
        else:
            index = bisect.bisect(self.messages, message.id, key=lambda m: m.id)
        self.messages.insert(index, message)
        self._ids.add(message.id)
        if self._sent is not None:
            # Keep the entries built for the last redraw: only this one is new.
            entry = self._entry_of[message.id] = TimelineEntry(message)
            self._sent.insert(index, entry)
        self._session.notify(Change("timeline", self.channel_id))

    def replace(self, message: Message) -> None:
        """An edited message."""
        if message.id not in self._ids:
            return
        self.messages = [message if m.id == message.id else m for m in self.messages]
        self._changed()

    def remove(self, message_id: UUID) -> None:
        """A deleted message."""
        if message_id not in self._ids:
            return
        self._ids.discard(message_id)
        self._entry_of.pop(message_id, None)
        self.messages = [m for m in self.messages if m.id != message_id]
        self._changed()

    def typing_started(self, user_id: UUID, expires_in: float = TYPING_SECONDS) -> None:
        """`user_id` typed; they stop showing after `expires_in` seconds without a refresh."""
        previous = self._typing.pop(user_id, None)
        if previous is not None:
            previous.cancel()
        loop = asyncio.get_running_loop()
        self._typing[user_id] = loop.call_later(
            max(0.0, expires_in), self._stop_typing, user_id, True
        )
        if previous is None:
            self._session.notify(Change("typing", self.channel_id, self.typing_users))

    def typing_stopped(self, user_id: UUID) -> None:
        """`user_id` stopped typing (or sent their message)."""
        self._stop_typing(user_id, notify=True)

    def _stop_typing(self, user_id: UUID | None, notify: bool) -> None:
        handle = self._typing.pop(user_id, None) if user_id is not None else None
        if handle is None:
            return
        handle.cancel()
        if notify:
            self._session.notify(Change("typing", self.channel_id, self.typing_users))

    def close(self) -> None:
        """Cancel the typing timers."""
        for handle in self._typing.values():
            handle.cancel()
        self._typing.clear()

    def _changed(self) -> None:
        self._sent = None
        self._session.notify(Change("timeline", self.channel_id))


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
    connected: bool = False
    bitrate: int | None = None
    frame_ms: int | None = None
    # "good" / "fair" / "poor" / "unknown", refreshed by AppSession.voice_stats().
    quality: str = "unknown"


@dataclass(slots=True)
class OutgoingMessage:
    """A message in the outbox: sent with `nonce` until the server has it, exactly once."""

    nonce: str
    channel_id: UUID
    content: str
    reply_to: UUID | None
    paths: list[Any]
    created_at: datetime
    local_id: UUID
    file_ids: list[str] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """What is kept on disk while the message waits."""
        return {
            "nonce": self.nonce,
            "channel_id": str(self.channel_id),
            "content": self.content,
            "reply_to": str(self.reply_to) if self.reply_to else None,
            "paths": [str(p) for p in self.paths],
            "created_at": self.created_at.isoformat(),
            "local_id": str(self.local_id),
            "file_ids": self.file_ids,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutgoingMessage:
        """The inverse of :meth:`to_json`.

        Raises:
            KeyError, ValueError, TypeError: not a stored message.
        """
        return cls(
            nonce=str(data["nonce"]),
            channel_id=UUID(data["channel_id"]),
            content=str(data["content"]),
            reply_to=UUID(data["reply_to"]) if data.get("reply_to") else None,
            paths=[Path(p) for p in data.get("paths") or []],
            created_at=datetime.fromisoformat(data["created_at"]),
            local_id=UUID(data["local_id"]),
            file_ids=[str(f) for f in data["file_ids"]]
            if data.get("file_ids") is not None
            else None,
            error=data.get("error"),
        )


Listener = Callable[[Change], None]
