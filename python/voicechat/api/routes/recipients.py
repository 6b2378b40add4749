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
from voicechat.api.openapi import errors
from voicechat.chat.permissions import Permission, require
from voicechat.db.repositories.access import key_recipients
from voicechat.error_codes import ErrorCode
from voicechat.errors import BadRequest

router = APIRouter(tags=["e2ee"])


class Recipients(BaseModel):
    user_ids: list[UUID]


@router.get(
    "/channels/{channel_id}/recipients", response_model=Recipients, responses=errors(400, 403)
)
async def recipients(channel_id: UUID, caller: CurrentUser, db: Db) -> Recipients:
    """The users whose devices get the keys of an encrypted channel or DM.

    Raises 400 `not_encrypted` for a plain channel.
    """
    access = await require(db, caller.user_id, channel_id, Permission.VIEW_CHANNEL)
    channel = access.channel
    if not channel.encrypted:
        raise BadRequest("this channel is not end-to-end encrypted", code=ErrorCode.NOT_ENCRYPTED)
    return Recipients(user_ids=await key_recipients(db, channel))
