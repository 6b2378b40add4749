"""Who may do what on which channel. Every read and write of chat data goes through here.

A user's permissions are the union of the default role's and their assigned roles'. On a channel,
a member's per-channel role (`channel_members.role_id`) adds to them. `administrator` grants
everything on every channel except DMs, which only their members ever see. A private channel is
visible to its members (and administrators); a public one to everyone with `view_channel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from voicechat.db.pool import Connection
from voicechat.error_codes import ErrorCode
from voicechat.errors import Forbidden, NotFound


class Permission(StrEnum):
    """SPEC §3's permission names, as stored in a role's JSONB array."""

    VIEW_CHANNEL = "view_channel"
    SEND_MESSAGES = "send_messages"
    MANAGE_MESSAGES = "manage_messages"
    MANAGE_CHANNELS = "manage_channels"
    MANAGE_ROLES = "manage_roles"
    UPLOAD_FILES = "upload_files"
    VOICE_CONNECT = "voice_connect"
    VOICE_SPEAK = "voice_speak"
    MUTE_MEMBERS = "mute_members"
    MOVE_MEMBERS = "move_members"
    KICK_MEMBERS = "kick_members"
    ADMINISTRATOR = "administrator"


ALL_PERMISSIONS = frozenset(Permission)
# What every member of a DM may do in it, whatever their roles.
DM_PERMISSIONS = frozenset(
    {
        Permission.VIEW_CHANNEL,
        Permission.SEND_MESSAGES,
        Permission.UPLOAD_FILES,
        Permission.VOICE_CONNECT,
        Permission.VOICE_SPEAK,
    }
)

CHANNEL_COLUMNS = """c.id, c.name, c.type, c.category_id, c.position, c.topic, c.user_limit,
    c.private, c.encrypted, c.created_by, c.created_at, c.updated_at"""

SELECT_BASE_PERMISSIONS = """
SELECT COALESCE(array_agg(DISTINCT p.name), '{}') AS permissions
FROM roles r
CROSS JOIN LATERAL jsonb_array_elements_text(r.permissions) AS p(name)
WHERE r.is_default OR r.id IN (SELECT role_id FROM user_roles WHERE user_id = $1)
"""

SELECT_CHANNEL_ACCESS = f"""
SELECT {CHANNEL_COLUMNS},
    (cm.user_id IS NOT NULL) AS is_member,
    COALESCE(
        (SELECT array_agg(p.name) FROM jsonb_array_elements_text(cr.permissions) AS p(name)),
        '{{}}'
    ) AS member_role_permissions,
    ({SELECT_BASE_PERMISSIONS.replace("$1", "$2")}) AS base_permissions
FROM channels c
LEFT JOIN channel_members cm ON cm.channel_id = c.id AND cm.user_id = $2
LEFT JOIN roles cr ON cr.id = cm.role_id
WHERE c.id = $1
"""  # noqa: S608 (constant fragments, no user input)

# The channels a user can see, in sidebar order. $2: the user's base permissions.
SELECT_VISIBLE_CHANNELS = f"""
SELECT {CHANNEL_COLUMNS}
FROM channels c
LEFT JOIN channel_members cm ON cm.channel_id = c.id AND cm.user_id = $1
LEFT JOIN roles cr ON cr.id = cm.role_id
WHERE CASE
    WHEN c.type = 'dm' THEN cm.user_id IS NOT NULL
    WHEN 'administrator' = ANY($2::text[]) THEN true
    WHEN c.private AND cm.user_id IS NULL THEN false
    ELSE 'view_channel' = ANY($2::text[]) OR COALESCE(cr.permissions ? 'view_channel', false)
END
ORDER BY c.type = 'dm', c.position, c.created_at, c.id
"""  # noqa: S608


@dataclass(frozen=True, slots=True)
class Channel:
    """A row of `channels`."""

    id: UUID
    name: str
    type: str
    category_id: UUID | None
    position: int
    topic: str | None
    user_limit: int | None
    private: bool
    encrypted: bool
    created_by: UUID | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, record: Any) -> Channel:
        """Build from a row selected with `CHANNEL_COLUMNS`."""
        return cls(**{field: record[field] for field in cls.__slots__})


@dataclass(frozen=True, slots=True)
class ChannelAccess:
    """A channel together with what one user may do on it."""

    channel: Channel
    permissions: frozenset[str]
    is_member: bool

    def allows(self, permission: Permission) -> bool:
        """Whether the user holds `permission` here."""
        return permission in self.permissions


def effective_permissions(
    channel_type: str,
    private: bool,
    is_member: bool,
    base: frozenset[str],
    member_role: frozenset[str],
) -> frozenset[str] | None:
    """The permissions a user holds on a channel, or None when it is invisible to them."""
    if channel_type == "dm":
        return DM_PERMISSIONS if is_member else None
    if Permission.ADMINISTRATOR in base:
        return ALL_PERMISSIONS
    if private and not is_member:
        return None
    granted = base | member_role
    if Permission.ADMINISTRATOR in granted:
        return ALL_PERMISSIONS
    return granted if Permission.VIEW_CHANNEL in granted else None


async def base_permissions(conn: Connection, user_id: UUID) -> frozenset[str]:
    """The user's permissions outside any channel (default role plus assigned roles)."""
    value = await conn.fetchval(SELECT_BASE_PERMISSIONS, user_id)
    granted = frozenset(value or ())
    return ALL_PERMISSIONS if Permission.ADMINISTRATOR in granted else granted


async def channel_access(conn: Connection, user_id: UUID, channel_id: UUID) -> ChannelAccess | None:
    """The channel and the user's permissions on it; None if missing or invisible to them."""
    record = await conn.fetchrow(SELECT_CHANNEL_ACCESS, channel_id, user_id)
    if record is None:
        return None
    permissions = effective_permissions(
        record["type"],
        record["private"],
        record["is_member"],
        frozenset(record["base_permissions"]),
        frozenset(record["member_role_permissions"]),
    )
    if permissions is None:
        return None
    return ChannelAccess(Channel.from_record(record), permissions, record["is_member"])


async def require(
    conn: Connection, user_id: UUID, channel_id: UUID, *needed: Permission
) -> ChannelAccess:
    """The user's access to a channel, insisting on `needed` (and always on seeing it).

    Raises:
        NotFound: the channel does not exist or the user may not see it (indistinguishable).
        Forbidden: the user sees the channel but lacks one of `needed`.
    """
    access = await channel_access(conn, user_id, channel_id)
    if access is None:
        raise NotFound("no such channel", code=ErrorCode.CHANNEL_NOT_FOUND)
    missing = [p for p in needed if p not in access.permissions]
    if missing:
        raise Forbidden(
            f"you need the {missing[0].value} permission here", code=ErrorCode.MISSING_PERMISSION
        )
    return access


async def require_global(conn: Connection, user_id: UUID, permission: Permission) -> frozenset[str]:
    """Insist on a server-wide permission (creating channels, managing roles).

    Raises:
        Forbidden: the user lacks it.
    """
    granted = await base_permissions(conn, user_id)
    if permission not in granted:
        raise Forbidden(
            f"you need the {permission.value} permission", code=ErrorCode.MISSING_PERMISSION
        )
    return granted


async def visible_channels(conn: Connection, user_id: UUID) -> list[Channel]:
    """Every channel the user may see, DMs last, in sidebar order."""
    base = await base_permissions(conn, user_id)
    rows = await conn.fetch(SELECT_VISIBLE_CHANNELS, user_id, list(base))
    return [Channel.from_record(row) for row in rows]
