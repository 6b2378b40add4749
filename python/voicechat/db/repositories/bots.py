"""Bot accounts (users with auth_method 'bot' and an owner) and their tokens.

A token is stored by its SHA-256 only; the one live token of a bot is the newest (rotating
revokes the older ones in the same statement).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from voicechat.db.pool import Connection
from voicechat.db.repositories.rows import from_record
from voicechat.db.repositories.users import User
from voicechat.error_codes import ErrorCode
from voicechat.errors import Conflict

INSERT_BOT = """
INSERT INTO users (username, display_name, auth_method, bot_owner_id)
VALUES ($1, $2, 'bot', $3)
RETURNING id, username, display_name, email, password_hash, auth_method, external_id, provider,
    avatar_url, status, mfa_enabled, created_at, updated_at
"""
# Rotation: the older tokens die in the statement that makes the new one.
INSERT_TOKEN = """
WITH revoked AS (
    UPDATE bot_tokens SET revoked_at = now()
    WHERE bot_id = $1 AND revoked_at IS NULL
    RETURNING id
), created AS (
    INSERT INTO bot_tokens (bot_id, token_hash, created_by) VALUES ($1, $2, $3)
    RETURNING id, created_at
)
SELECT created.id, created.created_at,
       COALESCE((SELECT array_agg(id) FROM revoked), '{}') AS revoked
FROM created
"""
_BOT_COLUMNS = """
SELECT u.id, u.username, u.display_name, u.avatar_url, u.bot_owner_id AS owner_id,
       o.username AS owner_username, u.disabled, u.created_at,
       t.id AS token_id, t.created_at AS token_created_at, t.last_used_at AS token_last_used_at
FROM users u
JOIN users o ON o.id = u.bot_owner_id
LEFT JOIN bot_tokens t ON t.bot_id = u.id AND t.revoked_at IS NULL
"""
SELECT_BOTS = (
    _BOT_COLUMNS
    + """WHERE u.auth_method = 'bot' AND u.deleted_at IS NULL
  AND ($1::uuid IS NULL OR u.bot_owner_id = $1)
ORDER BY u.username
LIMIT $2
"""
)
SELECT_BOT = _BOT_COLUMNS + "WHERE u.id = $1 AND u.auth_method = 'bot' AND u.deleted_at IS NULL"
DELETE_BOT = """
WITH live AS (
    SELECT id FROM bot_tokens WHERE bot_id = $1 AND revoked_at IS NULL
)
DELETE FROM users WHERE id = $1 AND auth_method = 'bot'
RETURNING COALESCE((SELECT array_agg(id) FROM live), '{}') AS tokens
"""
# What a request with this token is: the bot, if the token is live and the account usable.
# A disabled owner's bots stop too (disabling ends what the account runs).
SELECT_TOKEN_OWNER = """
SELECT t.id AS token_id, t.bot_id
FROM bot_tokens t
JOIN users u ON u.id = t.bot_id
JOIN users o ON o.id = u.bot_owner_id
WHERE t.token_hash = $1 AND t.revoked_at IS NULL
  AND NOT u.disabled AND u.deleted_at IS NULL AND NOT o.disabled AND o.deleted_at IS NULL
"""
# The live tokens of a user who is a bot, and of the bots the user owns.
SELECT_TOKENS_OF_USER_AND_BOTS = """
SELECT t.id FROM bot_tokens t JOIN users u ON u.id = t.bot_id
WHERE t.revoked_at IS NULL AND (u.id = $1 OR u.bot_owner_id = $1)
"""
# Batched "last used": never moves the time backwards.
MARK_USED = """
UPDATE bot_tokens t SET last_used_at = u.used
FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, used)
WHERE t.id = u.id AND (t.last_used_at IS NULL OR t.last_used_at < u.used)
"""


@dataclass(frozen=True, slots=True)
class Bot:
    """A bot account as its owner (or an administrator) sees it."""

    id: UUID
    username: str
    display_name: str | None
    avatar_url: str | None
    owner_id: UUID
    owner_username: str
    disabled: bool
    created_at: datetime
    token_id: UUID | None
    token_created_at: datetime | None
    token_last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token row just made, and the ids of the tokens it replaced."""

    id: UUID
    created_at: datetime
    revoked: list[UUID]


class BotRepository:
    """SQL for bot accounts and `bot_tokens` over one connection (or a transaction on it)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def create(self, owner_id: UUID, username: str, display_name: str | None) -> User:
        """Insert the bot's user row.

        Raises:
            Conflict: the username is taken.
        """
        try:
            record = await self._conn.fetchrow(INSERT_BOT, username, display_name, owner_id)
        except asyncpg.UniqueViolationError:
            raise Conflict("that username is taken", code=ErrorCode.USERNAME_TAKEN) from None
        assert record is not None
        return User.from_record(record)

    async def issue_token(self, bot_id: UUID, token_hash: bytes, created_by: UUID) -> IssuedToken:
        """Store a new token (by hash) and revoke the bot's older ones."""
        record = await self._conn.fetchrow(INSERT_TOKEN, bot_id, token_hash, created_by)
        assert record is not None
        return IssuedToken(record["id"], record["created_at"], list(record["revoked"]))

    async def listing(self, *, owner_id: UUID | None, limit: int = 1000) -> list[Bot]:
        """Bots by username: those of `owner_id`, or everyone's when it is None."""
        records = await self._conn.fetch(SELECT_BOTS, owner_id, limit)
        return [from_record(Bot, record) for record in records]

    async def get(self, bot_id: UUID) -> Bot | None:
        """The bot with this id, if there is one."""
        record = await self._conn.fetchrow(SELECT_BOT, bot_id)
        return None if record is None else from_record(Bot, record)

    async def delete(self, bot_id: UUID) -> list[UUID] | None:
        """Delete the bot's account (its messages stay, under the deleted-user placeholder);
        returns the ids of its live tokens, None if there was no such bot."""
        record = await self._conn.fetchrow(DELETE_BOT, bot_id)
        return None if record is None else list(record["tokens"])

    async def token_owner(self, token_hash: bytes) -> tuple[UUID, UUID] | None:
        """(token id, bot id) of a live token of a usable bot, None otherwise."""
        record = await self._conn.fetchrow(SELECT_TOKEN_OWNER, token_hash)
        return None if record is None else (record["token_id"], record["bot_id"])

    async def tokens_of_user_and_bots(self, user_id: UUID) -> list[UUID]:
        """The live tokens of `user_id` (a bot) and of the bots `user_id` owns."""
        records = await self._conn.fetch(SELECT_TOKENS_OF_USER_AND_BOTS, user_id)
        return [record["id"] for record in records]

    async def mark_used(self, used: Mapping[UUID, datetime]) -> None:
        """Record when tokens were last used (one statement for the batch)."""
        if used:
            await self._conn.execute(MARK_USED, list(used), list(used.values()))
