"""The channels' timelines and what a person does in them: open a channel, page back, edit,
delete, download, type, open a DM.

Actions that can fail because of the server or the network never raise for it: they report a
sentence to the session's :class:`~voicechat.sdk.app.feed.ChangeFeed` and return a falsy value.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import UUID

from voicechat.sdk.app.feed import NETWORK_ERRORS, ChangeFeed
from voicechat.sdk.app.roster import Roster
from voicechat.sdk.app.state import Change, ChannelTree
from voicechat.sdk.app.timeline import Timeline, TimelineEntry, TimelineLinks
from voicechat.sdk.client import Client
from voicechat.sdk.errors import ApiError
from voicechat.sdk.models import Attachment, Channel, Message

log = logging.getLogger(__name__)

# Resend typing.start at most this often while the user keeps typing (the server's indicator
# lasts 8 s).
TYPING_RESEND_SECONDS = 5.0


class Conversations:
    """Every timeline of one session (made on first use), and the channel on screen.

    Args:
        client: the server's messages, files and DMs.
        feed: where changes and refusals go.
        channels: the channel tree (a DM opened here joins it).
        roster: who is who (authors, DM members, people typing).
        pending: a channel's messages still in the outbox, as entries.
        delivered: messages the server has (the outbox drops them).
        online: whether the gateway is connected (typing is not sent otherwise).
    """

    def __init__(
        self,
        client: Client,
        feed: ChangeFeed,
        channels: ChannelTree,
        roster: Roster,
        *,
        pending: Callable[[UUID], list[TimelineEntry]],
        delivered: Callable[[list[Message]], None],
        online: Callable[[], bool],
    ) -> None:
        self._client = client
        self._feed = feed
        self._channels = channels
        self._roster = roster
        self._online = online
        self.selected_channel: UUID | None = None
        self._timelines: dict[UUID, Timeline] = {}
        self._last_typing: dict[UUID, float] = {}
        self._links = TimelineLinks(
            pages=client,
            notify=feed.notify,
            my_id=lambda: roster.my_id,
            shown_channel=lambda: self.selected_channel,
            user=roster.user,
            pending=pending,
            delivered=delivered,
            authors_seen=roster.note_authors,
        )

    # -- the timelines ------------------------------------------------------------------------

    def timeline(self, channel_id: UUID | str) -> Timeline:
        """The timeline of a channel (empty until :meth:`select_channel` or
        `timeline.load_latest()` loads it)."""
        key = channel_id if isinstance(channel_id, UUID) else UUID(channel_id)
        timeline = self._timelines.get(key)
        if timeline is None:
            timeline = self._timelines[key] = Timeline(self._links, key)
        return timeline

    def existing(self, channel_id: UUID) -> Timeline | None:
        """The timeline of a channel if one was made."""
        return self._timelines.get(channel_id)

    def __iter__(self) -> Iterator[Timeline]:
        return iter(list(self._timelines.values()))

    def unread_counts(self) -> dict[UUID, int]:
        """Messages not seen yet, by channel (channels without a timeline have none)."""
        return {key: timeline.unread for key, timeline in self._timelines.items()}

    def drop(self, channel_id: UUID) -> None:
        """Forget a channel that is gone (deleted, or no longer visible)."""
        timeline = self._timelines.pop(channel_id, None)
        if timeline is not None:
            timeline.close()
        if self.selected_channel == channel_id:
            self.selected_channel = None

    def keep_only(self, visible: ChannelTree) -> None:
        """Forget the timelines of channels no longer in a fresh listing."""
        for channel_id in [key for key in self._timelines if key not in visible]:
            self._timelines.pop(channel_id).close()

    def forget_all(self) -> None:
        """Forget every timeline (their typing timers stop)."""
        for timeline in self._timelines.values():
            timeline.close()
        self._timelines.clear()

    def typing_changed_for(self, user_id: UUID) -> None:
        """Someone's name became known: redraw the typing lines that show them."""
        for timeline in self:
            if user_id in timeline.typing_user_ids:
                self._feed.notify(Change("typing", timeline.channel_id, timeline.typing_users))

    def channel_title(self, channel: Channel) -> str:
        """What to call a channel: its name, or for a DM the other members' names."""
        if channel.type != "dm":
            return channel.name
        me = self._roster.my_id
        others = [u.name for u in channel.members or [] if u.id != me]
        return ", ".join(sorted(others)) or channel.name

    # -- what the person does -----------------------------------------------------------------

    async def select_channel(self, channel_id: UUID | str) -> Timeline:
        """Show a channel: its timeline, loaded with the newest page if it was not yet."""
        timeline = self.timeline(channel_id)
        self.selected_channel = timeline.channel_id
        timeline.unread = 0
        if not timeline.loaded:
            try:
                await timeline.load_latest()
            except (ApiError, *NETWORK_ERRORS) as exc:
                self._feed.report(exc)
        self._feed.notify(Change("selected", timeline.channel_id))
        return timeline

    async def load_older(self, channel_id: UUID | str) -> int:
        """Scrolling up: the page before the oldest loaded message (0 when none is left or
        it failed)."""
        try:
            return await self.timeline(channel_id).load_older()
        except (ApiError, *NETWORK_ERRORS) as exc:
            self._feed.report(exc)
            return 0

    async def edit(self, message_id: UUID | str, text: str) -> bool:
        """Change the text of one of your messages; False if refused."""
        try:
            message = await self._client.edit(message_id, text)
        except (ApiError, *NETWORK_ERRORS) as exc:
            self._feed.report(exc)
            return False
        self.timeline(message.channel_id).replace(message)
        return True

    async def delete(self, message_id: UUID | str) -> bool:
        """Delete a message (yours, or any with manage_messages); False if refused."""
        key = UUID(str(message_id))
        try:
            await self._client.delete(key)
        except (ApiError, *NETWORK_ERRORS) as exc:
            self._feed.report(exc)
            return False
        for timeline in self:
            timeline.remove(key)
        return True

    async def download(self, attachment: Attachment, dest_dir: Path | str) -> Path | None:
        """Save an attachment into `dest_dir` under its own (sanitised, de-duplicated) name."""
        try:
            data = await self._client.download(attachment.id)
        except (ApiError, *NETWORK_ERRORS) as exc:
            self._feed.report(exc)
            return None
        target = _free_name(Path(dest_dir), _safe_filename(attachment.filename))
        try:
            await asyncio.to_thread(_write_new, target, data)
        except OSError as exc:
            self._feed.report(f"Could not save {target.name}: {exc.strerror or exc}.")
            return None
        return target

    async def typing(self, channel_id: UUID | str) -> None:
        """The user is typing in a channel (call on every key press; throttled here)."""
        key = UUID(str(channel_id))
        now = asyncio.get_running_loop().time()
        if now - self._last_typing.get(key, -TYPING_RESEND_SECONDS) < TYPING_RESEND_SECONDS:
            return
        self._last_typing[key] = now
        if not self._online():
            return
        try:
            await self._client.typing(key)
        except (ApiError, TimeoutError, *NETWORK_ERRORS):
            log.info("typing indicator not sent", exc_info=True)

    async def open_dm(self, *user_ids: UUID | str) -> Channel | None:
        """The DM with these users (made if needed), in the channel tree."""
        try:
            channel = await self._client.dm(*user_ids)
        except (ApiError, *NETWORK_ERRORS) as exc:
            self._feed.report(exc)
            return None
        self._channels.upsert(channel)
        for user in channel.members or []:
            if user.id not in self._roster.members:
                self._roster.set_member(user, user.status)
        self._feed.notify(Change("channels", channel.id))
        return channel


_UNSAFE = re.compile(r"[^\w.\- ()\[\]]+")


def _safe_filename(name: str) -> str:
    base = Path(name.replace("\\", "/")).name.strip().lstrip(".")
    base = _UNSAFE.sub("_", base)[:200]
    return base or "download"


def _free_name(directory: Path, name: str) -> Path:
    target = directory / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 1
    while target.exists():
        target = directory / f"{stem} ({n}){suffix}"
        n += 1
    return target


def _write_new(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("xb") as file:
        file.write(data)
