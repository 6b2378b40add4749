"""Users: accounts, local or provisioned from an identity provider."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

import asyncpg

from voicechat.db.pool import Connection
from voicechat.errors import Conflict, NotFound

AuthMethod = Literal["local", "oidc"]
Status = Literal["online", "idle", "dnd", "offline"]

# Every SELECT returns the same columns, in the order of `User`'s fields.
INSERT_USER = """
INSERT INTO users (username, display_name, email, password_hash, auth_method, external_id, provider)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id, username, display_name, email, password_hash, auth_method, external_id, provider,
    avatar_url, status, mfa_enabled, created_at, updated_at
"""
SELECT_USER_BY_ID = """
SELECT id, username, display_name, email, password_hash, auth_method, external_id, provider,
    avatar_url, status, mfa_enabled, created_at, updated_at
FROM users WHERE id = $1 AND deleted_at IS NULL
"""
SELECT_USER_BY_USERNAME = """
SELECT id, username, display_name, email, password_hash, auth_method, external_id, provider,
    avatar_url, status, mfa_enabled, created_at, updated_at
FROM users WHERE username = $1 AND deleted_at IS NULL
"""
COUNT_USERS = "SELECT count(*) FROM users"


@dataclass(frozen=True, slots=True)
class User:
    """A row of `users`, without the MFA secret."""

    id: UUID
    username: str
    display_name: str | None
    email: str | None
    password_hash: str | None
    auth_method: AuthMethod
    external_id: str | None
    provider: str | None
    avatar_url: str | None
    status: Status
    mfa_enabled: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> User:
        """Build from a row selected with the repository's column list."""
        return cls(**dict(record.items()))


class UserRepository:
    """SQL for `users` over one connection (or a transaction on it)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def create(
        self,
        username: str,
        *,
        password_hash: str | None = None,
        display_name: str | None = None,
        email: str | None = None,
        auth_method: AuthMethod = "local",
        external_id: str | None = None,
        provider: str | None = None,
    ) -> User:
        """Insert a user.

        Raises:
            Conflict: the username (or the provider's subject) is taken.
        """
        try:
            record = await self._conn.fetchrow(
                INSERT_USER,
                username,
                display_name,
                email,
                password_hash,
                auth_method,
                external_id,
                provider,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict("that username is taken", code="username_taken") from None
        assert record is not None
        return User.from_record(record)

    async def get(self, user_id: UUID) -> User:
        """The user with this id.

        Raises:
            NotFound: no such user, or the account was deleted.
        """
        record = await self._conn.fetchrow(SELECT_USER_BY_ID, user_id)
        if record is None:
            raise NotFound("no such user", code="user_not_found")
        return User.from_record(record)

    async def find_by_username(self, username: str) -> User | None:
        """The user with this (already folded) username, if any."""
        record = await self._conn.fetchrow(SELECT_USER_BY_USERNAME, username)
        return None if record is None else User.from_record(record)

    async def count(self) -> int:
        """How many accounts were ever created (deleted ones included)."""
        value = await self._conn.fetchval(COUNT_USERS)
        return int(value)
