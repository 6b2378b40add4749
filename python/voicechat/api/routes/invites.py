"""`/invites`: invites to register with (VOICECHAT_REGISTRATION=invite), and their preview."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel, Field

from voicechat.api.deps import Auth, ClientInfo, CurrentUser, Db, Res
from voicechat.api.openapi import errors
from voicechat.api.schemas import Body
from voicechat.auth import invites
from voicechat.chat.permissions import Permission, base_permissions
from voicechat.db.repositories.invites import Invite, InviteRepository
from voicechat.error_codes import ErrorCode
from voicechat.errors import Forbidden, NotFound

router = APIRouter(prefix="/invites", tags=["invites"])

InviteCode = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class InviteCreate(Body):
    max_uses: int | None = Field(None, ge=1, le=100_000)
    expires_in: int | None = Field(None, ge=60, le=365 * 24 * 3600, description="Seconds.")
    role_ids: list[UUID] = Field(default_factory=list, max_length=20)


class Inviter(BaseModel):
    id: UUID
    username: str
    display_name: str | None


class InviteOut(BaseModel):
    code: str
    inviter: Inviter | None
    max_uses: int | None
    uses: int
    expires_at: datetime | None
    created_at: datetime
    role_ids: list[UUID]
    valid: bool


class InvitePreview(BaseModel):
    valid: bool
    server_name: str
    inviter: Inviter | None


def _inviter(invite: Invite) -> Inviter | None:
    if invite.created_by is None or invite.creator_username is None:
        return None
    return Inviter(
        id=invite.created_by,
        username=invite.creator_username,
        display_name=invite.creator_display_name,
    )


def _out(invite: Invite) -> InviteOut:
    return InviteOut(
        code=invite.code,
        inviter=_inviter(invite),
        max_uses=invite.max_uses,
        uses=invite.uses,
        expires_at=invite.expires_at,
        created_at=invite.created_at,
        role_ids=invite.role_ids,
        valid=invite.usable,
    )


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=InviteOut, responses=errors(403, 404)
)
async def create_invite(
    body: InviteCreate, caller: CurrentUser, db: Db, client: ClientInfo
) -> InviteOut:
    """Make an invite (`create_invites`; roles granted on join need `manage_roles` and must
    sit below the creator's highest role)."""
    granted = await base_permissions(db, caller.user_id)
    if Permission.CREATE_INVITES not in granted:
        raise Forbidden("you need the create_invites permission", code=ErrorCode.MISSING_PERMISSION)
    await invites.check_grantable_roles(db, caller.user_id, body.role_ids)
    invite = await invites.create_invite(
        db,
        created_by=caller.user_id,
        max_uses=body.max_uses,
        expires_in=body.expires_in,
        role_ids=body.role_ids,
        ip_address=client.ip or None,
        user_agent=client.user_agent,
    )
    return _out(invite)


@router.get("", response_model=list[InviteOut], responses=errors(403))
async def list_invites(caller: CurrentUser, db: Db) -> list[InviteOut]:
    """The caller's invites, newest first; everyone's with `manage_server`."""
    granted = await base_permissions(db, caller.user_id)
    if Permission.MANAGE_SERVER in granted:
        return [_out(i) for i in await InviteRepository(db).listing(created_by=None)]
    if Permission.CREATE_INVITES not in granted:
        raise Forbidden("you need the create_invites permission", code=ErrorCode.MISSING_PERMISSION)
    return [_out(i) for i in await InviteRepository(db).listing(created_by=caller.user_id)]


@router.delete("/{code}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def revoke_invite(
    code: InviteCode, caller: CurrentUser, db: Db, client: ClientInfo
) -> Response:
    """Revoke one's own invite; anyone's with `manage_server` (404 for others' without it)."""
    invite = await InviteRepository(db).get(code)
    if invite is None or (
        invite.created_by != caller.user_id
        and Permission.MANAGE_SERVER not in await base_permissions(db, caller.user_id)
    ):
        raise NotFound("no such invite", code=ErrorCode.INVITE_NOT_FOUND)
    await invites.revoke_invite(
        db,
        code,
        actor_id=caller.user_id,
        ip_address=client.ip or None,
        user_agent=client.user_agent,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{code}", response_model=InvitePreview, responses=errors(429))
async def preview_invite(
    code: InviteCode, db: Db, auth: Auth, client: ClientInfo, resources: Res
) -> InvitePreview:
    """Whether an invite would let someone register now, without logging in.

    Limited per IP (`VOICECHAT_RATE_LIMIT_INVITE_IP`) against guessing codes; an unknown,
    revoked, expired and used-up invite all answer `valid: false`.
    """
    settings = resources.settings
    await auth.limits.hit(settings.rate_limit_invite_ip, "invite-ip", client.ip)
    invite = await InviteRepository(db).get(code)
    valid = invite is not None and invite.usable and settings.registration != "closed"
    return InvitePreview(
        valid=valid,
        server_name=settings.server_name,
        inviter=_inviter(invite) if valid and invite is not None else None,
    )
