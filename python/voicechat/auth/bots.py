"""Bot accounts: create, list, delete, and a new token (SPEC §3 "Accounts", docs/accounts.md).

Everything here needs `manage_bots`; a user manages the bots they own, an administrator every
bot. Bots themselves manage none (403 `not_for_bots`). Each change is audited in its
transaction (`bot.create`, `bot.delete`, `bot.token_create`; never the token), and a token that
dies is announced on the revocation channel after the commit, so that REST refuses it and the
gateway closes its sockets at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from voicechat.auth.bot_tokens import new_bot_token, publish_revocations
from voicechat.auth.live_sessions import LiveSessions
from voicechat.cache import Cache
from voicechat.chat.permissions import Permission, require_global
from voicechat.db.pool import Connection
from voicechat.db.repositories import AuditLog
from voicechat.db.repositories.bots import Bot, BotRepository
from voicechat.error_codes import ErrorCode
from voicechat.errors import Forbidden, NotFound


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the user, whether that user is a bot, and where from (for the audit log)."""

    user_id: UUID
    bot: bool
    ip: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class NewToken:
    """A bot with the token just made for it: the only time the token is seen."""

    bot: Bot
    token: str


async def _may_manage(conn: Connection, caller: Caller) -> bool:
    """Whether the caller may manage every bot (administrator) rather than only their own.

    Raises:
        Forbidden: a bot, or no `manage_bots`.
    """
    if caller.bot:
        raise Forbidden("bot accounts cannot manage bots", code=ErrorCode.NOT_FOR_BOTS)
    granted = await require_global(conn, caller.user_id, Permission.MANAGE_BOTS)
    return Permission.ADMINISTRATOR in granted


async def _managed_bot(conn: Connection, caller: Caller, bot_id: UUID) -> Bot:
    everyone = await _may_manage(conn, caller)
    bot = await BotRepository(conn).get(bot_id)
    if bot is None or not (everyone or bot.owner_id == caller.user_id):
        raise NotFound("no such bot", code=ErrorCode.BOT_NOT_FOUND)
    return bot


async def create_bot(
    conn: Connection, caller: Caller, username: str, display_name: str | None
) -> NewToken:
    """A new bot owned by the caller, with its first token.

    Raises:
        Forbidden: a bot, or no `manage_bots`.
        Conflict: the username is taken.
    """
    await _may_manage(conn, caller)
    token, digest = new_bot_token()
    repo = BotRepository(conn)
    async with conn.transaction():
        user = await repo.create(caller.user_id, username, display_name)
        issued = await repo.issue_token(user.id, digest, caller.user_id)
        audit = AuditLog(conn)
        await audit.record(
            "bot.create",
            user_id=caller.user_id,
            target_id=user.id,
            ip_address=caller.ip,
            user_agent=caller.user_agent,
            details={"username": user.username},
        )
        await audit.record(
            "bot.token_create",
            user_id=caller.user_id,
            target_id=user.id,
            ip_address=caller.ip,
            user_agent=caller.user_agent,
            details={"token_id": str(issued.id)},
        )
        bot = await repo.get(user.id)
    assert bot is not None
    return NewToken(bot, token)


async def list_bots(conn: Connection, caller: Caller) -> list[Bot]:
    """The caller's bots; every bot for an administrator.

    Raises:
        Forbidden: a bot, or no `manage_bots`.
    """
    everyone = await _may_manage(conn, caller)
    return await BotRepository(conn).listing(owner_id=None if everyone else caller.user_id)


async def delete_bot(
    conn: Connection, cache: Cache, caller: Caller, bot_id: UUID, live: LiveSessions | None
) -> None:
    """Delete a bot: its account and tokens go (its messages stay, under the deleted-user
    placeholder).

    Raises:
        Forbidden: a bot, or no `manage_bots`.
        NotFound: no such bot of the caller's (any bot, for an administrator).
    """
    bot = await _managed_bot(conn, caller, bot_id)
    async with conn.transaction():
        tokens = await BotRepository(conn).delete(bot_id) or []
        await AuditLog(conn).record(
            "bot.delete",
            user_id=caller.user_id,
            target_id=bot_id,
            ip_address=caller.ip,
            user_agent=caller.user_agent,
            details={"username": bot.username, "owner_id": str(bot.owner_id)},
        )
    await publish_revocations(cache, tokens, live)


async def new_token(
    conn: Connection, cache: Cache, caller: Caller, bot_id: UUID, live: LiveSessions | None
) -> NewToken:
    """A new token for the bot; the older one stops working at once.

    Raises:
        Forbidden: a bot, or no `manage_bots`.
        NotFound: no such bot of the caller's (any bot, for an administrator).
    """
    await _managed_bot(conn, caller, bot_id)
    token, digest = new_bot_token()
    repo = BotRepository(conn)
    async with conn.transaction():
        issued = await repo.issue_token(bot_id, digest, caller.user_id)
        await AuditLog(conn).record(
            "bot.token_create",
            user_id=caller.user_id,
            target_id=bot_id,
            ip_address=caller.ip,
            user_agent=caller.user_agent,
            details={"token_id": str(issued.id), "revoked": [str(t) for t in issued.revoked]},
        )
        bot = await repo.get(bot_id)
    assert bot is not None
    await publish_revocations(cache, issued.revoked, live)
    return NewToken(bot, token)
