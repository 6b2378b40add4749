"""What administrators see and change of accounts: GET/PATCH /admin/users, `voicechat admin users`.

"Administrator" means holding the `administrator` permission through some role (the
`administrator` role of a fresh install, or any other that grants it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from voicechat.db.pool import Connection
from voicechat.db.repositories.rows import from_record

_ADMIN_USER = """
SELECT u.id, u.username, u.display_name, u.email, u.auth_method, u.bot_owner_id, u.disabled,
       EXISTS (
           SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id
           WHERE ur.user_id = u.id AND r.permissions ? 'administrator'
       ) AS administrator,
       u.mfa_enabled, u.created_at
FROM users u
"""
# Keyset-paged on the username; `q` matches username, display name or email, in any case.
SELECT_PAGE = (
    _ADMIN_USER
    + r"""WHERE u.deleted_at IS NULL AND u.username > $1
  AND ($2::text IS NULL
       OR u.username ILIKE '%' || $2 || '%' ESCAPE '\'
       OR u.display_name ILIKE '%' || $2 || '%' ESCAPE '\'
       OR u.email ILIKE '%' || $2 || '%' ESCAPE '\')
ORDER BY u.username
LIMIT $3
"""
)
SELECT_BY_ID = _ADMIN_USER + "WHERE u.id = $1 AND u.deleted_at IS NULL"
SELECT_BY_USERNAME = _ADMIN_USER + "WHERE u.username = $1 AND u.deleted_at IS NULL"
SELECT_DISABLED = "SELECT disabled FROM users WHERE id = $1"
UPDATE_DISABLED = "UPDATE users SET disabled = $2, updated_at = now() WHERE id = $1"
# Serialises changes to who is an administrator (or disabled), so that two administrators
# demoting each other at once cannot leave none.
ADMINISTRATORS_LOCK = 0x766F6164  # "voad"
LOCK_ADMINISTRATORS = "SELECT pg_advisory_xact_lock($1)"
COUNT_OTHER_ADMINISTRATORS = """
SELECT count(*) FROM users u
WHERE u.id <> $1 AND u.deleted_at IS NULL AND NOT u.disabled
  AND EXISTS (
      SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id
      WHERE ur.user_id = u.id AND r.permissions ? 'administrator'
  )
"""
GRANT_ADMINISTRATOR = """
INSERT INTO user_roles (user_id, role_id)
SELECT $1, id FROM roles WHERE lower(name) = 'administrator'
ON CONFLICT DO NOTHING
"""
# Demoting takes away every role that grants the permission (else it would stay).
REVOKE_ADMINISTRATOR = """
DELETE FROM user_roles ur USING roles r
WHERE ur.role_id = r.id AND ur.user_id = $1 AND r.permissions ? 'administrator'
"""


@dataclass(frozen=True, slots=True)
class AdminUserView:
    """An account as administrators see it."""

    id: UUID
    username: str
    display_name: str | None
    email: str | None
    auth_method: str
    bot_owner_id: UUID | None
    disabled: bool
    administrator: bool
    mfa_enabled: bool
    created_at: datetime

    @property
    def bot(self) -> bool:
        """A bot account."""
        return self.auth_method == "bot"


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class AdminUserRepository:
    """SQL behind the administration of accounts."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def page(self, *, q: str | None, after: str, limit: int) -> list[AdminUserView]:
        """Up to `limit` active accounts after username `after`, matching `q` if given."""
        pattern = _like_escaped(q) if q else None
        records = await self._conn.fetch(SELECT_PAGE, after, pattern, limit)
        return [from_record(AdminUserView, record) for record in records]

    async def get(self, user_id: UUID) -> AdminUserView | None:
        """The active account with this id."""
        record = await self._conn.fetchrow(SELECT_BY_ID, user_id)
        return None if record is None else from_record(AdminUserView, record)

    async def find(self, username: str) -> AdminUserView | None:
        """The active account with this (folded) username."""
        record = await self._conn.fetchrow(SELECT_BY_USERNAME, username)
        return None if record is None else from_record(AdminUserView, record)

    async def is_disabled(self, user_id: UUID) -> bool:
        """Whether an administrator disabled the account."""
        return bool(await self._conn.fetchval(SELECT_DISABLED, user_id))

    async def lock_administrators(self) -> None:
        """Serialise, until the transaction ends, changes to the set of administrators."""
        await self._conn.execute(LOCK_ADMINISTRATORS, ADMINISTRATORS_LOCK)

    async def other_administrators(self, user_id: UUID) -> int:
        """How many enabled administrators there are besides `user_id`."""
        return int(await self._conn.fetchval(COUNT_OTHER_ADMINISTRATORS, user_id))

    async def set_disabled(self, user_id: UUID, disabled: bool) -> None:
        """Disable or enable the account."""
        await self._conn.execute(UPDATE_DISABLED, user_id, disabled)

    async def set_administrator(self, user_id: UUID, administrator: bool) -> None:
        """Grant the `administrator` role, or take away every role that grants the permission."""
        await self._conn.execute(
            GRANT_ADMINISTRATOR if administrator else REVOKE_ADMINISTRATOR, user_id
        )
