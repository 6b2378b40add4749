"""Who may do what on which channel. Every read and write of chat data goes through here.

The rule is defined once, in SQL (`channel_permissions` in migration `0003_channel_access.sql`):
a user's permissions are the union of the default role's and their assigned roles'; on a
channel, a member's per-channel role adds to them; `administrator` grants everything on every
channel except DMs, which only their members ever see; a private channel is visible to its
members (and administrators), a public one to everyone with `view_channel`. This module names
the permissions and turns "not visible" and "not allowed" into errors; the queries are in
`voicechat.db.repositories.access`.
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from voicechat.db.pool import Connection
from voicechat.db.repositories.access import (
    ChannelAccess,
    base_permissions,
    channel_access,
    visible_channels,
)
from voicechat.db.repositories.channels import Channel
from voicechat.db.repositories.rows import found
from voicechat.error_codes import ErrorCode
from voicechat.errors import Forbidden


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
    # Moderation and administration (SPEC §3), server-wide rather than per channel.
    BAN_MEMBERS = "ban_members"
    MODERATE_MEMBERS = "moderate_members"
    CREATE_INVITES = "create_invites"
    MANAGE_SERVER = "manage_server"
    VIEW_AUDIT_LOG = "view_audit_log"
    MANAGE_BOTS = "manage_bots"
    MENTION_EVERYONE = "mention_everyone"


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

__all__ = [
    "ALL_PERMISSIONS",
    "DM_PERMISSIONS",
    "Channel",
    "ChannelAccess",
    "Permission",
    "base_permissions",
    "channel_access",
    "require",
    "require_global",
    "visible_channels",
]


async def require(
    conn: Connection, user_id: UUID, channel_id: UUID, *needed: Permission
) -> ChannelAccess:
    """The user's access to a channel, insisting on `needed` (and always on seeing it).

    Raises:
        NotFound: the channel does not exist or the user may not see it (indistinguishable).
        Forbidden: the user sees the channel but lacks one of `needed`.
    """
    access = found(
        await channel_access(conn, user_id, channel_id), "channel", ErrorCode.CHANNEL_NOT_FOUND
    )
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
