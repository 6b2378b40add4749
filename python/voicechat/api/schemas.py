"""Request and response bodies shared by several routes; the user profile is built here only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from types import UnionType
from typing import Annotated, Literal, Self, Union, get_args, get_origin
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from voicechat.db.repositories import User

USERNAME_PATTERN = r"^[a-z0-9_.-]{3,32}$"
Status = Literal["online", "idle", "dnd", "offline"]


class Body(BaseModel):
    """Base of request bodies: unknown fields are refused, not ignored, and a JSON scalar of
    another type than the field's is refused, not converted (`false` is no `0`, `"1"` no `1`,
    `1` no `true`), so a body is taken exactly when the OpenAPI document says it is."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("*", mode="before")
    @classmethod
    def _scalar_as_documented(cls, value: object, info: ValidationInfo) -> object:
        # pydantic's lax mode converts between JSON's scalars; strict mode would also refuse
        # the strings JSON carries UUIDs and times in, so only scalars are held to their type.
        if info.field_name is None or not isinstance(value, bool | int | float | str):
            return value
        kinds = _scalar_kinds(cls.model_fields[info.field_name].annotation)
        if kinds is not None and not _fits(value, kinds):
            raise ValueError(f"must be {' or '.join(sorted(kinds))}")
        return value


_KINDS: dict[type, str] = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def _scalar_kinds(annotation: object) -> set[str] | None:
    """The JSON scalar kinds a field takes, or None when it takes anything else too."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _scalar_kinds(get_args(annotation)[0])
    if origin is Literal:
        return {_KINDS[type(v)] for v in get_args(annotation) if type(v) in _KINDS} or None
    if origin in (Union, UnionType):
        kinds: set[str] = set()
        for arg in get_args(annotation):
            if arg is type(None):
                continue
            arg_kinds = _scalar_kinds(arg)
            if arg_kinds is None:
                return None
            kinds |= arg_kinds
        return kinds
    if isinstance(annotation, type):
        for python_type, kind in _KINDS.items():
            if annotation is python_type or (
                issubclass(annotation, Enum) and issubclass(annotation, python_type)
            ):
                return {kind}
    return None


def _fits(value: bool | int | float | str, kinds: set[str]) -> bool:
    if isinstance(value, bool):
        return "a boolean" in kinds
    if isinstance(value, int):
        return bool({"an integer", "a number"} & kinds)
    if isinstance(value, float):
        return "a number" in kinds or ("an integer" in kinds and value.is_integer())
    return "a string" in kinds


class FromRow(BaseModel):
    """Base of response models read off a repository's frozen dataclass, field by field name."""

    @classmethod
    def of(cls, row: object) -> Self:
        """The response for `row` (any object with an attribute per field)."""
        return cls.model_validate(row, from_attributes=True)


class AuthorProfile(FromRow):
    """A message's author (SPEC §3's shape, the same in every page and event)."""

    id: UUID | None
    username: str
    display_name: str | None
    avatar_url: str | None
    status: Status


class UserProfile(AuthorProfile):
    """What anyone who can see a user sees: the author shape and the account's flags."""

    #: A bot account (docs/accounts.md "Bots"); false where the row does not say.
    bot: bool = False
    #: Until when the user is timed out (docs/moderation.md "Timeouts"): they can read, not
    #: send, react, type or speak. A past time: not timed out. Left out when never set, so a
    #: message's author (which never carries it) keeps its shape.
    communication_disabled_until: datetime | None = Field(None, exclude_if=lambda v: v is None)


class OwnProfile(UserProfile):
    """What a user sees of themselves."""

    email: str | None
    email_verified: bool = False
    auth_method: Literal["local", "oidc", "bot"]
    mfa_enabled: bool
    roles: list[str]
    created_at: datetime

    @classmethod
    def own(cls, user: User, roles: list[str]) -> OwnProfile:
        """The caller's own profile."""
        return cls(
            **UserProfile.of(user).model_dump(),
            email=user.email,
            email_verified=user.email_verified,
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


DELETED_AUTHOR = AuthorProfile(
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
    author: AuthorProfile
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
