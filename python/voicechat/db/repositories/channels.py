"""Channels, their members, and DMs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from voicechat.db.pool import Connection
from voicechat.db.repositories.rows import found, from_record
from voicechat.error_codes import ErrorCode
from voicechat.errors import BadRequest, NotFound

CHANNEL_COLUMNS = """c.id, c.name, c.type, c.category_id, c.position, c.topic, c.user_limit,
    c.private, c.encrypted, c.created_by, c.created_at, c.updated_at"""

INSERT_CHANNEL = f"""
WITH c AS (
    INSERT INTO channels (name, type, category_id, position, topic, user_limit, private,
                          encrypted, created_by)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    RETURNING *
)
SELECT {CHANNEL_COLUMNS} FROM c
"""  # noqa: S608 (constant fragments)
SELECT_CHANNEL = f"SELECT {CHANNEL_COLUMNS} FROM channels c WHERE c.id = $1"  # noqa: S608
UPDATE_CHANNEL = f"""
WITH c AS (
    UPDATE channels SET
        name = COALESCE($2, name),
        topic = CASE WHEN $3 THEN $4 ELSE topic END,
        position = COALESCE($5, position),
        category_id = CASE WHEN $6 THEN $7 ELSE category_id END,
        user_limit = CASE WHEN $8 THEN $9 ELSE user_limit END,
        updated_at = now()
    WHERE id = $1
    RETURNING *
)
SELECT {CHANNEL_COLUMNS} FROM c
"""  # noqa: S608
DELETE_CHANNEL = "DELETE FROM channels WHERE id = $1"
SELECT_CATEGORY_TYPE = "SELECT type FROM channels WHERE id = $1"
INSERT_MEMBER = """
INSERT INTO channel_members (channel_id, user_id, role_id) VALUES ($1, $2, $3)
ON CONFLICT (channel_id, user_id) DO UPDATE SET role_id = EXCLUDED.role_id
"""
DELETE_MEMBER = "DELETE FROM channel_members WHERE channel_id = $1 AND user_id = $2"
SELECT_MEMBERS = """
SELECT u.id, u.username, u.display_name, u.avatar_url, u.status, cm.role_id, cm.joined_at
FROM channel_members cm JOIN users u ON u.id = cm.user_id
WHERE cm.channel_id = $1 AND u.deleted_at IS NULL
ORDER BY cm.joined_at, u.username
"""
SELECT_MEMBERS_OF_MANY = """
SELECT cm.channel_id, u.id, u.username, u.display_name, u.avatar_url, u.status, cm.role_id
FROM channel_members cm JOIN users u ON u.id = cm.user_id
WHERE cm.channel_id = ANY($1::uuid[])
ORDER BY cm.joined_at, u.username
"""
SELECT_MEMBER_IDS = "SELECT user_id FROM channel_members WHERE channel_id = $1"
# A 1:1 DM between exactly these two users, if one exists.
SELECT_DIRECT_DM = f"""
SELECT {CHANNEL_COLUMNS} FROM channels c
WHERE c.type = 'dm'
  AND (SELECT array_agg(user_id ORDER BY user_id) FROM channel_members WHERE channel_id = c.id)
      = $1::uuid[]
  AND c.name = '@direct'
