"""The messages of one channel as the client shows them, and the narrow links a timeline has
to the rest of the session (:class:`TimelineLinks`): where pages come from, who is who, what
waits in the outbox, and where changes go.

A timeline never sees the session: it is handed callables, so it can be built and tested with
any page source (a real :class:`~voicechat.sdk.client.Client` satisfies :class:`PageSource`).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from voicechat.sdk.app.state import Change, Listener
from voicechat.sdk.client import Page
from voicechat.sdk.models import Attachment, Message, User

PAGE_SIZE = 50
TYPING_SECONDS = 8.0


class PageSource(Protocol):
    """Where a timeline's pages come from (a :class:`~voicechat.sdk.client.Client`)."""

    async def messages(
        self, channel_id: UUID | str, *, before: UUID | str | None = None, limit: int = 50
    ) -> Page:
        """The page of messages before `before` (the newest without it), newest first."""
        ...


@dataclass(frozen=True, slots=True)
class TimelineLinks:
    """What a timeline needs from the session it belongs to, and nothing more.

    Attributes:
        pages: where pages of messages come from.
        notify: where `timeline` and `typing` changes go.
        my_id: the signed-in user's id (None before it is known).
        shown_channel: the channel on screen (its messages do not count as unread).
        user: a member's profile by id (None: not known yet).
        pending: this channel's messages still in the outbox, as entries.
        delivered: messages the server has (so the outbox can drop them).
        authors_seen: messages whose authors should count as members.
    """

    pages: PageSource
    notify: Listener
    my_id: Callable[[], UUID | None]
    shown_channel: Callable[[], UUID | None]
    user: Callable[[UUID], User | None]
    pending: Callable[[UUID], list[TimelineEntry]]
    delivered: Callable[[list[Message]], None]
    authors_seen: Callable[[list[Message]], None]


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

    def __init__(self, links: TimelineLinks, channel_id: UUID, page_size: int = PAGE_SIZE) -> None:
        self._links = links
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
        return self._sent + self._links.pending(self.channel_id)

    @property
    def typing_user_ids(self) -> list[UUID]:
        """Ids of the others typing here right now."""
        return list(self._typing)

    @property
    def typing_users(self) -> list[User]:
        """Others typing here right now (each for 8 s after their last signal)."""
        users = []
        for user_id in self._typing:
            user = self._links.user(user_id)
            users.append(user or User(id=user_id, username="someone", status="online"))
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
            page = await self._links.pages.messages(self.channel_id, limit=self.page_size)
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
        self._links.delivered(self.messages)
        self._links.authors_seen(fresh)
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
            page = await self._links.pages.messages(
                self.channel_id, before=before, limit=self.page_size
            )
            older = sorted((m for m in page.messages if m.id not in self._ids), key=lambda m: m.id)
            self.messages = older + self.messages
            self._ids.update(m.id for m in older)
            self.has_more = page.has_more and bool(page.messages)
        self._links.authors_seen(older)
        self._changed()
        return len(older)

    # -- events ---------------------------------------------------------------------------

    def add(self, message: Message) -> None:
        """A new message (from the gateway or from our own send)."""
        self._stop_typing(message.author.id, notify=True)
        if (
            message.author.id != self._links.my_id()
            and self._links.shown_channel() != self.channel_id
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
        self._links.notify(Change("timeline", self.channel_id))

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
            self._links.notify(Change("typing", self.channel_id, self.typing_users))

    def typing_stopped(self, user_id: UUID) -> None:
        """`user_id` stopped typing (or sent their message)."""
        self._stop_typing(user_id, notify=True)

    def _stop_typing(self, user_id: UUID | None, notify: bool) -> None:
        handle = self._typing.pop(user_id, None) if user_id is not None else None
        if handle is None:
            return
        handle.cancel()
        if notify:
            self._links.notify(Change("typing", self.channel_id, self.typing_users))

    def close(self) -> None:
        """Cancel the typing timers."""
        for handle in self._typing.values():
            handle.cancel()
        self._typing.clear()

    def _changed(self) -> None:
        self._sent = None
        self._links.notify(Change("timeline", self.channel_id))
