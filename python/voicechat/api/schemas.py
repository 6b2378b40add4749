"""Request and response bodies shared by several routes; the user profile is built here only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from voicechat.db.repositories import User

USERNAME_PATTERN = r"^[a-z0-9_.-]{3,32}$"
Status = Literal["online", "idle", "dnd", "offline"]


class Body(BaseModel):
    """Base of request bodies: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class FromRow(BaseModel):
    """Base of response models read off a repository's frozen dataclass, field by field name."""

    @classmethod
    def of(cls, row: object) -> Self:
        """The response for `row` (any object with an attribute per field)."""
        return cls.model_validate(row, from_attributes=True)


class UserProfile(FromRow):
    """What anyone who can see a user sees (SPEC §3 message author shape)."""

    id: UUID | None
    username: str
    display_name: str | None
    avatar_url: str | None
    status: Status


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


DELETED_AUTHOR = UserProfile(
    id=None, username="deleted-user", display_name="Deleted user", avatar_url=None, status="offline"
)


class EncryptedBody(Body):
    """SPEC §5 ciphertext form; the server stores and relays it without reading it."""

    algorithm: str = Field(min_length=1, max_length=64)
    ciphertext: str = Field(min_length=1, max_length=65536)
    sender_key: str = Field(min_length=1, max_length=128)
    session_id: str = Field(min_length=1, max_length=128)
    device_id: str = Field(min_length=1, max_length=64)


class Attachment(BaseModel):
    """A file attached to a message."""

    id: UUID
    filename: str
    mime_type: str
    size_bytes: int
    url: str


class Message(FromRow):
    """A message as clients see it."""

    id: UUID
    channel_id: UUID
    author: UserProfile
    content: str | None
    encrypted: EncryptedBody | None = Field(validation_alias="content_enc")
    nonce: str | None
    reply_to: UUID | None
    attachments: list[Attachment]
    edited_at: datetime | None
    created_at: datetime

    @field_validator("author", mode="before")
    @classmethod
    def _deleted_author(cls, value: object) -> object:
        # The one place a gone author becomes the placeholder, for REST pages and events alike.
        return DELETED_AUTHOR if value is None else value

    @field_validator("encrypted", mode="before")
    @classmethod
    def _plain_has_no_ciphertext(cls, value: object) -> object:
        return value or None


class ChannelOut(FromRow):
    """A channel as clients see it; DMs list their members."""

    id: UUID
    name: str
    type: Literal["text", "voice", "dm", "category"]
    category_id: UUID | None
    position: int
    topic: str | None
    user_limit: int | None
    private: bool
    encrypted: bool
    created_at: datetime
    members: list[UserProfile] | None = None

    @classmethod
    def of(cls, row: object, members: Sequence[object] | None = None) -> Self:
        """Serialise a channel and, for DMs, its members' profiles."""
        out = cls.model_validate(row, from_attributes=True)
        if members is not None:
            out.members = [UserProfile.of(m) for m in members]
        return out
