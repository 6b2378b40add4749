"""`/admin/users`: accounts as administrators see and change them (SPEC §3; docs/accounts.md
"Administration (admin CLI)", whose `voicechat admin users` runs the same functions)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel

from voicechat.api.deps import ClientInfo, CurrentUser, Db, Res
from voicechat.api.openapi import errors
from voicechat.api.schemas import Body, FromRow
from voicechat.auth.administration import Actor, update_user
from voicechat.chat.permissions import Permission, require_global
from voicechat.db.repositories.admin_users import AdminUserRepository

router = APIRouter(prefix="/admin", tags=["admin"])


class AdminUserOut(FromRow):
    """An account as administrators see it."""

    id: UUID
    username: str
    display_name: str | None
    email: str | None
    auth_method: str
    bot: bool
    bot_owner_id: UUID | None
    disabled: bool
    administrator: bool
    mfa_enabled: bool
    created_at: datetime


class AdminUserUpdate(Body):
    disabled: bool | None = None
    administrator: bool | None = None


class AdminUserPage(BaseModel):
    users: list[AdminUserOut]
    #: Pass as `after` for the next page; null on the last one.
    next: str | None


@router.get("/users", response_model=AdminUserPage, responses=errors(403))
async def list_users(
    caller: CurrentUser,
    db: Db,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="Part of a username, display name or email (any case).",
        ),
    ] = None,
    after: Annotated[
        str, Query(max_length=32, description="Return users whose username sorts after this.")
    ] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AdminUserPage:
    """Every account, by username, keyset-paged (administrators)."""
    await require_global(db, caller.user_id, Permission.ADMINISTRATOR)
    page = await AdminUserRepository(db).page(q=q, after=after, limit=limit)
    return AdminUserPage(
        users=[AdminUserOut.of(user) for user in page],
        next=page[-1].username if len(page) == limit else None,
    )


@router.patch("/users/{user_id}", response_model=AdminUserOut, responses=errors(403, 404, 409))
async def patch_user(
    user_id: UUID,
    body: AdminUserUpdate,
    caller: CurrentUser,
    client: ClientInfo,
    db: Db,
    resources: Res,
) -> AdminUserOut:
    """Disable or enable, promote or demote an account (administrators). Disabling ends its
    sessions, sockets and bot tokens at once; the last administrator stays one."""
    await require_global(db, caller.user_id, Permission.ADMINISTRATOR)
    updated = await update_user(
        db,
        resources.cache,
        user_id,
        actor=Actor(caller.user_id, client.ip or None, client.user_agent),
        disabled=body.disabled,
        administrator=body.administrator,
        live=resources.auth.live,
    )
    return AdminUserOut.of(updated)
