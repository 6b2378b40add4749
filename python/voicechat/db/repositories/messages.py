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
# --- Messages rendered as JSON by PostgreSQL (the hot paths: a page, a plain send) -----------
#
# The `Message` shape (api/schemas.py), byte for byte what `MESSAGE_JSON.dump_json` gives for the
# same row (tests/chat/test_message_json.py holds the two equal): `row_to_json` of a row whose
# columns are the fields in order (compact, no spaces), timestamps in pydantic's form (UTC, `Z`,
# six fractional digits unless they are all zero), the deleted-author placeholder, attachments
# in upload order. Python then passes the bytes through: no per-row decoding or encoding.


def _timestamp_json(column: str) -> str:
    return f"""to_char({column} AT TIME ZONE 'UTC', CASE
        WHEN extract(microseconds FROM {column})::bigint % 1000000 = 0
        THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"' ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END)"""


_DELETED_AUTHOR_JSON = (
    '{"id":null,"username":"deleted-user","display_name":"Deleted user",'
    '"avatar_url":null,"status":"offline"}'
)
_ATTACHMENTS_JSON = """COALESCE((
    SELECT '[' || string_agg(x.json, ',' ORDER BY x.created_at, x.id) || ']'
    FROM (
        SELECT f.created_at, f.id, (
            SELECT row_to_json(a)::text FROM (
                SELECT f.id, f.filename, f.mime_type, f.size_bytes, '/files/' || f.id AS url
            ) a
        ) AS json
        FROM files f WHERE f.message_id = m.id
    ) x
), '[]')"""


def _message_json(attachments: str) -> str:
    """The JSON text of message row `m` with its author's row `u` (LEFT JOINed)."""
    return f"""(SELECT row_to_json(r)::text FROM (SELECT
    m.id,
    m.channel_id,
    CASE WHEN m.user_id IS NULL OR u.deleted_at IS NOT NULL THEN '{_DELETED_AUTHOR_JSON}'::json
        ELSE (SELECT row_to_json(p) FROM (SELECT u.id, u.username, u.display_name,
            u.avatar_url, u.status) p)
    END AS author,
    m.content,
    CASE WHEN m.content_enc IS NOT NULL AND m.content_enc <> '{{}}'::jsonb THEN
        (SELECT row_to_json(e) FROM (SELECT m.content_enc->>'algorithm' AS algorithm,
            m.content_enc->>'ciphertext' AS ciphertext,
            m.content_enc->>'sender_key' AS sender_key,
            m.content_enc->>'session_id' AS session_id,
            m.content_enc->>'device_id' AS device_id) e)
    END AS encrypted,
    m.nonce,
    m.reply_to,
    {attachments}::json AS attachments,
    {_timestamp_json("m.edited_at")} AS edited_at,
    {_timestamp_json("m.created_at")} AS created_at
) r)"""  # noqa: S608 (constant fragments, no user input)


def _page_json(order: str, bounds: str, limit: str) -> str:
    """One statement: the caller's access to the channel and, only if they may read it, the
    page `{"messages": [...], "has_more": ...}` as JSON text (newest first whatever `order`
    the rows are read in). `$1` the channel, `$2` the user."""
    return f"""
WITH access AS (SELECT channel_permissions($1, $2) AS permissions),
page AS (
    SELECT m.*, row_number() OVER (ORDER BY m.id {order}) AS n
    FROM messages m
    WHERE m.channel_id = $1 {bounds}
      AND EXISTS (SELECT FROM access WHERE 'view_channel' = ANY(access.permissions))
    ORDER BY m.id {order}
    LIMIT {limit} + 1
)
SELECT COALESCE('view_channel' = ANY(a.permissions), false) AS allowed, (
    SELECT '{{"messages":[' || COALESCE(
        string_agg({_message_json(_ATTACHMENTS_JSON)}, ',' ORDER BY m.id DESC)
            FILTER (WHERE m.n <= {limit}), '')
        || '],"has_more":' || (count(*) > {limit})::text || '}}'
    FROM page m LEFT JOIN users u ON u.id = m.user_id
) AS page
FROM access a
"""  # noqa: S608 (constant fragments, no user input)


SELECT_PAGE_JSON_NEWEST_FIRST = _page_json(
    "DESC", "AND ($3::uuid IS NULL OR m.id < $3) AND ($4::uuid IS NULL OR m.id > $4)", "$5"
)
SELECT_PAGE_JSON_OLDEST_FIRST = _page_json("ASC", "AND m.id > $3", "$4")

# A plain send (content, maybe a nonce; no reply, no attachment) in one statement: the insert
# happens only if the caller may send here (sees the channel, holds send_messages, a text
# channel or DM, not encrypted: the checks `api/routes/messages.py` makes before any insert),
# and returns the new message as JSON text. No row: not allowed, or the nonce was used before;
# the caller then takes the full path, which says which (and answers the first message).
# A further "may this user send at all" rule (a moderation timeout, say) is one more condition
# in the WHERE below, with its error on the full path.
INSERT_PLAIN_JSON = f"""
WITH m AS (
    INSERT INTO messages (id, channel_id, user_id, content, nonce)
    SELECT $1, c.id, $3, $4, $5
    FROM channels c CROSS JOIN LATERAL (SELECT channel_permissions(c.id, $3) AS permissions) a
    WHERE c.id = $2
      AND 'view_channel' = ANY(a.permissions) AND 'send_messages' = ANY(a.permissions)
      AND c.type NOT IN ('voice', 'category') AND NOT c.encrypted
      -- A moderation timeout (docs/moderation.md): the full path answers 403 timed_out.
      AND NOT EXISTS (SELECT 1 FROM users t
                      WHERE t.id = $3 AND t.communication_disabled_until > now())
    ON CONFLICT (channel_id, user_id, nonce) WHERE nonce IS NOT NULL DO NOTHING
    RETURNING *
)
SELECT {_message_json("'[]'")} AS message
FROM m LEFT JOIN users u ON u.id = m.user_id
"""  # noqa: S608 (constant fragments, no user input)

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

    async def page_json(
        self,
        channel_id: UUID,
        user_id: UUID,
        *,
        before: UUID | None,
        after: UUID | None,
        limit: int,
    ) -> bytes | None:
        """The page `page` reads, as the JSON of `MessagePage`, if `user_id` may read it.

        One round trip: the access check rides in the same statement. None when the user may
        not see the channel (or it does not exist); `voicechat.chat.permissions.require` then
        says which error that is.
        """
        if after is not None and before is None:
            row = await self._conn.fetchrow(
                SELECT_PAGE_JSON_OLDEST_FIRST, channel_id, user_id, after, limit
            )
        else:
            row = await self._conn.fetchrow(
                SELECT_PAGE_JSON_NEWEST_FIRST, channel_id, user_id, before, after, limit
            )
        if row is None or not row["allowed"]:
            return None
        page: str = row["page"]
        return page.encode()

    async def create_plain_json(
        self, *, channel_id: UUID, user_id: UUID, content: str, nonce: str | None
    ) -> str | None:
        """Insert a plain message if the user may send it here; its `Message` JSON if so.

        One round trip (`INSERT_PLAIN_JSON`). None when nothing was inserted: the user may not
        send here, the channel takes no plain text, or the nonce was used before.
        """
        message: str | None = await self._conn.fetchval(
            INSERT_PLAIN_JSON, uuid7(), channel_id, user_id, content, nonce
        )
        return message

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
