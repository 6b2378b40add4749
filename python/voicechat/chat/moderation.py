"""Bans, timeouts and the role hierarchy every moderation action obeys (docs/moderation.md).

The hierarchy: nobody acts on themself; an administrator (the `administrator` permission) is
never a target; a moderator who is not an administrator acts only on users whose highest role
sits strictly below their own highest (positions of assigned roles; the default role counts
as 0). An administrator outranks everyone else.

A timeout is `users.communication_disabled_until`: until then the user may read but not send,
react, type or speak. The REST and gateway paths check it through `ChannelAccess` (the access
query reads it along, no extra round trip) with `ensure_can_communicate`; code without a
channel access at hand calls `ensure_user_can_communicate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from voicechat.chat.permissions import Permission, require_global
from voicechat.db.pool import Connection
from voicechat.db.repositories.access import ChannelAccess
from voicechat.db.repositories.audit import AuditLog
from voicechat.db.repositories.moderation import (
    DeletedMessage,
    ModerationRepository,
    Standing,
)
from voicechat.error_codes import ErrorCode
from voicechat.errors import Forbidden, NotFound, ValidationFailed

#: The longest timeout, as Discord's (SPEC §3).
MAX_TIMEOUT = timedelta(days=28)
#: How far back a ban may delete the user's messages (`delete_message_seconds`).
MAX_DELETE_MESSAGE_SECONDS = 7 * 24 * 3600
#: Messages deleted (and announced) per transaction when a ban deletes recent messages.
DELETE_BATCH = 500


class TimedOut(Forbidden):
    """The user is timed out: 403 `timed_out` with `until` (ISO 8601) in the error."""

    def __init__(self, until: datetime) -> None:
        super().__init__(
            f"you are timed out until {until.isoformat()}: you can read, not send, react, "
            "type or speak",
            code=ErrorCode.TIMED_OUT,
            details={"until": until.isoformat()},
        )
        self.until = until


@dataclass(frozen=True, slots=True)
class Actor:
    """Who does a moderation action, from where (for the audit log)."""

    user_id: UUID
    ip: str | None
    user_agent: str | None


def ensure_can_communicate(access: ChannelAccess) -> None:
    """Refuse a timed-out user's send, reaction, typing or speaking on this channel.

    Raises:
        TimedOut: their timeout runs.
    """
    if access.timed_out_until is not None:
        raise TimedOut(access.timed_out_until)


async def ensure_user_can_communicate(conn: Connection, user_id: UUID) -> None:
    """`ensure_can_communicate` for code without a `ChannelAccess` (one primary-key read).

    Raises:
        TimedOut: their timeout runs.
    """
    until = await ModerationRepository(conn).timed_out_until(user_id)
    if until is not None:
        raise TimedOut(until)


async def require_target(conn: Connection, actor_id: UUID, target_id: UUID) -> Standing:
    """Insist that the actor may act on the target under the hierarchy rule.

    Raises:
        Forbidden: `cannot_moderate_self`, or `role_hierarchy` (an administrator target, or a
            target whose highest role is at or above the actor's).
        NotFound: `user_not_found`, no such (live) user.
    """
    if actor_id == target_id:
        raise Forbidden("you cannot moderate yourself", code=ErrorCode.CANNOT_MODERATE_SELF)
    standings = await ModerationRepository(conn).standings(actor_id, target_id)
    target = standings.get(target_id)
    if target is None:
        raise NotFound("no such user", code=ErrorCode.USER_NOT_FOUND)
    actor = standings.get(actor_id)
    if target.administrator:
        raise Forbidden("an administrator cannot be moderated", code=ErrorCode.ROLE_HIERARCHY)
    if actor is None or (not actor.administrator and target.top_position >= actor.top_position):
        raise Forbidden(
            "that user's highest role is at or above yours", code=ErrorCode.ROLE_HIERARCHY
        )
    return target


async def ban(
    conn: Connection,
    actor: Actor,
    target_id: UUID,
    *,
    reason: str | None,
    delete_message_seconds: int,
) -> None:
    """Record the ban (checks, row, audit entry) in one transaction; the caller then ends the
    user's sessions and deletes their recent messages (`delete_recent_messages`).

    Raises:
        Forbidden: no `ban_members`, or the hierarchy forbids it.
        NotFound: no such user.
    """
    async with conn.transaction():
        await require_global(conn, actor.user_id, Permission.BAN_MEMBERS)
        await require_target(conn, actor.user_id, target_id)
        await ModerationRepository(conn).ban(target_id, banned_by=actor.user_id, reason=reason)
        await _audit(
            conn,
            "member.ban",
            actor,
            target_id,
            reason,
            {"delete_message_seconds": delete_message_seconds},
        )


async def delete_recent_messages(
    conn: Connection, user_id: UUID, seconds: int
) -> tuple[list[DeletedMessage], list[str]]:
    """Delete one batch of the user's messages of the last `seconds`, in its own transaction:
    the deleted messages and their attachments' object keys (fewer than `DELETE_BATCH`: done).
    """
    since = datetime.now(UTC) - timedelta(seconds=seconds)
    async with conn.transaction():
        return await ModerationRepository(conn).delete_recent_messages(
            user_id, since, batch=DELETE_BATCH
        )


async def unban(conn: Connection, actor: Actor, target_id: UUID, *, reason: str | None) -> None:
    """Lift a ban (no hierarchy check: the banned user holds no standing to protect).

    Raises:
        Forbidden: no `ban_members`.
        NotFound: `ban_not_found`.
    """
    async with conn.transaction():
        await require_global(conn, actor.user_id, Permission.BAN_MEMBERS)
        if not await ModerationRepository(conn).unban(target_id):
            raise NotFound("that user is not banned", code=ErrorCode.BAN_NOT_FOUND)
        await _audit(conn, "member.unban", actor, target_id, reason, {})


def check_timeout(until: datetime, now: datetime | None = None) -> datetime:
    """`until` as an aware UTC time, if it is in the future and at most 28 days ahead.

    Raises:
        ValidationFailed: `invalid_timeout`.
    """
    now = now or datetime.now(UTC)
    when = until if until.tzinfo is not None else until.replace(tzinfo=UTC)
    if when <= now:
        raise ValidationFailed("until must be in the future", code=ErrorCode.INVALID_TIMEOUT)
    if when > now + MAX_TIMEOUT:
        raise ValidationFailed(
            "until must be at most 28 days ahead", code=ErrorCode.INVALID_TIMEOUT
        )
    return when.astimezone(UTC)


async def set_timeout(
    conn: Connection, actor: Actor, target_id: UUID, until: datetime | None, *, reason: str | None
) -> None:
    """Time the user out until `until` (checked with `check_timeout`), or clear it (None).

    Raises:
        Forbidden: no `moderate_members`, or the hierarchy forbids it.
        NotFound: no such user.
        ValidationFailed: `invalid_timeout`.
    """
    when = None if until is None else check_timeout(until)
    async with conn.transaction():
        await require_global(conn, actor.user_id, Permission.MODERATE_MEMBERS)
        await require_target(conn, actor.user_id, target_id)
        if not await ModerationRepository(conn).set_timeout(target_id, when):
            raise NotFound("no such user", code=ErrorCode.USER_NOT_FOUND)
        await _audit(
            conn,
            "member.timeout" if when is not None else "member.timeout_clear",
            actor,
            target_id,
            reason,
            {"until": when.isoformat()} if when is not None else {},
        )


async def _audit(
    conn: Connection,
    event: str,
    actor: Actor,
    target_id: UUID,
    reason: str | None,
    details: dict[str, object],
) -> None:
    await AuditLog(conn).record(
        event,
        user_id=actor.user_id,
        target_id=target_id,
        reason=reason,
        ip_address=actor.ip or None,
        user_agent=actor.user_agent,
        details=details,
    )
