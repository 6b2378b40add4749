"""`GET /channels/{id}/recipients`: who must receive an encrypted channel's keys.

For DMs and private channels these are the members. A non-member administrator may open a
private channel but is not a recipient: the ciphertext is theirs to see, the keys are not. For
a public encrypted channel they are everyone who may see it, which `/channels/{id}/members`
does not list. Clients still verify every device's keys themselves; this list only says whom
to encrypt for, and a server that lies here can at most add users the application is then
told about (new devices are reported) or leave some out (who then cannot read).
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel

from voicechat.api.deps import CurrentUser, Db
from voicechat.chat.permissions import SELECT_BASE_PERMISSIONS, Permission, require
from voicechat.error_codes import ErrorCode
from voicechat.errors import BadRequest

router = APIRouter(tags=["e2ee"])

SELECT_MEMBER_RECIPIENTS = """
SELECT cm.user_id FROM channel_members cm JOIN users u ON u.id = cm.user_id
WHERE cm.channel_id = $1 AND u.deleted_at IS NULL
ORDER BY cm.user_id
"""
# Everyone whose permissions on a public channel include viewing it: the same rule as
# `effective_permissions` (base roles, or the per-channel role; administrator implies all).
SELECT_PUBLIC_RECIPIENTS = f"""
SELECT u.id AS user_id
FROM users u
LEFT JOIN channel_members cm ON cm.channel_id = $1 AND cm.user_id = u.id
LEFT JOIN roles cr ON cr.id = cm.role_id
CROSS JOIN LATERAL ({SELECT_BASE_PERMISSIONS.replace("$1", "u.id")}) AS base
WHERE u.deleted_at IS NULL AND (
    base.permissions && ARRAY['view_channel', 'administrator']
    OR COALESCE(cr.permissions ?| ARRAY['view_channel', 'administrator'], false)
)
ORDER BY u.id
"""  # noqa: S608 (constant fragments, no user input)


class Recipients(BaseModel):
    user_ids: list[UUID]


@router.get("/channels/{channel_id}/recipients", response_model=Recipients)
async def recipients(channel_id: UUID, caller: CurrentUser, db: Db) -> Recipients:
    """The users whose devices get the keys of an encrypted channel or DM.

    Raises 400 `not_encrypted` for a plain channel.
    """
    access = await require(db, caller.user_id, channel_id, Permission.VIEW_CHANNEL)
    channel = access.channel
    if not channel.encrypted:
        raise BadRequest("this channel is not end-to-end encrypted", code=ErrorCode.NOT_ENCRYPTED)
    query = (
        SELECT_MEMBER_RECIPIENTS
        if channel.private or channel.type == "dm"
        else SELECT_PUBLIC_RECIPIENTS
    )
    return Recipients(user_ids=[r["user_id"] for r in await db.fetch(query, channel_id)])
