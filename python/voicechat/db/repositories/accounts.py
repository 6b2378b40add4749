"""SQL of the account flows (docs/accounts.md): one-time tokens, the mail outbox, deletion
tombstones and the data export."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from voicechat.db.pool import Connection, Pool

TokenPurpose = Literal["password_reset", "email_verify"]

INSERT_TOKEN = """
INSERT INTO account_tokens (token_hash, user_id, purpose, email, expires_at)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
RETURNING expires_at
"""
# Accepting a token is this one UPDATE: of N racing requests exactly one gets the row.
USE_TOKEN = """
UPDATE account_tokens SET used_at = now()
WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
RETURNING user_id, email
"""
# Why a token was not accepted (it was used, it expired, or it never existed).
SELECT_TOKEN_STATE = """
SELECT used_at IS NOT NULL AS used, expires_at <= now() AS expired
FROM account_tokens WHERE token_hash = $1 AND purpose = $2
"""
# After a reset, the user's other outstanding reset links die with the old password.
RETIRE_TOKENS = """
UPDATE account_tokens SET used_at = now()
WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL
"""
PURGE_TOKENS = "DELETE FROM account_tokens WHERE expires_at < now() - interval '1 day'"

# Local, live accounts a reset can be asked for by address (several may share one).
SELECT_LOCAL_BY_EMAIL = """
SELECT id FROM users
WHERE lower(email) = lower($1) AND deleted_at IS NULL AND auth_method = 'local'
ORDER BY created_at LIMIT 5
"""
SELECT_TOMBSTONE_BY_USERNAME = """
SELECT EXISTS (SELECT 1 FROM users WHERE username = $1 AND deleted_at IS NOT NULL)
"""
SELECT_TOMBSTONE_BY_SUBJECT = """
SELECT EXISTS (
    SELECT 1 FROM users
    WHERE provider = $1 AND external_id = $2 AND auth_method = 'oidc' AND deleted_at IS NOT NULL
)
"""
SET_EMAIL_VERIFIED = """
UPDATE users SET email = $2, email_verified = true, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
"""

# Deletion: the row stays as a tombstone (messages keep their author id, the username stays
# taken); everything personal goes. Returns the avatar to remove from storage.
ANONYMISE_USER = """
UPDATE users u SET
    display_name = NULL, email = NULL, email_verified = false, password_hash = NULL,
    avatar_url = NULL, status = 'offline', mfa_secret = NULL, mfa_secret_key_id = NULL,
    mfa_enabled = false, mfa_last_step = NULL, deleted_at = now(), updated_at = now()
FROM (SELECT id, avatar_url FROM users WHERE id = $1 FOR UPDATE) before
WHERE u.id = before.id AND u.deleted_at IS NULL
RETURNING before.avatar_url
"""
DELETE_PERSONAL_ROWS = (
    "DELETE FROM mfa_backup_codes WHERE user_id = $1",
    "DELETE FROM user_roles WHERE user_id = $1",
    "DELETE FROM one_time_keys WHERE user_id = $1",
    "DELETE FROM to_device_messages WHERE recipient_user_id = $1",
    "DELETE FROM devices WHERE user_id = $1",
    "DELETE FROM account_tokens WHERE user_id = $1",
    "DELETE FROM mail_outbox WHERE user_id = $1",
    "UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
    # A deleted owner's bots stop working with them (db/migrations/0009_bots.sql).
    """UPDATE bot_tokens SET revoked_at = now()
       WHERE revoked_at IS NULL
         AND bot_id IN (SELECT id FROM users WHERE bot_owner_id = $1)""",
)
# The avatar's row, once nobody's avatar (the object is removed after the commit).
DELETE_AVATAR_FILE = """
DELETE FROM files WHERE id = $1 AND uploader_id = $2 AND channel_id IS NULL RETURNING s3_key
"""
# The end of a tombstone's grace period: its username and SSO subject are free again.
RELEASE_TOMBSTONES = """
UPDATE users SET
    username = 'deleted.' || left(replace(id::text, '-', ''), 24),
    external_id = NULL, provider = NULL, username_released_at = now()
WHERE id IN (
    SELECT id FROM users
    WHERE deleted_at IS NOT NULL AND username_released_at IS NULL
      AND deleted_at < now() - make_interval(days => $1)
    ORDER BY deleted_at LIMIT 500
    FOR UPDATE SKIP LOCKED
)
"""

# The mail outbox.
INSERT_MAIL = """
INSERT INTO mail_outbox (user_id, recipient, subject, body, expires_at)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
RETURNING id
"""
COUNT_MAIL = "SELECT count(*) FROM mail_outbox"
# Claim due mail for `$2` seconds (the lease); SKIP LOCKED so instances share the work.
CLAIM_MAIL = """
UPDATE mail_outbox SET next_attempt_at = now() + make_interval(secs => $2),
    attempts = attempts + 1
