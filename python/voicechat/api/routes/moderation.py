"""`/bans`, `/users/{id}/timeout`: bans and timeouts (SPEC §3, docs/moderation.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field

from voicechat.api.deps import ClientInfo, CurrentUser, Db, Res
from voicechat.api.openapi import errors
from voicechat.api.schemas import Body, FromRow
from voicechat.auth.administration import end_user_sessions
from voicechat.auth.service import Client
from voicechat.chat import moderation
from voicechat.chat.moderation import MAX_DELETE_MESSAGE_SECONDS, Actor
from voicechat.chat.permissions import Permission, require_global
from voicechat.db.repositories.moderation import ModerationRepository
from voicechat.events import Event
from voicechat.gateway.voice_signaling import TIMED_OUT_EVENT

router = APIRouter(tags=["moderation"])


class BanBody(Body):
    """Why, and how much of the user's recent history goes with them."""

    reason: str | None = Field(None, max_length=512)
    delete_message_seconds: int = Field(
        0,
        ge=0,
        le=MAX_DELETE_MESSAGE_SECONDS,
        description="Delete the user's messages of the last this many seconds (at most 7 days).",
    )


class UnbanBody(Body):
    """Optional: why the ban is lifted (for the audit log)."""

    reason: str | None = Field(None, max_length=512)


class BanOut(FromRow):
    """A ban as `GET /bans` lists it."""

    user_id: UUID
    username: str
    display_name: str | None
    avatar_url: str | None
    reason: str | None
    banned_by: UUID | None
    created_at: datetime


class TimeoutBody(Body):
    """Until when (at most 28 days ahead), and why."""

    until: datetime
    reason: str | None = Field(None, max_length=512)


class TimeoutOut(BaseModel):
    """The user's timeout after the change."""

    user_id: UUID
    communication_disabled_until: datetime | None


def _actor(caller: CurrentUser, client: Client) -> Actor:
    return Actor(caller.user_id, client.ip, client.user_agent)


@router.put("/bans/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403, 404))
async def ban_user(
    user_id: UUID,
    body: BanBody,
    caller: CurrentUser,
    client: ClientInfo,
    db: Db,
    resources: Res,
) -> Response:
    """Ban a user (`ban_members`): their sessions and sockets end at once (4003), their logins
    are refused (403 `banned`), and with `delete_message_seconds` their recent messages go
    (each announced with `message.delete`)."""
    await moderation.ban(
        db,
        _actor(caller, client),
        user_id,
        reason=body.reason,
        delete_message_seconds=body.delete_message_seconds,
    )
    await end_user_sessions(db, resources.cache, user_id, live=resources.auth.live)
    await resources.events.publish(
        Event("member.update", {"user_id": str(user_id), "banned": True})
    )
    if body.delete_message_seconds:
        while True:
            deleted, object_keys = await moderation.delete_recent_messages(
                db, user_id, body.delete_message_seconds
            )
            await resources.storage.discard(object_keys)
            for message in deleted:
                await resources.events.publish(
                    Event(
                        "message.delete",
                        {"id": str(message.id), "channel_id": str(message.channel_id)},
                        channel_id=message.channel_id,
                    )
                )
            if len(deleted) < moderation.DELETE_BATCH:
                break
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/bans/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403, 404)
)
async def unban_user(
    user_id: UUID,
    caller: CurrentUser,
    client: ClientInfo,
    db: Db,
    resources: Res,
    body: UnbanBody | None = None,
) -> Response:
    """Lift a ban (`ban_members`): the user may log in again."""
    await moderation.unban(
        db, _actor(caller, client), user_id, reason=body.reason if body else None
    )
    await resources.events.publish(
        Event("member.update", {"user_id": str(user_id), "banned": False})
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/bans", response_model=list[BanOut], responses=errors(403))
async def list_bans(
    caller: CurrentUser,
    db: Db,
    after: Annotated[UUID | None, Query(description="Bans of user ids after this one.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[BanOut]:
    """The bans, by user id (`ban_members`); page on with `after` set to the last user id."""
    await require_global(db, caller.user_id, Permission.BAN_MEMBERS)
    return [BanOut.of(ban) for ban in await ModerationRepository(db).bans(after=after, limit=limit)]


@router.put("/users/{user_id}/timeout", response_model=TimeoutOut, responses=errors(403, 404, 422))
async def time_out_user(
    user_id: UUID,
    body: TimeoutBody,
    caller: CurrentUser,
    client: ClientInfo,
    db: Db,
    resources: Res,
) -> TimeoutOut:
    """Time a user out until `until` (`moderate_members`, at most 28 days ahead): they can
    read, not send, react, type or speak."""
    until = moderation.check_timeout(body.until)
    await moderation.set_timeout(db, _actor(caller, client), user_id, until, reason=body.reason)
    await _announce_timeout(resources, user_id, until)
    await resources.events.publish(Event(TIMED_OUT_EVENT, {"user_id": str(user_id)}))
    return TimeoutOut(user_id=user_id, communication_disabled_until=until)


@router.delete("/users/{user_id}/timeout", response_model=TimeoutOut, responses=errors(403, 404))
async def clear_timeout(
    user_id: UUID, caller: CurrentUser, client: ClientInfo, db: Db, resources: Res
) -> TimeoutOut:
    """End a user's timeout early (`moderate_members`)."""
    await moderation.set_timeout(db, _actor(caller, client), user_id, None, reason=None)
    await _announce_timeout(resources, user_id, None)
    return TimeoutOut(user_id=user_id, communication_disabled_until=None)


async def _announce_timeout(resources: Res, user_id: UUID, until: datetime | None) -> None:
    await resources.events.publish(
        Event(
            "member.update",
            {
                "user_id": str(user_id),
                "communication_disabled_until": until.isoformat() if until else None,
            },
        )
    )
