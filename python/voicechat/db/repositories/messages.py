"""Messages: one query per page, whatever its size."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from uuid_utils.compat import uuid7

from voicechat.db.pool import Connection
from voicechat.db.repositories.rows import found
from voicechat.error_codes import ErrorCode
from voicechat.errors import BadRequest

# Every read returns these columns: the message, its author's profile and its attachments
# (NULL when there are none: most messages, and then no JSON to decode).
_MESSAGE_SELECT = """
SELECT m.id, m.channel_id, m.user_id, m.content, m.content_enc, m.nonce, m.reply_to,
    m.edited_at, m.created_at,
    u.username AS author_username, u.display_name AS author_display_name,
    u.avatar_url AS author_avatar_url, u.status AS author_status,
    u.deleted_at AS author_deleted_at,
    a.attachments
FROM messages m
LEFT JOIN users u ON u.id = m.user_id
LEFT JOIN LATERAL (
    SELECT jsonb_agg(
        jsonb_build_object('id', f.id, 'filename', f.filename, 'mime_type', f.mime_type,
                           'size_bytes', f.size_bytes)
        ORDER BY f.created_at, f.id) AS attachments
    FROM files f WHERE f.message_id = m.id
) a ON true
"""

SELECT_PAGE_NEWEST_FIRST = (
    _MESSAGE_SELECT
    + """
WHERE m.channel_id = $1
  AND ($2::uuid IS NULL OR m.id < $2)
  AND ($3::uuid IS NULL OR m.id > $3)
ORDER BY m.id DESC
LIMIT $4
"""
)
SELECT_PAGE_OLDEST_FIRST = (
    _MESSAGE_SELECT
    + """
WHERE m.channel_id = $1 AND m.id > $2
ORDER BY m.id ASC
LIMIT $3
"""
)
SELECT_ONE = _MESSAGE_SELECT + "WHERE m.id = $1"
SELECT_BY_NONCE = _MESSAGE_SELECT + "WHERE m.channel_id = $1 AND m.user_id = $2 AND m.nonce = $3"

INSERT_MESSAGE = """
INSERT INTO messages (id, channel_id, user_id, content, content_enc, nonce, reply_to)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (channel_id, user_id, nonce) WHERE nonce IS NOT NULL DO NOTHING
RETURNING id
"""
# A plain send in one statement (atomic on its own: no transaction, no second round trip): the
# insert, read back with its author. No row: the nonce was used before (SELECT_BY_NONCE).
INSERT_AND_SELECT = """
WITH m AS (
    INSERT INTO messages (id, channel_id, user_id, content, content_enc, nonce)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (channel_id, user_id, nonce) WHERE nonce IS NOT NULL DO NOTHING
    RETURNING *
)
SELECT m.id, m.channel_id, m.user_id, m.content, m.content_enc, m.nonce, m.reply_to,
    m.edited_at, m.created_at,
    u.username AS author_username, u.display_name AS author_display_name,
    u.avatar_url AS author_avatar_url, u.status AS author_status,
    u.deleted_at AS author_deleted_at,
    NULL::jsonb AS attachments
FROM m LEFT JOIN users u ON u.id = m.user_id
"""
SELECT_REPLY_CHANNEL = "SELECT channel_id FROM messages WHERE id = $1"
ATTACH_FILES = """
UPDATE files SET message_id = $1
WHERE id = ANY($2::uuid[]) AND uploader_id = $3 AND channel_id = $4 AND message_id IS NULL
"""
UPDATE_CONTENT = """
UPDATE messages SET content = $2, content_enc = $3, edited_at = now()
WHERE id = $1
"""
DELETE_MESSAGE = "DELETE FROM messages WHERE id = $1"


@dataclass(frozen=True, slots=True)
class Author:
    """The public profile of a message's (live) author."""

    id: UUID
    username: str
    display_name: str | None
    avatar_url: str | None
    status: str


@dataclass(frozen=True, slots=True)
class StoredAttachment:
    """A file attached to a message."""

    id: UUID
    filename: str
    mime_type: str
    size_bytes: int

    @property
    def url(self) -> str:
        """Where the file is downloaded from."""
        return f"/files/{self.id}"


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message with its author's profile and its attachments."""

    id: UUID
    channel_id: UUID
    user_id: UUID | None
    # None when the author's account is gone (deleted, or the row was anonymised).
    author: Author | None
    content: str | None
    content_enc: dict[str, Any] | None
    nonce: str | None
    reply_to: UUID | None
    attachments: tuple[StoredAttachment, ...]
    edited_at: datetime | None
    created_at: datetime

    @classmethod
    def from_record(cls, record: Any) -> StoredMessage:
        """Build from a row selected with `_MESSAGE_SELECT`."""
        gone = record["user_id"] is None or record["author_deleted_at"] is not None
        author = (
            None
            if gone
            else Author(
                id=record["user_id"],
                username=record["author_username"],
                display_name=record["author_display_name"],
                avatar_url=record["author_avatar_url"],
                status=record["author_status"],
            )
        )
        return cls(
            id=record["id"],
            channel_id=record["channel_id"],
            user_id=record["user_id"],
            author=author,
            content=record["content"],
            content_enc=record["content_enc"],
            nonce=record["nonce"],
            reply_to=record["reply_to"],
            attachments=tuple(
                StoredAttachment(
                    id=UUID(a["id"]),
                    filename=a["filename"],
                    mime_type=a["mime_type"],
                    size_bytes=a["size_bytes"],
                )
                for a in record["attachments"] or ()
            ),
            edited_at=record["edited_at"],
            created_at=record["created_at"],
        )


