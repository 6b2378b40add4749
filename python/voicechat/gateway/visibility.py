"""Which of many users may see one channel, in one query.

The gateway asks this when an event arrives for a channel that some connected users have no
cached answer for. The decision is the `channel_permissions` SQL function every REST read goes
through (via `voicechat.db.repositories.access`); only the fetching is batched.
"""

from __future__ import annotations

from uuid import UUID

from voicechat.db.pool import Connection
from voicechat.db.repositories.access import users_who_see, visible_channels

__all__ = ["channels_visible_to", "users_who_see"]


async def channels_visible_to(conn: Connection, user_id: UUID) -> set[UUID]:
    """Ids of every channel the user may see."""
    return {channel.id for channel in await visible_channels(conn, user_id)}
