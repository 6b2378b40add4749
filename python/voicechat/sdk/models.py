"""What the SDK returns: small frozen models over the API's JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    # Newer servers may add fields: ignore them rather than break old bots.
    model_config = ConfigDict(frozen=True, extra="ignore")


class User(_Model):
    """A user's public profile."""

    id: UUID | None
    username: str
    display_name: str | None = None
    avatar_url: str | None = None
    status: Literal["online", "idle", "dnd", "offline"] = "offline"
    #: A bot account (docs/accounts.md "Bots").
    bot: bool = False
    #: Until when a moderator timed the user out (they can read, not send); None: not.
    communication_disabled_until: datetime | None = None

    @property
    def name(self) -> str:
        """What to show for this user."""
        return self.display_name or self.username


class Me(User):
    """The logged-in user's own profile."""

    email: str | None = None
    email_verified: bool = False
    mfa_enabled: bool = False
    roles: list[str] = []


class Channel(_Model):
    """A channel, category or DM."""

    id: UUID
    name: str
    type: Literal["text", "voice", "dm", "category"]
    category_id: UUID | None = None
    position: int = 0
    topic: str | None = None
    user_limit: int | None = None
    private: bool = False
    encrypted: bool = False
    members: list[User] | None = None


class VoiceState(_Model):
    """Someone in a voice call."""

    channel_id: UUID
    user_id: UUID
    muted: bool = False


class Attachment(_Model):
    """A file attached to a message."""

    id: UUID
    filename: str
    mime_type: str
    size_bytes: int
    url: str


class Message(_Model):
    """A chat message."""

    id: UUID
    channel_id: UUID
    author: User
    content: str | None
    encrypted: dict[str, Any] | None = None
    # Set (with content None) when an end-to-end encrypted message cannot be decrypted.
    decryption_error: str | None = None
    nonce: str | None = None
    reply_to: UUID | None = None
    attachments: list[Attachment] = []
    edited_at: datetime | None = None
    created_at: datetime


class Role(_Model):
    """A role."""

    id: UUID
    name: str
    color: int
    permissions: list[str]
    position: int
    is_default: bool