LIMIT 1
"""  # noqa: S608
COUNT_EXISTING_USERS = (
    "SELECT count(*) FROM users WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL"
)

LOCK_DIRECT_DM_PAIR = "SELECT pg_advisory_xact_lock(hashtext($1))"


@dataclass(frozen=True, slots=True)
class Channel:
    """A row of `channels`."""

    id: UUID
    name: str
    type: str
    category_id: UUID | None
    position: int
    topic: str | None
    user_limit: int | None
    private: bool
    encrypted: bool
    created_by: UUID | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, record: Any) -> Channel:
        """Build from a row selected with `CHANNEL_COLUMNS`."""
        return from_record(cls, record)


@dataclass(frozen=True, slots=True)
class ChannelMember:
    """A member of a channel: their public profile and per-channel role."""

    id: UUID
    username: str
    display_name: str | None
    avatar_url: str | None
    status: str
    role_id: UUID | None

    @classmethod
    def from_record(cls, record: Any) -> ChannelMember:
        """Build from a row of `SELECT_MEMBERS` or `SELECT_MEMBERS_OF_MANY`."""
        return from_record(cls, record)


class ChannelRepository:
    """SQL for `channels` and `channel_members`."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def create(
        self,
        *,
        name: str,
        type: str,
        created_by: UUID,
        category_id: UUID | None = None,
        position: int = 0,
        topic: str | None = None,
        user_limit: int | None = None,
        private: bool = False,
        encrypted: bool = False,
    ) -> Channel:
        """Insert a channel (its category, if any, must be a category)."""
        if category_id is not None:
            await self._require_category(category_id)
        record = await self._conn.fetchrow(
            INSERT_CHANNEL,
            name,
            type,
            category_id,
            position,
            topic,
            user_limit,
            private,
            encrypted,
            created_by,
        )
        assert record is not None
        return Channel.from_record(record)

    async def _require_category(self, category_id: UUID) -> None:
        kind = await self._conn.fetchval(SELECT_CATEGORY_TYPE, category_id)
        if kind != "category":
            raise BadRequest("category_id must name a category", code=ErrorCode.INVALID_CATEGORY)

    async def get(self, channel_id: UUID) -> Channel:
        """The channel (callers check access first).

        Raises:
            NotFound: no such channel.
        """
        record = found(
            await self._conn.fetchrow(SELECT_CHANNEL, channel_id),
            "channel",
            ErrorCode.CHANNEL_NOT_FOUND,
        )
        return Channel.from_record(record)

    async def update(self, channel_id: UUID, changes: dict[str, Any]) -> Channel:
        """Apply the given fields; a present `None` clears topic, category or user limit."""
        if changes.get("category_id") is not None:
            await self._require_category(changes["category_id"])
        record = found(
            await self._conn.fetchrow(
                UPDATE_CHANNEL,
                channel_id,
                changes.get("name"),
                "topic" in changes,
                changes.get("topic"),
                changes.get("position"),
                "category_id" in changes,
                changes.get("category_id"),
                "user_limit" in changes,
                changes.get("user_limit"),
            ),
            "channel",
            ErrorCode.CHANNEL_NOT_FOUND,
        )
        return Channel.from_record(record)

    async def delete(self, channel_id: UUID) -> None:
        """Delete the channel with its messages, members and files' rows."""
        await self._conn.execute(DELETE_CHANNEL, channel_id)

    async def add_member(
        self, channel_id: UUID, user_id: UUID, role_id: UUID | None = None
    ) -> None:
        """Make the user a member (or change their per-channel role).

        Raises:
            NotFound: the user or role does not exist.
        """
        try:
            await self._conn.execute(INSERT_MEMBER, channel_id, user_id, role_id)
        except asyncpg.ForeignKeyViolationError:
            raise NotFound("no such user or role", code=ErrorCode.USER_NOT_FOUND) from None

    async def remove_member(self, channel_id: UUID, user_id: UUID) -> bool:
        """Remove a member; False if they were not one."""
        return await self._conn.execute(DELETE_MEMBER, channel_id, user_id) == "DELETE 1"

    async def members(self, channel_id: UUID) -> list[ChannelMember]:
        """Members with their public profile and per-channel role."""
        rows = await self._conn.fetch(SELECT_MEMBERS, channel_id)
        return [ChannelMember.from_record(row) for row in rows]

    async def member_ids(self, channel_id: UUID) -> list[UUID]:
        """Ids of the members."""
        return [row["user_id"] for row in await self._conn.fetch(SELECT_MEMBER_IDS, channel_id)]

    async def members_of(self, channel_ids: list[UUID]) -> dict[UUID, list[ChannelMember]]:
        """Members of several channels in one query (DM recipients in a channel list)."""
        result: dict[UUID, list[ChannelMember]] = {cid: [] for cid in channel_ids}
        for row in await self._conn.fetch(SELECT_MEMBERS_OF_MANY, channel_ids):
            result[row["channel_id"]].append(ChannelMember.from_record(row))
        return result

    async def lock_direct_dm(self, user_a: UUID, user_b: UUID) -> None:
        """Serialise, until the transaction ends, opening the DM of these two users.

        Concurrent "open a DM with X" requests then never create two DMs for one pair.
        """
        pair = ":".join(sorted([str(user_a), str(user_b)]))
        await self._conn.execute(LOCK_DIRECT_DM_PAIR, pair)

    async def find_direct_dm(self, user_a: UUID, user_b: UUID) -> Channel | None:
        """The existing 1:1 DM of two users."""
        pair = sorted({user_a, user_b})
        record = await self._conn.fetchrow(SELECT_DIRECT_DM, pair)
        return None if record is None else Channel.from_record(record)

    async def count_existing_users(self, user_ids: list[UUID]) -> int:
        """How many of these ids are live accounts."""
        return int(await self._conn.fetchval(COUNT_EXISTING_USERS, user_ids))
