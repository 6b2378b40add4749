"""Rows of `files`: one per stored object, with its wrapped key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from voicechat.db.pool import Connection
from voicechat.db.repositories.rows import found, from_record
from voicechat.error_codes import ErrorCode

FILE_COLUMNS = """id, message_id, channel_id, uploader_id, filename, mime_type, size_bytes,
    s3_key, wrapped_key, created_at, master_key_id"""

INSERT_FILE = f"""
INSERT INTO files (id, channel_id, uploader_id, filename, mime_type, size_bytes, s3_key,
                   wrapped_key, master_key_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING {FILE_COLUMNS}
"""  # noqa: S608 (constant fragments, no user input)

SELECT_FILE = f"SELECT {FILE_COLUMNS} FROM files WHERE id = $1"  # noqa: S608

# Rows are deleted first (in the caller's transaction) and their objects afterwards: an object
# whose removal fails is orphaned and logged, never a row pointing at nothing.
DELETE_FOR_MESSAGE = "DELETE FROM files WHERE message_id = $1 RETURNING s3_key"
DELETE_FOR_CHANNEL = "DELETE FROM files WHERE channel_id = $1 RETURNING s3_key"

# Uploads nobody will read: a channel upload never attached to a message, or a channel-less
# upload (an avatar candidate) that is nobody's current avatar, once older than the retention.
# SKIP LOCKED lets several API instances sweep at once without waiting on each other.
DELETE_ABANDONED = """
DELETE FROM files WHERE id IN (
    SELECT f.id FROM files f
    WHERE f.message_id IS NULL
      AND f.created_at < now() - $1::interval
      AND (f.channel_id IS NOT NULL
           OR NOT EXISTS (SELECT 1 FROM users u WHERE u.avatar_url = '/files/' || f.id::text))
    ORDER BY f.created_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING s3_key
"""

# An avatar is readable by every signed-in user while it is someone's current avatar.
SELECT_IS_CURRENT_AVATAR = "SELECT EXISTS (SELECT 1 FROM users WHERE avatar_url = $1)"


def file_url(file_id: UUID) -> str:
    """The API path a file is fetched from (also what `users.avatar_url` holds)."""
    return f"/files/{file_id}"


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A row of `files`."""

    id: UUID
    message_id: UUID | None
    channel_id: UUID | None
    uploader_id: UUID | None
    filename: str
    mime_type: str
    size_bytes: int
    s3_key: str
    wrapped_key: bytes
    created_at: datetime
    # The master key that wrapped `wrapped_key` (None: wrapped before key ids were recorded).
    master_key_id: bytes | None = None

    @classmethod
    def from_record(cls, record: Any) -> StoredFile:
        """Build from a row selected with `FILE_COLUMNS`."""
        return from_record(cls, record)

    @property
    def url(self) -> str:
        """Where the file is fetched from."""
        return file_url(self.id)


class FileRepository:
    """Data access for `files`."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def add(
        self,
        *,
        file_id: UUID,
        channel_id: UUID | None,
        uploader_id: UUID,
        filename: str,
        mime_type: str,
        size_bytes: int,
        key: str,
        wrapped_key: bytes,
        master_key_id: bytes,
    ) -> StoredFile:
        """Record a stored object, its key wrapped under master key `master_key_id`."""
        record = await self._conn.fetchrow(
            INSERT_FILE,
            file_id,
            channel_id,
            uploader_id,
            filename,
            mime_type,
            size_bytes,
            key,
            wrapped_key,
            master_key_id,
        )
        return StoredFile.from_record(record)

    async def get(self, file_id: UUID) -> StoredFile:
        """The file of that id.

        Raises:
            NotFound: no such file.
        """
        record = found(
            await self._conn.fetchrow(SELECT_FILE, file_id), "file", ErrorCode.FILE_NOT_FOUND
        )
        return StoredFile.from_record(record)

    async def remove_for_message(self, message_id: UUID) -> list[str]:
        """Delete the rows of a message's attachments; returns their object keys."""
        return [r["s3_key"] for r in await self._conn.fetch(DELETE_FOR_MESSAGE, message_id)]

    async def remove_for_channel(self, channel_id: UUID) -> list[str]:
        """Delete the rows of every file uploaded to a channel; returns their object keys."""
        return [r["s3_key"] for r in await self._conn.fetch(DELETE_FOR_CHANNEL, channel_id)]

    async def remove_abandoned(self, older_than: timedelta, limit: int = 500) -> list[str]:
        """Delete up to `limit` rows of uploads nobody can use any more; returns object keys."""
        records = await self._conn.fetch(DELETE_ABANDONED, older_than, limit)
        return [r["s3_key"] for r in records]

    async def is_current_avatar(self, file_id: UUID) -> bool:
        """Whether some user shows this file as their avatar."""
        return bool(await self._conn.fetchval(SELECT_IS_CURRENT_AVATAR, file_url(file_id)))
