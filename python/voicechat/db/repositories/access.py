"""Who may see and do what on a channel, as the `channel_permissions` SQL function decides.

The rule itself lives once, in migration `0003_channel_access.sql`; every query here calls it
(or `user_base_permissions`). `voicechat.chat.permissions` is the Python face of these queries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from voicechat.db.pool import Connection
from voicechat.db.repositories.channels import CHANNEL_COLUMNS, Channel

SELECT_BASE_PERMISSIONS = "SELECT user_base_permissions($1)"

SELECT_CHANNEL_ACCESS = f"""
SELECT {CHANNEL_COLUMNS}, a.permissions,
    EXISTS (SELECT 1 FROM channel_members cm WHERE cm.channel_id = c.id AND cm.user_id = $2)
        AS is_member,
    (SELECT u.communication_disabled_until FROM users u
     WHERE u.id = $2 AND u.communication_disabled_until > now()) AS timed_out_until
FROM channels c
CROSS JOIN LATERAL (SELECT channel_permissions(c.id, $2) AS permissions) AS a
WHERE c.id = $1 AND a.permissions IS NOT NULL
"""  # noqa: S608 (constant fragments, no user input)

# The channels a user can see, in sidebar order.
SELECT_VISIBLE_CHANNELS = f"""
SELECT {CHANNEL_COLUMNS}
FROM channels c
WHERE channel_permissions(c.id, $1) IS NOT NULL
ORDER BY c.type = 'dm', c.position, c.created_at, c.id
"""  # noqa: S608

SELECT_CHANNEL_AUDIENCE = """
SELECT u.id FROM unnest($2::uuid[]) AS u(id) WHERE channel_permissions($1, u.id) IS NOT NULL
"""

SELECT_MEMBER_RECIPIENTS = """
SELECT cm.user_id FROM channel_members cm JOIN users u ON u.id = cm.user_id
WHERE cm.channel_id = $1 AND u.deleted_at IS NULL
ORDER BY cm.user_id
"""
SELECT_VIEWER_RECIPIENTS = """
SELECT u.id FROM users u
WHERE u.deleted_at IS NULL AND channel_permissions($1, u.id) IS NOT NULL
ORDER BY u.id
"""


@dataclass(frozen=True, slots=True)
class ChannelAccess:
    """A channel together with what one user may do on it."""

    channel: Channel
    permissions: frozenset[str]
    is_member: bool
    #: When the user's timeout ends, while one runs (docs/moderation.md "Timeouts"): they
    #: may read, not send, react, type or speak. `chat.moderation.ensure_can_communicate`.
    timed_out_until: datetime | None = None

    def allows(self, permission: str) -> bool:
        """Whether the user holds `permission` here."""
        return permission in self.permissions


async def base_permissions(conn: Connection, user_id: UUID) -> frozenset[str]:
    """The user's permissions outside any channel (default role plus assigned roles)."""
    return frozenset(await conn.fetchval(SELECT_BASE_PERMISSIONS, user_id) or ())


async def channel_permissions(
    conn: Connection, channel_id: UUID, user_id: UUID
) -> frozenset[str] | None:
    """The user's permissions on the channel; None if it is missing or invisible to them."""
    value = await conn.fetchval("SELECT channel_permissions($1, $2)", channel_id, user_id)
    return None if value is None else frozenset(value)


async def channel_access(conn: Connection, user_id: UUID, channel_id: UUID) -> ChannelAccess | None:
    """The channel and the user's permissions on it; None if missing or invisible to them."""
    record = await conn.fetchrow(SELECT_CHANNEL_ACCESS, channel_id, user_id)
    if record is None:
        return None
    return ChannelAccess(
        Channel.from_record(record),
        frozenset(record["permissions"]),
        record["is_member"],
        record["timed_out_until"],
    )


async def visible_channels(conn: Connection, user_id: UUID) -> list[Channel]:
    """Every channel the user may see, DMs last, in sidebar order."""
    return [Channel.from_record(row) for row in await conn.fetch(SELECT_VISIBLE_CHANNELS, user_id)]


async def users_who_see(conn: Connection, channel_id: UUID, user_ids: Iterable[UUID]) -> set[UUID]:
    """The subset of `user_ids` that may see the channel (none if it does not exist)."""
    rows = await conn.fetch(SELECT_CHANNEL_AUDIENCE, channel_id, list(user_ids))
    return {row["id"] for row in rows}


async def key_recipients(conn: Connection, channel: Channel) -> list[UUID]:
    """Whose devices get an encrypted channel's keys, in id order.

    For DMs and private channels these are the (live) members: a non-member administrator may
    open a private channel but is not a recipient. For a public channel, every live user who
    may see it.
    """
    if channel.private or channel.type == "dm":
        rows = await conn.fetch(SELECT_MEMBER_RECIPIENTS, channel.id)
        return [row["user_id"] for row in rows]
    return [row["id"] for row in await conn.fetch(SELECT_VIEWER_RECIPIENTS, channel.id)]