WHERE id IN (
    SELECT id FROM mail_outbox WHERE next_attempt_at <= now() AND expires_at > now()
    ORDER BY next_attempt_at LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING id, recipient, subject, body, attempts
"""
DELETE_MAIL = "DELETE FROM mail_outbox WHERE id = $1"
DEFER_MAIL = """
UPDATE mail_outbox SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3
WHERE id = $1
"""
DROP_EXPIRED_MAIL = """
DELETE FROM mail_outbox WHERE expires_at <= now() RETURNING id, recipient, attempts, last_error
"""

# The export (GET /users/@me/export).
SELECT_EXPORT_PROFILE = """
SELECT id, username, display_name, email, email_verified, auth_method, provider, avatar_url,
    status, mfa_enabled, created_at, updated_at
FROM users WHERE id = $1
"""
SELECT_EXPORT_SESSIONS = """
SELECT id, host(ip_address) AS ip_address, user_agent, created_at, last_used_at, expires_at,
    revoked_at
FROM sessions WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1000
"""
SELECT_EXPORT_ROLES = """
SELECT r.id, r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id
WHERE ur.user_id = $1 ORDER BY r.position DESC, r.name
"""
SELECT_EXPORT_FILES = """
SELECT id, filename, mime_type, size_bytes, channel_id, message_id, created_at
FROM files WHERE uploader_id = $1 AND id > $2 ORDER BY id LIMIT $3
"""
# Keyset pages over the author index: no transaction is held across the whole export.
SELECT_EXPORT_MESSAGES = """
SELECT m.id, m.channel_id, c.name AS channel_name, m.content, m.reply_to, m.created_at,
    m.edited_at
FROM messages m JOIN channels c ON c.id = m.channel_id
WHERE m.user_id = $1 AND m.content IS NOT NULL AND m.id > $2
ORDER BY m.id LIMIT $3
"""
NIL_UUID = UUID(int=0)


@dataclass(frozen=True, slots=True)
class QueuedMail:
    """A mail the sender claimed."""

    id: int
    recipient: str
    subject: str
    body: str
    attempts: int


@dataclass(frozen=True, slots=True)
class TokenUse:
    """A token that was just accepted."""

    user_id: UUID
    email: str | None


class AccountTokens:
    """One-time tokens (password reset, email verification), stored as SHA-256."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def create(
        self,
        digest: bytes,
        user_id: UUID,
        purpose: TokenPurpose,
        *,
        ttl_seconds: int,
        email: str | None = None,
    ) -> datetime:
        """Store a token's digest; returns when it expires."""
        expires_at: datetime = await self._conn.fetchval(
            INSERT_TOKEN, digest, user_id, purpose, email, float(ttl_seconds)
        )
        return expires_at

    async def use(self, digest: bytes, purpose: TokenPurpose) -> TokenUse | None:
        """Accept the token once; None if it is unknown, used or expired."""
        record = await self._conn.fetchrow(USE_TOKEN, digest, purpose)
        return None if record is None else TokenUse(record["user_id"], record["email"])

    async def refusal(
        self, digest: bytes, purpose: TokenPurpose
    ) -> Literal["used", "expired", "unknown"]:
        """Why `use` refused the token."""
        record = await self._conn.fetchrow(SELECT_TOKEN_STATE, digest, purpose)
        if record is None:
            return "unknown"
        return "used" if record["used"] else "expired" if record["expired"] else "unknown"

    async def retire(self, user_id: UUID, purpose: TokenPurpose) -> None:
        """Mark the user's outstanding tokens of `purpose` used."""
        await self._conn.execute(RETIRE_TOKENS, user_id, purpose)

    async def purge(self) -> None:
        """Forget tokens that expired over a day ago."""
        await self._conn.execute(PURGE_TOKENS)


