"""Request and response bodies shared by several routes; the user profile is built here only."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from voicechat.db.repositories import User

USERNAME_PATTERN = r"^[a-z0-9_.-]{3,32}$"
Status = Literal["online", "idle", "dnd", "offline"]


class Body(BaseModel):
    """Base of request bodies: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class UserProfile(BaseModel):
    """What anyone who can see a user sees (SPEC §3 message author shape)."""

    id: UUID | None
    username: str
    display_name: str | None
    avatar_url: str | None
    status: Status

    @classmethod
    def of(cls, user: User) -> UserProfile:
        """The public profile of `user`."""
        return cls(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            avatar_url=user.avatar_url,
            status=user.status,
        )


class OwnProfile(UserProfile):
    """What a user sees of themselves."""

    email: str | None
    auth_method: Literal["local", "oidc"]
    mfa_enabled: bool
    roles: list[str]
    created_at: datetime

    @classmethod
    def own(cls, user: User, roles: list[str]) -> OwnProfile:
        """The caller's own profile."""
        return cls(
            **UserProfile.of(user).model_dump(),
            email=user.email,
            auth_method=user.auth_method,
            mfa_enabled=user.mfa_enabled,
            roles=roles,
            created_at=user.created_at,
        )


def fold_username(value: str) -> str:
    """Usernames compare case-insensitively: fold to lower case before the shape check."""
    return value.strip().lower()


class UsernameField(Body):
    """Mixin validating `username` per SPEC §3."""

    username: str = Field(min_length=1, max_length=64)

    @field_validator("username")
    @classmethod
    def _fold(cls, value: str) -> str:
        import re

        folded = fold_username(value)
        if not re.fullmatch(USERNAME_PATTERN, folded):
            raise ValueError("3 to 32 characters of a-z, 0-9, _, . and -")
        return folded
