"""`/users/*`: one's own profile and others' public profiles."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import Field

from voicechat.api.deps import CurrentUser, Db
from voicechat.api.openapi import errors
from voicechat.api.schemas import Body, OwnProfile, Status, UserProfile
from voicechat.db.repositories import UserRepository
from voicechat.errors import ValidationFailed
from voicechat.storage import avatar_url

router = APIRouter(prefix="/users", tags=["users"])


class ProfileUpdate(Body):
    """Fields to change; absent fields stay, `null` clears a clearable one."""

    display_name: str | None = Field(None, min_length=1, max_length=64)
    status: Status | None = None
    email: str | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    avatar: UUID | None = Field(
        None, description="Id of an image you uploaded without a channel; null clears."
    )


@router.get("", response_model=list[UserProfile])
async def list_users(
    _caller: CurrentUser,
    db: Db,
    after: Annotated[
        str, Query(max_length=32, description="Return users whose username sorts after this.")
    ] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> list[UserProfile]:
    """The server's members (to signed-in users) with their presence, by username; page on with
    `after` set to the last username until fewer than `limit` come back."""
    users = await UserRepository(db).page(after=after, limit=limit)
    return [UserProfile.of(user) for user in users]


@router.get("/@me", response_model=OwnProfile)
async def me(caller: CurrentUser, db: Db) -> OwnProfile:
    """The caller's own profile, with email, roles and MFA state."""
    users = UserRepository(db)
    return OwnProfile.own(await users.get(caller.user_id), await users.role_names(caller.user_id))


@router.patch("/@me", response_model=OwnProfile, responses=errors(403, 404))
async def update_me(body: ProfileUpdate, caller: CurrentUser, db: Db) -> OwnProfile:
    """Change display name, status, email or avatar."""
    changes = body.model_dump(exclude_unset=True)
    if "status" in changes and changes["status"] is None:
        raise ValidationFailed("status: cannot be null")
    if "avatar" in changes:
        avatar = changes.pop("avatar")
        changes["avatar_url"] = (
            None if avatar is None else await avatar_url(db, caller.user_id, avatar)
        )
    users = UserRepository(db)
    user = await users.update_profile(caller.user_id, changes)
    return OwnProfile.own(user, await users.role_names(caller.user_id))


@router.get("/{user_id}", response_model=UserProfile)
async def get_user(user_id: UUID, _caller: CurrentUser, db: Db) -> UserProfile:
    """Anyone's public profile (to signed-in users)."""
    return UserProfile.of(await UserRepository(db).get(user_id))
