"""`/roles`, `/users/{id}/roles/{role_id}`: roles and who holds them."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response, status
from pydantic import Field, field_validator

from voicechat.api.deps import ClientInfo, CurrentUser, Db, Res
from voicechat.api.openapi import errors
from voicechat.api.schemas import Body, FromRow
from voicechat.auth.service import Client
from voicechat.chat.permissions import ALL_PERMISSIONS, Permission, require_global
from voicechat.db.repositories import AuditLog
from voicechat.db.repositories.roles import RoleRepository
from voicechat.error_codes import ErrorCode
from voicechat.errors import Forbidden
from voicechat.events import Event

router = APIRouter(tags=["roles"])


def _known(permissions: list[str] | None) -> list[str] | None:
    if permissions is None:
        return None
    unknown = sorted(set(permissions) - ALL_PERMISSIONS)
    if unknown:
        raise ValueError(f"unknown permission {unknown[0]!r}")
    return sorted(set(permissions))


class RoleCreate(Body):
    name: str = Field(min_length=1, max_length=64)
    color: int = Field(0, ge=0, le=0xFFFFFF)
    permissions: list[str] = Field(default_factory=list, max_length=len(ALL_PERMISSIONS))
    position: int = Field(1, ge=1, le=999)

    _perms = field_validator("permissions")(_known)


class RoleUpdate(Body):
    name: str | None = Field(None, min_length=1, max_length=64)
    color: int | None = Field(None, ge=0, le=0xFFFFFF)
    permissions: list[str] | None = Field(None, max_length=len(ALL_PERMISSIONS))
    position: int | None = Field(None, ge=0, le=999)

    _perms = field_validator("permissions")(_known)


class RoleOut(FromRow):
    id: UUID
    name: str
    color: int
    permissions: list[str]
    position: int
    is_default: bool


def _no_escalation(granted: frozenset[str], permissions: list[str]) -> None:
    """Nobody hands out a permission they do not hold themselves."""
    missing = sorted(set(permissions) - granted)
    if missing:
        raise Forbidden(
            f"you cannot grant {missing[0]} without holding it",
            code=ErrorCode.PERMISSION_ESCALATION,
        )


async def _audit(
    db: Db,
    event: str,
    caller: CurrentUser,
    client: Client,
    *,
    target_id: UUID,
    details: dict[str, object],
) -> None:
    await AuditLog(db).record(
        event,
        user_id=caller.user_id,
        target_id=target_id,
        ip_address=client.ip or None,
        user_agent=client.user_agent,
        details=details,
    )


async def _roles_changed(resources: Res) -> None:
    # Visibility may change for anyone: gateways refresh their cached channel sets.
    await resources.events.publish(Event("roles.update", {}, user_ids=()))


async def _grantable_role(db: Db, caller: CurrentUser, role_id: UUID) -> RoleRepository:
    """The roles repository, once the caller may hand out (or take back) this role."""
    granted = await require_global(db, caller.user_id, Permission.MANAGE_ROLES)
    repo = RoleRepository(db)
    _no_escalation(granted, (await repo.get(role_id)).permissions)
    return repo


@router.get("/roles", response_model=list[RoleOut])
async def list_roles(_caller: CurrentUser, db: Db) -> list[RoleOut]:
    """All roles, highest position first."""
    return [RoleOut.of(r) for r in await RoleRepository(db).all()]


@router.post(
    "/roles",
    status_code=status.HTTP_201_CREATED,
    response_model=RoleOut,
    responses=errors(403, 409),
)
async def create_role(body: RoleCreate, caller: CurrentUser, db: Db, client: ClientInfo) -> RoleOut:
    """Create a role (needs `manage_roles`, and every permission it grants)."""
    granted = await require_global(db, caller.user_id, Permission.MANAGE_ROLES)
    _no_escalation(granted, body.permissions)
    async with db.transaction():
        role = await RoleRepository(db).create(
            body.name, body.color, body.permissions, body.position
        )
        await _audit(
            db, "role.create", caller, client, target_id=role.id, details=body.model_dump()
        )
    return RoleOut.of(role)


@router.patch("/roles/{role_id}", response_model=RoleOut, responses=errors(403, 409))
async def update_role(
    role_id: UUID,
    body: RoleUpdate,
    caller: CurrentUser,
    db: Db,
    resources: Res,
    client: ClientInfo,
) -> RoleOut:
    """Edit a role (needs `manage_roles`, and every permission it ends up granting)."""
    granted = await require_global(db, caller.user_id, Permission.MANAGE_ROLES)
    repo = RoleRepository(db)
    current = await repo.get(role_id)
    _no_escalation(granted, current.permissions)
    changes = body.model_dump(exclude_none=True)
    _no_escalation(granted, changes.get("permissions", []))
    async with db.transaction():
        role = await repo.update(role_id, changes)
        await _audit(db, "role.update", caller, client, target_id=role_id, details=changes)
    await _roles_changed(resources)
    return RoleOut.of(role)


@router.delete(
    "/roles/{role_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 403)
)
async def delete_role(
    role_id: UUID, caller: CurrentUser, db: Db, resources: Res, client: ClientInfo
) -> Response:
    """Delete a role (not the default one)."""
    repo = await _grantable_role(db, caller, role_id)
    async with db.transaction():
        name = (await repo.get(role_id)).name
        await repo.delete(role_id)
        await _audit(db, "role.delete", caller, client, target_id=role_id, details={"name": name})
    await _roles_changed(resources)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put(
    "/users/{user_id}/roles/{role_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(403),
)
async def assign_role(
    user_id: UUID,
    role_id: UUID,
    caller: CurrentUser,
    db: Db,
    resources: Res,
    client: ClientInfo,
) -> Response:
    """Give a user a role (needs `manage_roles` and the role's permissions)."""
    repo = await _grantable_role(db, caller, role_id)
    async with db.transaction():
        await repo.assign(user_id, role_id)
        await _audit(
            db, "role.assign", caller, client, target_id=user_id, details={"role_id": str(role_id)}
        )
    await _roles_changed(resources)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/users/{user_id}/roles/{role_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(403),
)
async def unassign_role(
    user_id: UUID,
    role_id: UUID,
    caller: CurrentUser,
    db: Db,
    resources: Res,
    client: ClientInfo,
) -> Response:
    """Take a role from a user (needs `manage_roles` and the role's permissions)."""
    repo = await _grantable_role(db, caller, role_id)
    async with db.transaction():
        if await repo.unassign(user_id, role_id):
            await _audit(
                db,
                "role.unassign",
                caller,
                client,
                target_id=user_id,
                details={"role_id": str(role_id)},
            )
    await _roles_changed(resources)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
