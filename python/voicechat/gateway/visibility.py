"""Which of many users may see one channel, in one query.

The gateway asks this when an event arrives for a channel that some connected users have no
cached answer for. The decision itself is `chat.permissions.effective_permissions`, the same
function every REST read goes through; only the fetching is batched.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from voicechat.chat.permissions import effective_permissions, visible_channels
from voicechat.db.pool import Connection

SELECT_CHANNEL_AUDIENCE = """
SELECT u.id AS user_id, c.type, c.private,
    (cm.user_id IS NOT NULL) AS is_member,
    COALESCE(
        (SELECT array_agg(p.name) FROM jsonb_array_elements_text(cr.permissions) AS p(name)),
        '{}'
    ) AS member_role_permissions,
    (SELECT COALESCE(array_agg(DISTINCT p.name), '{}')
     FROM roles r CROSS JOIN LATERAL jsonb_array_elements_text(r.permissions) AS p(name)
     WHERE r.is_default OR r.id IN (SELECT role_id FROM user_roles WHERE user_id = u.id)
    ) AS base_permissions
FROM unnest($2::uuid[]) AS u(id)
JOIN channels c ON c.id = $1
LEFT JOIN channel_members cm ON cm.channel_id = c.id AND cm.user_id = u.id
LEFT JOIN roles cr ON cr.id = cm.role_id
"""


async def users_who_see(conn: Connection, channel_id: UUID, user_ids: Iterable[UUID]) -> set[UUID]:
    """The subset of `user_ids` that may see the channel (none if it does not exist)."""
    rows = await conn.fetch(SELECT_CHANNEL_AUDIENCE, channel_id, list(user_ids))
    return {
        row["user_id"]
        for row in rows
        if effective_permissions(
            row["type"],
            row["private"],
            row["is_member"],
            frozenset(row["base_permissions"]),
            frozenset(row["member_role_permissions"]),
        )
        is not None
    }


async def channels_visible_to(conn: Connection, user_id: UUID) -> set[UUID]:
    """Ids of every channel the user may see."""
    return {channel.id for channel in await visible_channels(conn, user_id)}
