"""Roles and their assignment to users."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from voicechat.db.pool import Connection
from voicechat.db.repositories.rows import found
from voicechat.error_codes import ErrorCode
from voicechat.errors import BadRequest, Conflict, NotFound

_COLUMNS = "id, name, color, permissions, position, is_default"
SELECT_ROLES = f"SELECT {_COLUMNS} FROM roles ORDER BY position DESC, name"  # noqa: S608
SELECT_ROLE = f"SELECT {_COLUMNS} FROM roles WHERE id = $1"  # noqa: S608
INSERT_ROLE = f"""
INSERT INTO roles (name, color, permissions, position) VALUES ($1, $2, $3, $4)
RETURNING {_COLUMNS}
"""  # noqa: S608
UPDATE_ROLE = f"""
UPDATE roles SET
    name = COALESCE($2, name),
    color = COALESCE($3, color),
    permissions = COALESCE($4, permissions),
    position = COALESCE($5, position)
WHERE id = $1
RETURNING {_COLUMNS}
"""  # noqa: S608
DELETE_ROLE = "DELETE FROM roles WHERE id = $1 AND NOT is_default"
ASSIGN = "INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
UNASSIGN = "DELETE FROM user_roles WHERE user_id = $1 AND role_id = $2"


@dataclass(frozen=True, slots=True)
class Role:
    """A row of `roles`."""

    id: UUID
    name: str
    color: int
    permissions: list[str]
    position: int
    is_default: bool

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Role:
        """Build from a row selected with the repository's columns."""
        return cls(**dict(record.items()))


class RoleRepository:
    """SQL for `roles` and `user_roles`."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def all(self) -> list[Role]:
        """All roles, highest position first."""
        return [Role.from_record(r) for r in await self._conn.fetch(SELECT_ROLES)]

    async def get(self, role_id: UUID) -> Role:
        """One role.

        Raises:
            NotFound: no such role.
        """
        record = found(
            await self._conn.fetchrow(SELECT_ROLE, role_id), "role", ErrorCode.ROLE_NOT_FOUND
        )
        return Role.from_record(record)

    async def create(self, name: str, color: int, permissions: list[str], position: int) -> Role:
        """Insert a role.

        Raises:
            Conflict: a role of that name exists.
        """
        try:
            record = await self._conn.fetchrow(INSERT_ROLE, name, color, permissions, position)
        except asyncpg.UniqueViolationError:
            raise Conflict("a role of that name exists", code=ErrorCode.ROLE_NAME_TAKEN) from None
        assert record is not None
        return Role.from_record(record)

    async def update(self, role_id: UUID, changes: dict[str, Any]) -> Role:
        """Apply the given fields."""
        try:
            record = await self._conn.fetchrow(
                UPDATE_ROLE,
                role_id,
                changes.get("name"),
                changes.get("color"),
                changes.get("permissions"),
                changes.get("position"),
            )
        except asyncpg.UniqueViolationError:
            raise Conflict("a role of that name exists", code=ErrorCode.ROLE_NAME_TAKEN) from None
        return Role.from_record(found(record, "role", ErrorCode.ROLE_NOT_FOUND))

    async def delete(self, role_id: UUID) -> None:
        """Delete a role; the default role cannot be deleted.

        Raises:
            BadRequest: it is the default role.
            NotFound: no such role.
        """
        role = await self.get(role_id)
        if role.is_default:
            raise BadRequest("the default role cannot be deleted", code=ErrorCode.DEFAULT_ROLE)
        await self._conn.execute(DELETE_ROLE, role_id)

    async def assign(self, user_id: UUID, role_id: UUID) -> None:
        """Give a user a role.

        Raises:
            NotFound: no such user or role.
        """
        try:
            await self._conn.execute(ASSIGN, user_id, role_id)
        except asyncpg.ForeignKeyViolationError:
            raise NotFound("no such user or role", code=ErrorCode.NOT_FOUND) from None

    async def unassign(self, user_id: UUID, role_id: UUID) -> bool:
        """Take a role away; False if the user did not hold it."""
        return await self._conn.execute(UNASSIGN, user_id, role_id) == "DELETE 1"
