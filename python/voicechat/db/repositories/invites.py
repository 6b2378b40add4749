"""Invites: codes that let someone register (VOICECHAT_REGISTRATION=invite), with their limits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from voicechat.db.pool import Connection

_COLUMNS = """
i.code, i.created_by, i.max_uses, i.uses, i.expires_at, i.created_at,
ARRAY(SELECT ir.role_id FROM invite_roles ir WHERE ir.invite_code = i.code ORDER BY ir.role_id)
    AS role_ids,
u.username AS creator_username, u.display_name AS creator_display_name
"""
INSERT_INVITE = """
INSERT INTO invites (code, created_by, max_uses, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4::double precision))
"""
INSERT_INVITE_ROLES = """
INSERT INTO invite_roles (invite_code, role_id) SELECT $1, unnest($2::uuid[])
"""
SELECT_INVITE = f"""
SELECT {_COLUMNS}, (i.expires_at IS NOT NULL AND i.expires_at <= now()) AS expired
FROM invites i LEFT JOIN users u ON u.id = i.created_by
WHERE i.code = $1
"""  # noqa: S608 (constant fragments, no user input)
# Newest first; `$1` NULL lists everyone's (manage_server).
SELECT_INVITES = f"""
SELECT {_COLUMNS}, (i.expires_at IS NOT NULL AND i.expires_at <= now()) AS expired
FROM invites i LEFT JOIN users u ON u.id = i.created_by
WHERE $1::uuid IS NULL OR i.created_by = $1
ORDER BY i.created_at DESC, i.code
LIMIT $2
"""  # noqa: S608
DELETE_INVITE = "DELETE FROM invites WHERE code = $1"
# One statement decides and counts: concurrent registrations for the last use queue on the
# row lock, and the loser re-reads `uses` after the winner committed (READ COMMITTED) and
# matches no row. Expired invites match no row either.
USE_INVITE = """
UPDATE invites SET uses = uses + 1
WHERE code = $1
    AND (max_uses IS NULL OR uses < max_uses)
    AND (expires_at IS NULL OR expires_at > now())
RETURNING code, created_by, max_uses, uses
"""
GRANT_INVITE_ROLES = """
INSERT INTO user_roles (user_id, role_id)
SELECT $2, role_id FROM invite_roles WHERE invite_code = $1
ON CONFLICT DO NOTHING
RETURNING role_id
"""
SELECT_ROLE_POSITIONS = "SELECT id, position, permissions FROM roles WHERE id = ANY($1::uuid[])"
# The position of the user's highest assigned role (0: only the default role).
SELECT_HIGHEST_POSITION = """
SELECT COALESCE(max(r.position), 0) FROM user_roles ur JOIN roles r ON r.id = ur.role_id
WHERE ur.user_id = $1
"""


@dataclass(frozen=True, slots=True)
class Invite:
    """A row of `invites` with its roles and its creator's names (None when gone or the CLI)."""

    code: str
    created_by: UUID | None
    max_uses: int | None
    uses: int
    expires_at: datetime | None
    created_at: datetime
    role_ids: list[UUID]
    creator_username: str | None
    creator_display_name: str | None
    expired: bool

    @property
    def usable(self) -> bool:
        """Whether a registration could use it now (neither expired nor used up)."""
        return not self.expired and (self.max_uses is None or self.uses < self.max_uses)

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Invite:
        """Build from a row selected with the repository's columns."""
        return cls(**dict(record.items()))


@dataclass(frozen=True, slots=True)
class InviteUse:
    """What counting one use returned."""

    code: str
    created_by: UUID | None
    max_uses: int | None
    uses: int


@dataclass(frozen=True, slots=True)
class RoleRank:
    """A role's place in the hierarchy and what it grants, for checking an invite's roles."""

    id: UUID
    position: int
    permissions: list[str]


class InviteRepository:
    """SQL for `invites` and `invite_roles` over one connection (or a transaction on it)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def create(
        self,
        code: str,
        *,
        created_by: UUID | None,
        max_uses: int | None,
        expires_in: float | None,
        role_ids: list[UUID],
    ) -> Invite:
        """Insert an invite and its roles (in one transaction) and return it."""
        async with self._conn.transaction():
            await self._conn.execute(INSERT_INVITE, code, created_by, max_uses, expires_in)
            if role_ids:
                await self._conn.execute(INSERT_INVITE_ROLES, code, role_ids)
            invite = await self.get(code)
        assert invite is not None
        return invite

    async def get(self, code: str) -> Invite | None:
        """The invite with this code, whatever its state."""
        record = await self._conn.fetchrow(SELECT_INVITE, code)
        return None if record is None else Invite.from_record(record)

    async def listing(self, *, created_by: UUID | None, limit: int = 1000) -> list[Invite]:
        """Invites newest first: those `created_by` made, or everyone's when None."""
        records = await self._conn.fetch(SELECT_INVITES, created_by, limit)
        return [Invite.from_record(r) for r in records]

    async def delete(self, code: str) -> bool:
        """Revoke an invite; False when there was none."""
        return await self._conn.execute(DELETE_INVITE, code) == "DELETE 1"

    async def use(self, code: str) -> InviteUse | None:
        """Count one use, if the invite exists, is unexpired and has a use left; else None.

        Call it inside the registration's transaction: a registration that fails afterwards
        (a taken username) gives the use back by rolling back.
        """
        record = await self._conn.fetchrow(USE_INVITE, code)
        return None if record is None else InviteUse(**dict(record.items()))

    async def grant_roles(self, code: str, user_id: UUID) -> list[UUID]:
        """Give the user the invite's roles; returns those newly given."""
        return [row["role_id"] for row in await self._conn.fetch(GRANT_INVITE_ROLES, code, user_id)]

    async def role_ranks(self, role_ids: list[UUID]) -> list[RoleRank]:
        """Position and permissions of each existing role among `role_ids`."""
        records = await self._conn.fetch(SELECT_ROLE_POSITIONS, role_ids)
        return [RoleRank(**dict(r.items())) for r in records]

    async def highest_position(self, user_id: UUID) -> int:
        """The position of the user's highest assigned role (0 with the default role only)."""
        return int(await self._conn.fetchval(SELECT_HIGHEST_POSITION, user_id))