class MailOutbox:
    """`mail_outbox`: mail committed with the request, delivered by the background sender."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def enqueue(
        self, user_id: UUID | None, recipient: str, subject: str, body: str, *, ttl_seconds: int
    ) -> int:
        """Queue one mail; returns its id."""
        mail_id: int = await self._conn.fetchval(
            INSERT_MAIL, user_id, recipient, subject, body, float(ttl_seconds)
        )
        return mail_id

    async def pending(self) -> int:
        """Mail waiting to be sent (or retried)."""
        return int(await self._conn.fetchval(COUNT_MAIL))

    async def claim(self, *, limit: int, lease_seconds: float) -> list[QueuedMail]:
        """Due mail, leased to the caller for `lease_seconds`."""
        records = await self._conn.fetch(CLAIM_MAIL, limit, lease_seconds)
        return [QueuedMail(**dict(r.items())) for r in records]

    async def sent(self, mail_id: int) -> None:
        """Forget a delivered mail (its body may hold a token)."""
        await self._conn.execute(DELETE_MAIL, mail_id)

    async def defer(self, mail_id: int, *, delay_seconds: float, error: str) -> None:
        """Retry a failed mail after `delay_seconds`, noting why it failed."""
        await self._conn.execute(DEFER_MAIL, mail_id, delay_seconds, error[:500])

    async def drop_expired(self) -> list[dict[str, Any]]:
        """Remove mail whose content is dead (its token expired); returns what was dropped."""
        return [dict(r.items()) for r in await self._conn.fetch(DROP_EXPIRED_MAIL)]


class AccountRepository:
    """Look-ups, deletion tombstones and the export of accounts."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def local_ids_by_email(self, email: str) -> list[UUID]:
        """Live local accounts with this address (case-insensitive), oldest first, at most 5."""
        return [r["id"] for r in await self._conn.fetch(SELECT_LOCAL_BY_EMAIL, email)]

    async def is_tombstone_username(self, username: str) -> bool:
        """True when a deleted account still holds this username (its grace period)."""
        return bool(await self._conn.fetchval(SELECT_TOMBSTONE_BY_USERNAME, username))

    async def is_tombstone_subject(self, provider: str, subject: str) -> bool:
        """True when a deleted account still holds this SSO subject."""
        return bool(await self._conn.fetchval(SELECT_TOMBSTONE_BY_SUBJECT, provider, subject))

    async def set_verified_email(self, user_id: UUID, email: str) -> bool:
        """Make `email` the user's verified address; False if the account is gone."""
        return await self._conn.execute(SET_EMAIL_VERIFIED, user_id, email) == "UPDATE 1"

    async def anonymise(self, user_id: UUID) -> tuple[bool, list[str]]:
        """Turn a live account into a tombstone, in the caller's transaction.

        Returns:
            Whether the account was live, and the storage keys of its avatar object (to remove
            once the transaction committed).
        """
        record = await self._conn.fetchrow(ANONYMISE_USER, user_id)
        if record is None:
            return False, []
        for statement in DELETE_PERSONAL_ROWS:
            await self._conn.execute(statement, user_id)
        avatar: str | None = record["avatar_url"]
        keys: list[str] = []
        if avatar is not None and avatar.startswith("/files/"):
            try:
                file_id = UUID(avatar.removeprefix("/files/"))
            except ValueError:
                file_id = None
            if file_id is not None:
                key = await self._conn.fetchval(DELETE_AVATAR_FILE, file_id, user_id)
                if key is not None:
                    keys.append(key)
        return True, keys

    async def release_tombstones(self, grace_days: int) -> int:
        """Free the usernames and SSO subjects of accounts deleted over `grace_days` ago."""
        result = await self._conn.execute(RELEASE_TOMBSTONES, grace_days)
        return int(result.split()[-1])

    async def export_profile(self, user_id: UUID) -> dict[str, Any]:
        """The account's own row, as the export shows it."""
        record = await self._conn.fetchrow(SELECT_EXPORT_PROFILE, user_id)
        return {} if record is None else dict(record.items())

    async def export_sessions(self, user_id: UUID) -> list[dict[str, Any]]:
        """The account's sessions (the newest 1,000), live and ended."""
        return [dict(r.items()) for r in await self._conn.fetch(SELECT_EXPORT_SESSIONS, user_id)]

    async def export_roles(self, user_id: UUID) -> list[dict[str, Any]]:
        """The roles assigned to the account."""
        return [dict(r.items()) for r in await self._conn.fetch(SELECT_EXPORT_ROLES, user_id)]


async def export_pages(
    pool: Pool, query: Literal["messages", "files"], user_id: UUID, *, page_size: int = 500
) -> AsyncIterator[list[dict[str, Any]]]:
    """The caller's plaintext messages (or uploaded files' metadata) in id order, a page at a
    time, each page on a connection of its own (none is held between pages)."""
    sql = SELECT_EXPORT_MESSAGES if query == "messages" else SELECT_EXPORT_FILES
    after = NIL_UUID
    while True:
        async with pool.acquire() as conn:
            records = await conn.fetch(sql, user_id, after, page_size)
        if not records:
            return
        yield [dict(r.items()) for r in records]
        if len(records) < page_size:
            return
        after = records[-1]["id"]


# Deleting the only live administrator would leave nobody able to administer the server.
SELECT_LAST_ADMINISTRATOR = """
SELECT EXISTS (
    SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id
    WHERE ur.user_id = $1 AND r.permissions ? 'administrator'
) AND NOT EXISTS (
    SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id
    JOIN users u ON u.id = ur.user_id
    WHERE ur.user_id <> $1 AND r.permissions ? 'administrator' AND u.deleted_at IS NULL
)
"""


async def is_last_administrator(conn: Connection, user_id: UUID) -> bool:
    """True when `user_id` is the only live account holding an administrator role."""
    return bool(await conn.fetchval(SELECT_LAST_ADMINISTRATOR, user_id))
