"""Administering accounts: disable and enable, promote and demote (SPEC §3, docs/accounts.md).

The same functions serve `GET/PATCH /admin/users` and `voicechat admin users`; the CLI runs
them without an API process, straight on the database and Valkey.

Disabling ends the account's sessions (and, for a bot or the owner of bots, their tokens) at
once: every API process drops its verdict on the revocation message and the gateway closes the
sockets; login, SSO and refresh are refused with 403 `account_disabled` from then on. The last
enabled administrator can be neither demoted nor disabled (409 `last_administrator`), checked
under a lock so that two administrators demoting each other cannot both succeed.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from voicechat.auth.bot_tokens import publish_revocations
from voicechat.auth.live_sessions import LiveSessions
from voicechat.auth.sessions import SessionStore
from voicechat.cache import Cache
from voicechat.db.pool import Connection
from voicechat.db.repositories import AuditLog, SessionRepository
from voicechat.db.repositories.admin_users import AdminUserRepository, AdminUserView
from voicechat.db.repositories.bots import BotRepository
from voicechat.error_codes import ErrorCode
from voicechat.errors import Conflict, Forbidden, NotFound


@dataclass(frozen=True, slots=True)
class Actor:
    """Who changes an account, for the audit log: an administrator, or the CLI (no user)."""

    user_id: UUID | None
    ip: str | None = None
    user_agent: str | None = None
    via: str = "api"


async def refuse_disabled(conn: Connection, user_id: UUID) -> None:
    """Refuse to open a session for a disabled account.

    Raises:
        Forbidden: `account_disabled`.
    """
    if await AdminUserRepository(conn).is_disabled(user_id):
        raise Forbidden(
            "this account has been disabled by an administrator",
            code=ErrorCode.ACCOUNT_DISABLED,
        )


async def end_user_sessions(
    conn: Connection,
    cache: Cache,
    user_id: UUID,
    *,
    live: LiveSessions | None = None,
    include_bot_tokens: bool = True,
) -> int:
    """End every session of the user (and the tokens of the user, if a bot, and of the user's
    bots), on every API process and gateway at once; returns how many ended."""
    # Only revoke and list are used: the lifetimes do not matter here.
    store = SessionStore(cache, ttl_seconds=1, grace_seconds=0)
    ended = 0
    for session in await store.list_for_user(user_id):
        await store.revoke(session.id)
        await SessionRepository(conn).revoked(session.id)
        if live is not None:
            live.forget(session.id)
        ended += 1
    if include_bot_tokens:
        tokens = await BotRepository(conn).tokens_of_user_and_bots(user_id)
        await publish_revocations(cache, tokens, live)
        ended += len(tokens)
    return ended


async def update_user(
    conn: Connection,
    cache: Cache,
    user_id: UUID,
    *,
    actor: Actor,
    disabled: bool | None = None,
    administrator: bool | None = None,
    live: LiveSessions | None = None,
) -> AdminUserView:
    """Disable or enable, promote or demote an account; audited as `admin.user_update`.

    Raises:
        NotFound: no such account.
        Conflict: `last_administrator`.
    """
    repo = AdminUserRepository(conn)
    async with conn.transaction():
        await repo.lock_administrators()
        before = await repo.get(user_id)
        if before is None:
            raise NotFound("no such user", code=ErrorCode.USER_NOT_FOUND)
        losing_admin = before.administrator and not before.disabled
        if (
            losing_admin
            and (disabled is True or administrator is False)
            and await repo.other_administrators(user_id) == 0
        ):
            raise Conflict(
                "this is the last enabled administrator: promote another account first",
                code=ErrorCode.LAST_ADMINISTRATOR,
            )
        changes: dict[str, object] = {}
        if disabled is not None and disabled != before.disabled:
            await repo.set_disabled(user_id, disabled)
            changes["disabled"] = disabled
        if administrator is not None and administrator != before.administrator:
            await repo.set_administrator(user_id, administrator)
            changes["administrator"] = administrator
        if changes:
            await AuditLog(conn).record(
                "admin.user_update",
                user_id=actor.user_id,
                target_id=user_id,
                ip_address=actor.ip,
                user_agent=actor.user_agent,
                details={**changes, "via": actor.via},
            )
        after = await repo.get(user_id)
        assert after is not None
    if changes.get("disabled") is True:
        # After the commit: a login racing with this one already sees the account disabled.
        await end_user_sessions(conn, cache, user_id, live=live)
    return after
