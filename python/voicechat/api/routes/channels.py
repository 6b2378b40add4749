"""`/channels`, `/dms`: channels, categories, private membership and direct messages."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Response, status
from pydantic import Field, field_validator, model_validator

from voicechat.api.deps import ClientInfo, CurrentUser, Db, Res
from voicechat.api.openapi import errors
from voicechat.api.schemas import Body, ChannelOut, UserProfile
from voicechat.chat.permissions import (
    Channel,
    Permission,
    require,
    require_global,
    visible_channels,
)
from voicechat.db.repositories import AuditLog
from voicechat.db.repositories.channels import ChannelRepository
from voicechat.db.repositories.files import FileRepository
from voicechat.error_codes import ErrorCode
from voicechat.errors import BadRequest, NotFound
from voicechat.events import Event

router = APIRouter(tags=["channels"])

MAX_DM_MEMBERS = 10


def _clean_name(value: str) -> str:
    name = " ".join(value.split())
    if not name:
        raise ValueError("must not be blank")
    return name


class ChannelCreate(Body):
    name: str = Field(min_length=1, max_length=100)
    type: Literal["text", "voice", "category"]
    category_id: UUID | None = None
    topic: str | None = Field(None, max_length=1024)
    position: int = Field(0, ge=0, le=100_000)
    user_limit: int | None = Field(None, ge=1, le=100)
    private: bool = False
    encrypted: bool = False

    _name = field_validator("name")(_clean_name)

    @model_validator(mode="after")
    def _fits_type(self) -> ChannelCreate:
        if self.type == "category" and (self.category_id or self.encrypted or self.topic):
            raise ValueError("a category has no category_id, topic or encryption")
        if self.user_limit is not None and self.type != "voice":
            raise ValueError("user_limit belongs to voice channels")
        if self.encrypted and self.type != "text":
            raise ValueError("only text channels can be end-to-end encrypted")
        return self


class ChannelUpdate(Body):
    name: str | None = Field(None, min_length=1, max_length=100)
    topic: str | None = Field(None, max_length=1024)
    position: int | None = Field(None, ge=0, le=100_000)
    category_id: UUID | None = None
    user_limit: int | None = Field(None, ge=1, le=100)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _clean_name(value)


class MemberPut(Body):
    role_id: UUID | None = None


class MemberOut(UserProfile):
    role_id: UUID | None


class DmCreate(Body):
    user_ids: list[UUID] = Field(min_length=1, max_length=MAX_DM_MEMBERS - 1)


async def _publish_channel(resources: Res, channel: Channel, action: str) -> None:
    await resources.events.publish(
        Event(
            "channel.update",
            {"action": action, "channel": ChannelOut.of(channel).model_dump(mode="json")},
            channel_id=channel.id,
        )
    )


@router.get("/channels", response_model=list[ChannelOut])
async def list_channels(caller: CurrentUser, db: Db) -> list[ChannelOut]:
    """Every channel the caller may see: categories, text and voice channels, then DMs."""
    channels = await visible_channels(db, caller.user_id)
    dm_ids = [c.id for c in channels if c.type == "dm"]
    members = await ChannelRepository(db).members_of(dm_ids) if dm_ids else {}
    return [ChannelOut.of(c, members.get(c.id)) for c in channels]


@router.post(
    "/channels",
    status_code=status.HTTP_201_CREATED,
    response_model=ChannelOut,
    responses=errors(403),
)
async def create_channel(
    body: ChannelCreate, caller: CurrentUser, db: Db, resources: Res, client: ClientInfo
) -> ChannelOut:
    """Create a channel (needs `manage_channels`); a private one starts with its creator."""
    await require_global(db, caller.user_id, Permission.MANAGE_CHANNELS)
    repo = ChannelRepository(db)
    async with db.transaction():
        channel = await repo.create(created_by=caller.user_id, **body.model_dump())
        if channel.private:
            await repo.add_member(channel.id, caller.user_id)
        await AuditLog(db).record(
            "channel.create",
            user_id=caller.user_id,
            target_id=channel.id,
            ip_address=client.ip or None,
            user_agent=client.user_agent,
            details=body.model_dump(mode="json"),
        )
    await _publish_channel(resources, channel, "create")
    return ChannelOut.of(channel)


@router.get("/channels/{channel_id}", response_model=ChannelOut)
async def get_channel(channel_id: UUID, caller: CurrentUser, db: Db) -> ChannelOut:
    """One channel the caller may see."""
    access = await require(db, caller.user_id, channel_id)
    members = None
    if access.channel.type == "dm":
        members = (await ChannelRepository(db).members_of([channel_id]))[channel_id]
    return ChannelOut.of(access.channel, members)


@router.patch("/channels/{channel_id}", response_model=ChannelOut, responses=errors(403))
async def update_channel(
    channel_id: UUID,
    body: ChannelUpdate,
    caller: CurrentUser,
    db: Db,
    resources: Res,
    client: ClientInfo,
) -> ChannelOut:
    """Edit a channel (needs `manage_channels`; DMs cannot be edited)."""
    access = await require(db, caller.user_id, channel_id, Permission.MANAGE_CHANNELS)
    changes = body.model_dump(exclude_unset=True)
    if access.channel.type == "dm":
        raise BadRequest("DMs cannot be edited", code=ErrorCode.DM_IMMUTABLE)
    if changes.get("name", "") is None or changes.get("position", 0) is None:
        raise BadRequest("name and position cannot be null", code=ErrorCode.INVALID_CHANGE)
    if "user_limit" in changes and access.channel.type != "voice":
        raise BadRequest("user_limit belongs to voice channels", code=ErrorCode.INVALID_CHANGE)
    if "category_id" in changes and access.channel.type == "category":
        raise BadRequest("categories do not nest", code=ErrorCode.INVALID_CATEGORY)
    async with db.transaction():
        channel = await ChannelRepository(db).update(channel_id, changes)
        await AuditLog(db).record(
            "channel.update",
            user_id=caller.user_id,
            target_id=channel_id,
            ip_address=client.ip or None,
            user_agent=client.user_agent,
            details=body.model_dump(mode="json", exclude_unset=True),
        )
    await _publish_channel(resources, channel, "update")
    return ChannelOut.of(channel)


@router.delete(
    "/channels/{channel_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 403)
)
async def delete_channel(
    channel_id: UUID, caller: CurrentUser, db: Db, resources: Res, client: ClientInfo
) -> Response:
    """Delete a channel and its messages (needs `manage_channels`; not for DMs)."""
    access = await require(db, caller.user_id, channel_id, Permission.MANAGE_CHANNELS)
    if access.channel.type == "dm":
        raise BadRequest("DMs cannot be deleted", code=ErrorCode.DM_IMMUTABLE)
    # Tell subscribers before the row (and with it the visibility check) disappears.
    await _publish_channel(resources, access.channel, "delete")
    async with db.transaction():
        orphans = await FileRepository(db).remove_for_channel(channel_id)
        await ChannelRepository(db).delete(channel_id)
        await AuditLog(db).record(
            "channel.delete",
            user_id=caller.user_id,
            target_id=channel_id,
            ip_address=client.ip or None,
            user_agent=client.user_agent,
            details={"name": access.channel.name, "type": access.channel.type},
        )
    await resources.storage.discard(orphans)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/channels/{channel_id}/members", response_model=list[MemberOut])
async def list_members(channel_id: UUID, caller: CurrentUser, db: Db) -> list[MemberOut]:
    """Members of a private channel or DM (empty for public channels)."""
    await require(db, caller.user_id, channel_id)
    return [MemberOut.of(m) for m in await ChannelRepository(db).members(channel_id)]


@router.put(
    "/channels/{channel_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(403),
)
async def put_member(
    channel_id: UUID,
    user_id: UUID,
    caller: CurrentUser,
    db: Db,
    resources: Res,
    body: MemberPut | None = None,
) -> Response:
    """Add a member to a private channel, or set their per-channel role."""
    access = await require(db, caller.user_id, channel_id, Permission.MANAGE_CHANNELS)
    if access.channel.type == "dm":
        raise BadRequest("DM membership is fixed", code=ErrorCode.DM_IMMUTABLE)
    role_id = body.role_id if body is not None else None
    if role_id is not None and Permission.ADMINISTRATOR not in access.permissions:
        raise BadRequest(
            "only administrators assign per-channel roles", code=ErrorCode.MISSING_PERMISSION
        )
    await ChannelRepository(db).add_member(channel_id, user_id, role_id)
    await _publish_channel(resources, access.channel, "update")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/channels/{channel_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(400, 403),
)
async def delete_member(
    channel_id: UUID, user_id: UUID, caller: CurrentUser, db: Db, resources: Res
) -> Response:
    """Remove a member from a private channel (or leave it yourself)."""
    needed = () if user_id == caller.user_id else (Permission.MANAGE_CHANNELS,)
    access = await require(db, caller.user_id, channel_id, *needed)
    if access.channel.type == "dm":
        raise BadRequest("DM membership is fixed", code=ErrorCode.DM_IMMUTABLE)
    if not await ChannelRepository(db).remove_member(channel_id, user_id):
        raise NotFound("not a member", code=ErrorCode.MEMBER_NOT_FOUND)
    await _publish_channel(resources, access.channel, "update")
    # The removed user can no longer see the channel: tell them directly.
    await resources.events.publish(
        Event(
            "channel.update",
            {"action": "delete", "channel": ChannelOut.of(access.channel).model_dump(mode="json")},
            user_ids=(user_id,),
        )
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/dms", response_model=ChannelOut, responses=errors(404))
async def create_dm(
    body: DmCreate, caller: CurrentUser, db: Db, resources: Res, response: Response
) -> ChannelOut:
    """The DM with these users: the existing 1:1 DM, or a new one (groups up to 10).

    DMs are always end-to-end encrypted.
    """
    others = sorted(set(body.user_ids) - {caller.user_id})
    if not others:
        raise BadRequest("a DM needs someone else", code=ErrorCode.INVALID_DM)
    repo = ChannelRepository(db)
    if await repo.count_existing_users(others) != len(others):
        raise NotFound("no such user", code=ErrorCode.USER_NOT_FOUND)
    async with db.transaction():
        if len(others) == 1:
            await repo.lock_direct_dm(caller.user_id, others[0])
            existing = await repo.find_direct_dm(caller.user_id, others[0])
            if existing is not None:
                members = (await repo.members_of([existing.id]))[existing.id]
                return ChannelOut.of(existing, members)
        channel = await repo.create(
            name="@direct" if len(others) == 1 else "@group",
            type="dm",
            created_by=caller.user_id,
            private=True,
            encrypted=True,
        )
        for member in [caller.user_id, *others]:
            await repo.add_member(channel.id, member)
    members = (await repo.members_of([channel.id]))[channel.id]
    out = ChannelOut.of(channel, members)
    await resources.events.publish(
        Event(
            "channel.update",
            {"action": "create", "channel": out.model_dump(mode="json")},
            channel_id=channel.id,
        )
    )
    response.status_code = status.HTTP_201_CREATED
    return out