class MessageRepository:
    """SQL for `messages` (and the attachment links in `files`)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def page(
        self, channel_id: UUID, *, before: UUID | None, after: UUID | None, limit: int
    ) -> tuple[list[StoredMessage], bool]:
        """A page, newest first, and whether more lie beyond it in the direction read.

        With only `after`, reads forward from it (the page right after that message); otherwise
        reads backward from `before` (or from the newest), stopping at `after` if given.
        """
        if after is not None and before is None:
            rows = await self._conn.fetch(SELECT_PAGE_OLDEST_FIRST, channel_id, after, limit + 1)
            more = len(rows) > limit
            return [StoredMessage.from_record(r) for r in reversed(rows[:limit])], more
        rows = await self._conn.fetch(
            SELECT_PAGE_NEWEST_FIRST, channel_id, before, after, limit + 1
        )
        return [StoredMessage.from_record(r) for r in rows[:limit]], len(rows) > limit

    async def get(self, message_id: UUID) -> StoredMessage:
        """One message with author and attachments.

        Raises:
            NotFound: no such message.
        """
        record = found(
            await self._conn.fetchrow(SELECT_ONE, message_id),
            "message",
            ErrorCode.MESSAGE_NOT_FOUND,
        )
        return StoredMessage.from_record(record)

    async def create(
        self,
        *,
        channel_id: UUID,
        user_id: UUID,
        content: str | None,
        content_enc: dict[str, Any] | None,
        nonce: str | None,
        reply_to: UUID | None,
        attachments: list[UUID],
    ) -> tuple[StoredMessage, bool]:
        """Insert a message; returns it and whether it is new.

        A resend with the same nonce returns the first message instead of a duplicate.

        Raises:
            BadRequest: the reply target is in another channel, or an attachment is not an
                unattached upload of this user to this channel.
        """
        if reply_to is None and not attachments:
            row = await self._conn.fetchrow(
                INSERT_AND_SELECT, uuid7(), channel_id, user_id, content, content_enc, nonce
            )
            if row is not None:
                return StoredMessage.from_record(row), True
            existing = await self._conn.fetchrow(SELECT_BY_NONCE, channel_id, user_id, nonce)
            assert existing is not None
            return StoredMessage.from_record(existing), False
        async with self._conn.transaction():
            if reply_to is not None:
                target_channel = await self._conn.fetchval(SELECT_REPLY_CHANNEL, reply_to)
                if target_channel != channel_id:
                    raise BadRequest(
                        "reply_to must be a message of this channel", code=ErrorCode.INVALID_REPLY
                    )
            message_id = uuid7()
            inserted = await self._conn.fetchval(
                INSERT_MESSAGE,
                message_id,
                channel_id,
                user_id,
                content,
                content_enc,
                nonce,
                reply_to,
            )
            if inserted is None:
                existing = await self._conn.fetchrow(SELECT_BY_NONCE, channel_id, user_id, nonce)
                assert existing is not None
                return StoredMessage.from_record(existing), False
            if attachments:
                status = await self._conn.execute(
                    ATTACH_FILES, message_id, attachments, user_id, channel_id
                )
                if status != f"UPDATE {len(set(attachments))}":
                    raise BadRequest(
                        "attachments must be your own unused uploads to this channel",
                        code=ErrorCode.INVALID_ATTACHMENT,
                    )
            record = await self._conn.fetchrow(SELECT_ONE, message_id)
            assert record is not None
            return StoredMessage.from_record(record), True

    async def edit(
        self, message_id: UUID, *, content: str | None, content_enc: dict[str, Any] | None
    ) -> StoredMessage:
        """Replace the body and stamp `edited_at`."""
        await self._conn.execute(UPDATE_CONTENT, message_id, content, content_enc)
        return await self.get(message_id)

    async def delete(self, message_id: UUID) -> None:
        """Delete the message (its attachments' rows stay, unlinked, for cleanup)."""
        await self._conn.execute(DELETE_MESSAGE, message_id)
