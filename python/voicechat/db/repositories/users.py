"""Users: accounts, local or provisioned from an identity provider."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

import asyncpg

from voicechat.db.pool import Connection
from voicechat.db.repositories.rows import found
from voicechat.error_codes import ErrorCode
from voicechat.errors import Conflict

AuthMethod = Literal["local", "oidc", "bot"]
Status = Literal["online", "idle", "dnd", "offline"]

# Every SELECT returns the same columns, in the order of `User`'s fields.
INSERT_USER = """
INSERT INTO users (username, display_name, email, password_hash, auth_method, external_id, provider)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id, username, display_name, email, password_hash, auth_method, external_id, provider,
    avatar_url, status, mfa_enabled, email_verified, created_at, updated_at,
    communication_disabled_until
"""
SELECT_USER_BY_ID = """
SELECT id, username, display_name, email, password_hash, auth_method, external_id, provider,
    avatar_url, status, mfa_enabled, email_verified, created_at, updated_at,
    communication_disabled_until
FROM users WHERE id = $1 AND deleted_at IS NULL
"""
SELECT_USER_BY_USERNAME = """
SELECT id, username, display_name, email, password_hash, auth_method, external_id, provider,
    avatar_url, status, mfa_enabled, email_verified, created_at, updated_at,
    communication_disabled_until
FROM users WHERE username = $1 AND deleted_at IS NULL
"""
COUNT_USERS = "SELECT count(*) FROM users"
# The member list: active accounts by username, keyset-paged.
SELECT_USER_PAGE = """
SELECT id, username, display_name, email, password_hash, auth_method, external_id, provider,
    avatar_url, status, mfa_enabled, email_verified, created_at, updated_at,
    communication_disabled_until
FROM users WHERE deleted_at IS NULL AND username > $1
ORDER BY username LIMIT $2
"""
# Presence, not a profile edit: `updated_at` stays.
UPDATE_STATUS = "UPDATE users SET status = $2 WHERE id = $1"


UPDATE_PASSWORD_HASH = "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1"
SELECT_USER_BY_SUBJECT = """
SELECT id, username, display_name, email, password_hash, auth_method, external_id, provider,
    avatar_url, status, mfa_enabled, email_verified, created_at, updated_at,
    communication_disabled_until
FROM users WHERE provider = $1 AND external_id = $2 AND auth_method = 'oidc'
    AND deleted_at IS NULL
"""
UPDATE_PROFILE = """
UPDATE users SET
    display_name = CASE WHEN $2 THEN $3 ELSE display_name END,
    status = COALESCE($4, status),
    email = CASE WHEN $5 THEN $6 ELSE email END,
    -- A new address is unverified until a mailed code comes back (docs/accounts.md).
    email_verified = CASE WHEN $5 AND email IS DISTINCT FROM $6 THEN false ELSE email_verified END,
    avatar_url = CASE WHEN $7 THEN $8 ELSE avatar_url END,
    updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id, username, display_name, email, password_hash, auth_method, external_id, provider,
    avatar_url, status, mfa_enabled, email_verified, created_at, updated_at,
    communication_disabled_until
"""
SELECT_MFA = "SELECT mfa_secret, mfa_secret_key_id, mfa_enabled FROM users WHERE id = $1"
SET_MFA_SECRET = """
UPDATE users SET mfa_secret = $2, mfa_secret_key_id = $3, mfa_enabled = false,
    mfa_last_step = NULL, updated_at = now()
WHERE id = $1
"""
ENABLE_MFA = "UPDATE users SET mfa_enabled = true, updated_at = now() WHERE id = $1"
DISABLE_MFA = """
UPDATE users SET mfa_enabled = false, mfa_secret = NULL, mfa_secret_key_id = NULL,
    mfa_last_step = NULL, updated_at = now()
WHERE id = $1
"""
# Accepting a TOTP step is a compare-and-set: only a step later than the last one wins.
CLAIM_TOTP_STEP = """
UPDATE users SET mfa_last_step = $2
WHERE id = $1 AND (mfa_last_step IS NULL OR mfa_last_step < $2)
"""
DELETE_BACKUP_CODES = "DELETE FROM mfa_backup_codes WHERE user_id = $1"
INSERT_BACKUP_CODE = "INSERT INTO mfa_backup_codes (user_id, code_hash) VALUES ($1, $2)"
USE_BACKUP_CODE = """
UPDATE mfa_backup_codes SET used_at = now()
WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL
"""
ASSIGN_ROLE_BY_NAME = """
INSERT INTO user_roles (user_id, role_id)
SELECT $1, id FROM roles WHERE lower(name) = lower($2)
ON CONFLICT DO NOTHING
"""
SELECT_ROLE_NAMES = """
SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id
WHERE ur.user_id = $1 ORDER BY r.position DESC, r.name
"""


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
    #: The end of the user's timeout (docs/moderation.md "Timeouts"); a past time or None:
    #: not timed out. Selects that leave it out (bots.py) get None.
    communication_disabled_until: datetime | None = None
    #: The address came back verified (POST /auth/email/verify); selects without it: False.
    email_verified: bool = False

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> User:
        """Build from a row selected with the repository's column list."""
        return cls(**dict(record.items()))

    @property
    def bot(self) -> bool:
        """A bot account (db/repositories/bots.py): token auth only, owned by a user."""
        return self.auth_method == "bot"


# Serialises "is this the first user?" across instances; any constant shared by all of them.
ACCOUNT_CREATION_LOCK = 0x766F6175  # "voau"
LOCK_ACCOUNT_CREATION = "SELECT pg_advisory_xact_lock($1)"


