"""The outbox: messages written but not yet accepted by the server.

A message shows at once as a pending entry of its timeline. While the server cannot be reached
it waits here with its nonce (kept on disk, private to the user, so quitting while offline
loses nothing) and goes out, exactly once, after the reconnect; a refusal marks it with a
readable error until the person retries or discards it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from voicechat.sdk.app.feed import NETWORK_ERRORS, Background, ChangeFeed
from voicechat.sdk.app.settings import write_private
from voicechat.sdk.app.state import Change
from voicechat.sdk.app.timeline import Timeline, TimelineEntry
from voicechat.sdk.client import Client
from voicechat.sdk.crypto import CryptoError
from voicechat.sdk.errors import ApiError
from voicechat.sdk.models import Me, Message, User

log = logging.getLogger(__name__)

# While messages wait in the outbox and the gateway looks connected, retry this often.
OUTBOX_RETRY_SECONDS = 5.0

# An attachment that cannot be read: the message is refused here, not retried.
_LOCAL_FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError)


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


class Outbox:
    """The messages of one account on one server that the server does not have yet.

    Args:
        client: sends and uploads.
        feed: where `timeline` changes and refusals go.
        background: runs the retries.
        path: the account's outbox on disk; a callable because the account's name may be
            known only once the server answered (None: not yet, keep it in memory).
        me: the signed-in user (the author of the pending entries).
        timeline: the loaded timeline of a channel, if any (a delivered message joins it).
        online: whether the gateway is connected (retries wait for it).
    """

    def __init__(
        self,
        client: Client,
        feed: ChangeFeed,
        background: Background,
        *,
        path: Callable[[], Path | None],
        me: Callable[[], Me | None],
        timeline: Callable[[UUID], Timeline | None],
        online: Callable[[], bool],
    ) -> None:
        self._client = client
        self._feed = feed
        self._background = background
        self._path = path
        self._me = me
        self._timeline = timeline
        self._online = online
        self._items: list[OutgoingMessage] = []
        self._lock = asyncio.Lock()
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    # -- what the timelines show --------------------------------------------------------------

    def pending_entries(self, channel_id: UUID) -> list[TimelineEntry]:
        """Messages of this channel still here, as timeline entries."""
        return [
            TimelineEntry(self._stand_in(item), pending=item.error is None, error=item.error)
            for item in self._items
            if item.channel_id == channel_id
        ]

    def forget_delivered(self, messages: list[Message]) -> None:
        """Drop the messages the server already has (seen in a page or an event)."""
        me = self._me()
        mine = me.id if me is not None else None
        nonces = {m.nonce for m in messages if m.nonce and m.author.id == mine}
        if nonces and any(item.nonce in nonces for item in self._items):
            self._items = [item for item in self._items if item.nonce not in nonces]
            self.save()

    def _stand_in(self, item: OutgoingMessage) -> Message:
        author = self._me() or User(id=None, username="me")
        return Message(
            id=item.local_id,
            channel_id=item.channel_id,
            author=User(**author.model_dump(include={"id", "username", "display_name"})),
            content=item.content,
            nonce=item.nonce,
            reply_to=item.reply_to,
            created_at=item.created_at,
        )

    # -- what the person does -----------------------------------------------------------------

    async def send(
        self,
        channel_id: UUID | str,
        text: str,
        *,
        reply_to: UUID | str | None = None,
        attachments: list[Path | str] | None = None,
    ) -> TimelineEntry:
        """Queue a message and try to send it now; returns its entry (pending while the server
        cannot be reached, with `error` when refused)."""
        item = OutgoingMessage(
            nonce=uuid.uuid4().hex,
            channel_id=UUID(str(channel_id)),
            content=text,
            reply_to=UUID(str(reply_to)) if reply_to is not None else None,
            paths=[Path(p) for p in attachments or []],
            created_at=datetime.now(UTC),
            local_id=uuid.uuid4(),
        )
        self._items.append(item)
        self.save()
        self._feed.notify(Change("timeline", item.channel_id))
        await self.flush()
        timeline = self._timeline(item.channel_id)
        if timeline is not None:
            entries = timeline.entries
        else:
            entries = self.pending_entries(item.channel_id)
        for entry in entries:
            if entry.nonce == item.nonce:
                return entry
        return TimelineEntry(self._stand_in(item), pending=False, error=item.error)

    def discard(self, entry: TimelineEntry) -> None:
        """Drop a pending or refused message."""
        before = len(self._items)
        self._items = [i for i in self._items if i.nonce != entry.nonce]
        if len(self._items) != before:
            self.save()
            self._feed.notify(Change("timeline", entry.message.channel_id))

    async def retry(self, entry: TimelineEntry) -> None:
        """Try a refused message again."""
        for item in self._items:
            if item.nonce == entry.nonce:
                item.error = None
        await self.flush()

    # -- delivery -----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Send what waits, in order; stops at the first network failure."""
        async with self._lock:
            try:
                await self._flush()
            finally:
                self.save()

    async def _flush(self) -> None:
        for item in list(self._items):
            if item.error is not None or item not in self._items:
                continue
            try:
                message = await self._deliver(item)
            except _LOCAL_FILE_ERRORS as exc:
                item.error = self._feed.report(exc)
                self._feed.notify(Change("timeline", item.channel_id))
                continue
            except NETWORK_ERRORS as exc:
                log.info("outbox: server unreachable (%s); %d waiting", exc, len(self._items))
                self._schedule_retry()
                return
            except (ApiError, CryptoError, ValueError) as exc:
                item.error = self._feed.report(exc)
                self._feed.notify(Change("timeline", item.channel_id))
                continue
            with contextlib.suppress(ValueError):
                self._items.remove(item)
            timeline = self._timeline(item.channel_id)
            if timeline is not None:
                timeline.add(message)
            self._feed.notify(Change("timeline", item.channel_id))

    async def _deliver(self, item: OutgoingMessage) -> Message:
        if item.file_ids is None:
            uploaded = []
            for path in item.paths:
                answer = await self._client.upload(path, channel_id=item.channel_id)
                uploaded.append(str(answer["id"]))
            item.file_ids = uploaded
            self.save()  # a restart sends these ids rather than uploading again
        return await self._client.send(
            item.channel_id,
            item.content,
            reply_to=item.reply_to,
            attachments=list(item.file_ids),
            nonce=item.nonce,
        )

    def _schedule_retry(self) -> None:
        if self._closed or (self._retry is not None and not self._retry.cancelled()):
            return

        def retry() -> None:
            self._retry = None
            if self._online() and self._items:
                self._background.spawn(self.flush())

        self._retry = asyncio.get_running_loop().call_later(OUTBOX_RETRY_SECONDS, retry)

    def close(self) -> None:
        """Stop retrying (what waits stays on disk for the next session)."""
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()

    # -- on disk ------------------------------------------------------------------------------

    def save(self) -> None:
        """Keep the outbox on disk (private to the user); the nonces make the later sends
        exactly-once."""
        path = self._path()
        if path is None:
            return
        try:
            if self._items:
                write_private(path, json.dumps([i.to_json() for i in self._items]))
            else:
                path.unlink(missing_ok=True)
        except OSError:
            log.warning("outbox: could not write %s", path, exc_info=True)

    def load(self) -> None:
        """Take in what a previous session left on disk."""
        path = self._path()
        if path is None:
            return
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            items = [OutgoingMessage.from_json(d) for d in stored]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("outbox: %s is unreadable; starting with an empty outbox", path)
            return
        known = {i.nonce for i in self._items}
        self._items.extend(i for i in items if i.nonce not in known)
