"""Rows of `files`: one per stored object, with its wrapped key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from voicechat.db.pool import Connection
from voicechat.errors import NotFound

FILE_COLUMNS = """id, message_id, channel_id, uploader_id, filename, mime_type, size_bytes,
    s3_key, wrapped_key, created_at"""

INSERT_FILE = f"""
INSERT INTO files (id, channel_id, uploader_id, filename, mime_type, size_bytes, s3_key,
                   wrapped_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING {FILE_COLUMNS}
"""  # noqa: S608 (constant fragments, no user input)

SELECT_FILE = f"SELECT {FILE_COLUMNS} FROM files WHERE id = $1"  # noqa: S608

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

    @classmethod
    def from_record(cls, record: Any) -> StoredFile:
        """Build from a row selected with `FILE_COLUMNS`."""
        return cls(**{field: record[field] for field in cls.__slots__})

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
    ) -> StoredFile:
        """Record a stored object."""
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
        )
        return StoredFile.from_record(record)

    async def get(self, file_id: UUID) -> StoredFile:
        """The file of that id.

        Raises:
            NotFound: no such file.
        """
        record = await self._conn.fetchrow(SELECT_FILE, file_id)
        if record is None:
            raise NotFound("no such file", code="file_not_found")
        return StoredFile.from_record(record)

    async def is_current_avatar(self, file_id: UUID) -> bool:
        """Whether some user shows this file as their avatar."""
        return bool(await self._conn.fetchval(SELECT_IS_CURRENT_AVATAR, file_url(file_id)))