class UserRepository:
    """SQL for `users` over one connection (or a transaction on it)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def lock_account_creation(self) -> None:
        """Serialise, until the transaction ends, creating accounts.

        Registration and SSO sign-up both take it, so "the first user becomes administrator"
        and username choices never race.
        """
        await self._conn.execute(LOCK_ACCOUNT_CREATION, ACCOUNT_CREATION_LOCK)

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
            raise Conflict("that username is taken", code=ErrorCode.USERNAME_TAKEN) from None
        assert record is not None
        return User.from_record(record)

    async def get(self, user_id: UUID) -> User:
        """The user with this id.

        Raises:
            NotFound: no such user, or the account was deleted.
        """
        record = found(
            await self._conn.fetchrow(SELECT_USER_BY_ID, user_id), "user", ErrorCode.USER_NOT_FOUND
        )
        return User.from_record(record)

    async def find_by_username(self, username: str) -> User | None:
        """The user with this (already folded) username, if any."""
        record = await self._conn.fetchrow(SELECT_USER_BY_USERNAME, username)
        return None if record is None else User.from_record(record)

    async def page(self, *, after: str = "", limit: int) -> list[User]:
        """Up to `limit` active users ordered by username, those after `after`."""
        records = await self._conn.fetch(SELECT_USER_PAGE, after, limit)
        return [User.from_record(record) for record in records]

    async def count(self) -> int:
        """How many accounts were ever created (deleted ones included)."""
        value = await self._conn.fetchval(COUNT_USERS)
        return int(value)

    async def set_password_hash(self, user_id: UUID, password_hash: str) -> None:
        """Replace the stored hash (rehash on login)."""
        await self._conn.execute(UPDATE_PASSWORD_HASH, user_id, password_hash)

    async def find_by_subject(self, provider: str, subject: str) -> User | None:
        """The user an identity provider's subject was provisioned as."""
        record = await self._conn.fetchrow(SELECT_USER_BY_SUBJECT, provider, subject)
        return None if record is None else User.from_record(record)

    async def update_profile(self, user_id: UUID, changes: dict[str, object]) -> User:
        """Apply the given profile fields (display_name, status, email, avatar_url).

        A key present with None clears a nullable field; an absent key leaves it.
        """
        record = found(
            await self._conn.fetchrow(
                UPDATE_PROFILE,
                user_id,
                "display_name" in changes,
                changes.get("display_name"),
                changes.get("status"),
                "email" in changes,
                changes.get("email"),
                "avatar_url" in changes,
                changes.get("avatar_url"),
            ),
            "user",
            ErrorCode.USER_NOT_FOUND,
        )
        return User.from_record(record)

    async def set_status(self, user_id: UUID, status: Status) -> None:
        """Store the user's presence status (the gateway keeps it current)."""
        await self._conn.execute(UPDATE_STATUS, user_id, status)

    async def assign_role(self, user_id: UUID, role_name: str) -> None:
        """Give the user the role of that name, if such a role exists."""
        await self._conn.execute(ASSIGN_ROLE_BY_NAME, user_id, role_name)

    async def role_names(self, user_id: UUID) -> list[str]:
        """Names of the roles assigned to the user (the default role is implicit)."""
        return [row["name"] for row in await self._conn.fetch(SELECT_ROLE_NAMES, user_id)]


class MfaRepository:
    """The second-factor columns of `users` and the backup codes."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def state(self, user_id: UUID) -> tuple[bytes | None, bool]:
        """The sealed TOTP secret (if any) and whether MFA is on."""
        record = found(
            await self._conn.fetchrow(SELECT_MFA, user_id), "user", ErrorCode.USER_NOT_FOUND
        )
        return record["mfa_secret"], record["mfa_enabled"]

    async def sealed_secret(self, user_id: UUID) -> tuple[bytes | None, bytes | None]:
        """The sealed TOTP secret (if any) and the id of the master key that sealed it (None:
        sealed before key ids were recorded)."""
        record = found(
            await self._conn.fetchrow(SELECT_MFA, user_id), "user", ErrorCode.USER_NOT_FOUND
        )
        return record["mfa_secret"], record["mfa_secret_key_id"]

    async def set_pending_secret(
        self, user_id: UUID, sealed_secret: bytes, *, master_key_id: bytes
    ) -> None:
        """Store a new secret, sealed under master key `master_key_id`, not yet active until a
        code proves the app has it."""
        await self._conn.execute(SET_MFA_SECRET, user_id, sealed_secret, master_key_id)

    async def enable(self, user_id: UUID, backup_code_hashes: list[bytes]) -> None:
        """Turn MFA on with a fresh set of backup codes (replacing older ones)."""
        async with self._conn.transaction():
            await self._conn.execute(ENABLE_MFA, user_id)
            await self._conn.execute(DELETE_BACKUP_CODES, user_id)
            await self._conn.executemany(
                INSERT_BACKUP_CODE, [(user_id, code_hash) for code_hash in backup_code_hashes]
            )

    async def disable(self, user_id: UUID) -> None:
        """Turn MFA off and forget the secret and backup codes."""
        async with self._conn.transaction():
            await self._conn.execute(DISABLE_MFA, user_id)
            await self._conn.execute(DELETE_BACKUP_CODES, user_id)

    async def claim_totp_step(self, user_id: UUID, step: int) -> bool:
        """True once per step (and only for steps after the last accepted one)."""
        return await self._conn.execute(CLAIM_TOTP_STEP, user_id, step) == "UPDATE 1"

    async def use_backup_code(self, user_id: UUID, code_hash: bytes) -> bool:
        """True the first time an unused code is presented."""
        return await self._conn.execute(USE_BACKUP_CODE, user_id, code_hash) == "UPDATE 1"
