"""Bans, timeouts and where a member stands in the role hierarchy (docs/moderation.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from voicechat.db.pool import Connection

# Where each of the users stands: administrator or not, and their highest assigned role's
# position (0: the default role only). Deleted accounts are absent.
SELECT_STANDINGS = """
SELECT u.id, 'administrator' = ANY(user_base_permissions(u.id)) AS administrator,
    COALESCE((SELECT max(r.position) FROM user_roles ur JOIN roles r ON r.id = ur.role_id
              WHERE ur.user_id = u.id), 0) AS top_position
FROM users u WHERE u.id = ANY($1::uuid[]) AND u.deleted_at IS NULL
"""
# A second ban of the same user updates the reason (and who banned), never duplicates.
UPSERT_BAN = """
INSERT INTO bans (user_id, banned_by, reason) VALUES ($1, $2, $3)
ON CONFLICT (user_id) DO UPDATE SET banned_by = EXCLUDED.banned_by, reason = EXCLUDED.reason
RETURNING created_at
"""
DELETE_BAN = "DELETE FROM bans WHERE user_id = $1 RETURNING user_id"
SELECT_IS_BANNED = "SELECT EXISTS (SELECT 1 FROM bans WHERE user_id = $1)"
# Refreshing a session a ban ended: the durable session row (its latest refresh token's hash)
# names the user, whose ban then explains the refusal.
SELECT_BANNED_BY_REFRESH_HASH = """
SELECT s.user_id FROM sessions s JOIN bans b ON b.user_id = s.user_id WHERE s.token_hash = $1
"""
SELECT_BANS = """
SELECT b.user_id, b.banned_by, b.reason, b.created_at, u.username, u.display_name, u.avatar_url
FROM bans b JOIN users u ON u.id = b.user_id
WHERE ($1::uuid IS NULL OR b.user_id > $1)
ORDER BY b.user_id LIMIT $2
"""
# One batch of a banned user's recent messages, locked until they are deleted.
SELECT_RECENT_MESSAGES = """
SELECT id, channel_id FROM messages
WHERE user_id = $1 AND created_at >= $2
ORDER BY id LIMIT $3
FOR UPDATE SKIP LOCKED
"""
DELETE_FILES_OF_MESSAGES = "DELETE FROM files WHERE message_id = ANY($1::uuid[]) RETURNING s3_key"
DELETE_MESSAGES = "DELETE FROM messages WHERE id = ANY($1::uuid[])"
SET_TIMEOUT = """
UPDATE users SET communication_disabled_until = $2, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id
"""
SELECT_TIMED_OUT_UNTIL = """
SELECT communication_disabled_until FROM users
WHERE id = $1 AND communication_disabled_until > now()
"""


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a user stands for the hierarchy rule."""

    id: UUID
    administrator: bool
    top_position: int


@dataclass(frozen=True, slots=True)
class Ban:
    """A row of `bans` with the banned user's public names."""

    user_id: UUID
    banned_by: UUID | None
    reason: str | None
    created_at: datetime
    username: str
    display_name: str | None
    avatar_url: str | None


@dataclass(frozen=True, slots=True)
class DeletedMessage:
    """A message removed with its author's ban: what `message.delete` announces."""

    id: UUID
    channel_id: UUID


class ModerationRepository:
    """SQL for bans and timeouts over one connection (or a transaction on it)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def standings(self, *user_ids: UUID) -> dict[UUID, Standing]:
        """Each existing (not deleted) user's standing, by id."""
        rows = await self._conn.fetch(SELECT_STANDINGS, list(user_ids))
        return {row["id"]: Standing(**dict(row.items())) for row in rows}

    async def ban(self, user_id: UUID, *, banned_by: UUID, reason: str | None) -> datetime:
        """Ban the user (again: the reason is replaced); returns when they were first banned."""
        created_at: datetime = await self._conn.fetchval(UPSERT_BAN, user_id, banned_by, reason)
        return created_at

    async def unban(self, user_id: UUID) -> bool:
        """Lift the user's ban; False if there was none."""
        return await self._conn.fetchval(DELETE_BAN, user_id) is not None

    async def is_banned(self, user_id: UUID) -> bool:
        """Whether the user is banned."""
        return bool(await self._conn.fetchval(SELECT_IS_BANNED, user_id))

    async def banned_owner_of_refresh(self, refresh_hash: str) -> UUID | None:
        """The banned user whose session's latest refresh token has this hash, if any."""
        owner: UUID | None = await self._conn.fetchval(
            SELECT_BANNED_BY_REFRESH_HASH, bytes.fromhex(refresh_hash)
        )
        return owner

    async def bans(self, *, after: UUID | None, limit: int) -> list[Ban]:
        """Bans by user id, after `after`."""
        rows = await self._conn.fetch(SELECT_BANS, after, limit)
        return [Ban(**dict(row.items())) for row in rows]

    async def delete_recent_messages(
        self, user_id: UUID, since: datetime, *, batch: int
    ) -> tuple[list[DeletedMessage], list[str]]:
        """Delete up to `batch` of the user's messages sent since `since`, with their
        attachments' rows; returns the messages and the attachments' object keys.

        Call it in a transaction, until it returns fewer than `batch` messages.
        """
        rows = await self._conn.fetch(SELECT_RECENT_MESSAGES, user_id, since, batch)
        if not rows:
            return [], []
        ids = [row["id"] for row in rows]
        keys = [row["s3_key"] for row in await self._conn.fetch(DELETE_FILES_OF_MESSAGES, ids)]
        await self._conn.execute(DELETE_MESSAGES, ids)
        return [DeletedMessage(row["id"], row["channel_id"]) for row in rows], keys

    async def set_timeout(self, user_id: UUID, until: datetime | None) -> bool:
        """Set (or with None clear) the user's timeout; False if there is no such user."""
        return await self._conn.fetchval(SET_TIMEOUT, user_id, until) is not None

    async def timed_out_until(self, user_id: UUID) -> datetime | None:
        """When the user's running timeout ends; None when they are not timed out."""
        until: datetime | None = await self._conn.fetchval(SELECT_TIMED_OUT_UNTIL, user_id)
        return until
