"""Request and response bodies shared by several routes; the user profile is built here only."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
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


DELETED_AUTHOR = UserProfile(
    id=None, username="deleted-user", display_name="Deleted user", avatar_url=None, status="offline"
)


def author_profile(record: Any) -> UserProfile:
    """The author of a message row, or the placeholder when the account is gone.

    The one place a message's author is built, for REST pages and gateway events alike.
    """
    if record["user_id"] is None or record["author_deleted_at"] is not None:
        return DELETED_AUTHOR
    return UserProfile(
        id=record["user_id"],
        username=record["author_username"],
        display_name=record["author_display_name"],
        avatar_url=record["author_avatar_url"],
        status=record["author_status"],
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


class Message(BaseModel):
    """A message as clients see it."""

    id: UUID
    channel_id: UUID
    author: UserProfile
    content: str | None
    encrypted: EncryptedBody | None
    nonce: str | None
    reply_to: UUID | None
    attachments: list[Attachment]
    edited_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, record: Any) -> Message:
        """Serialise a row selected by the message repository."""
        return cls(
            id=record["id"],
            channel_id=record["channel_id"],
            author=author_profile(record),
            content=record["content"],
            encrypted=EncryptedBody(**record["content_enc"]) if record["content_enc"] else None,
            nonce=record["nonce"],
            reply_to=record["reply_to"],
            attachments=[Attachment(**a, url=f"/files/{a['id']}") for a in record["attachments"]],
            edited_at=record["edited_at"],
            created_at=record["created_at"],
        )


class ChannelOut(BaseModel):
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
    def of(cls, channel: Any, members: list[Any] | None = None) -> ChannelOut:
        """Serialise a channel (and, for DMs, its members' profiles)."""
        return cls(
            id=channel.id,
            name=channel.name,
            type=channel.type,
            category_id=channel.category_id,
            position=channel.position,
            topic=channel.topic,
            user_limit=channel.user_limit,
            private=channel.private,
            encrypted=channel.encrypted,
            created_at=channel.created_at,
            members=None
            if members is None
            else [
                UserProfile(
                    id=m["id"],
                    username=m["username"],
                    display_name=m["display_name"],
                    avatar_url=m["avatar_url"],
                    status=m["status"],
                )
                for m in members
            ],
        )
