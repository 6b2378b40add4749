"""Bot tokens: `Authorization: Bot <token>` on REST, `Bot <token>` in the gateway's `auth`.

A bot token is 256 random bits (`vcb_` and 43 URL-safe characters), shown once and stored as
its SHA-256. The hash is the whole lookup: a guess is hashed before anything compares it, so
no comparison's timing depends on how much of a real token it shares (the constant-time
property a direct comparison would need `hmac.compare_digest` for), and a leak of the table
gives no usable token. A slow password hash would add nothing for 256 random bits.

Each API process remembers a verdict (token hash -> the bot) for at most
`REVOCATION_WINDOW_SECONDS`, so a bot pays one indexed read per second and process, not one
per request. A token that is rotated, deleted, or whose bot (or owner) is disabled has its id
published on the session revocation channel (auth/live_sessions.py): every process drops its
verdict on the message and the gateway closes the sockets authenticated with it (a bot
socket's `session_id` is its token's id); the one-second lifetime of a verdict is the backstop
if the message is lost. "Last used" is written at most once a minute per token, in batches.

Unknown tokens are counted per client IP (`VOICECHAT_RATE_LIMIT_BOT_TOKEN_IP`, atomically in
Valkey); a full window answers 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from voicechat.auth.live_sessions import REVOCATION_WINDOW_SECONDS, LiveSessions
from voicechat.auth.ratelimit import RateLimiter
from voicechat.cache import Cache, keys
from voicechat.db.pool import Pool
from voicechat.db.repositories.bots import BotRepository
from voicechat.error_codes import ErrorCode
from voicechat.errors import Unauthorized

log = logging.getLogger(__name__)

TOKEN_PREFIX = "vcb_"  # noqa: S105  (the prefix secret scanners know, not a secret)
#: "Last used" of one token is written at most this often.
LAST_USED_INTERVAL_SECONDS = 60.0
#: How often pending "last used" times are written.
FLUSH_INTERVAL_SECONDS = 5.0
MAX_VERDICTS = 20_000


def new_bot_token() -> tuple[str, bytes]:
    """A fresh token and the SHA-256 digest that is stored for it."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, bot_token_digest(token)


def bot_token_digest(token: str) -> bytes:
    """The SHA-256 a token is stored and looked up by."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


async def publish_revocations(
    cache: Cache, token_ids: Iterable[UUID], live: LiveSessions | None = None
) -> None:
    """Tell every API process that these tokens died (their verdicts and sockets go).

    The database must say so first (the tokens revoked or the bot gone): a process that reads
    again after the message must find them dead.
    """
    ids = list(token_ids)
    if not ids:
        return
    async with cache.pipeline(transaction=False) as pipe:
        for token_id in ids:
            pipe.publish(keys.session_revocations(), str(token_id))
        await pipe.execute()
    if live is not None:
        # This process refuses them at once, before its own message comes back.
        for token_id in ids:
            live.forget(token_id)


class BotTokens:
    """Authenticates bot tokens for one API process (verdicts, last use, failure limit)."""

    def __init__(
        self, db: Pool, live: LiveSessions, limits: RateLimiter, *, failure_limit: str
    ) -> None:
        self._db = db
        self._limits = limits
        self._failure_limit = failure_limit
        # token digest -> (token id, bot id, monotonic expiry)
        self._verdicts: dict[bytes, tuple[UUID, UUID, float]] = {}
        self._digests: dict[UUID, bytes] = {}
        self._generation = 0
        self._noted: dict[UUID, float] = {}  # token id -> monotonic time its use was noted
        self._pending: dict[UUID, datetime] = {}
        self._task: asyncio.Task[None] | None = None
        live.on_revoked(self._revoked)

    async def start(self) -> None:
        """Start writing "last used" in the background."""
        self._task = asyncio.create_task(self._write_last_used(), name="bot-tokens-last-used")

    async def stop(self) -> None:
        """Stop, writing the pending "last used" times first."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(asyncpg.PostgresError, OSError, TimeoutError):
            await self._flush()

    async def verify(self, token: str, ip: str) -> tuple[UUID, UUID]:
        """(token id, bot id) of a live token (AuthService.authenticate_bot wraps it).

        Raises:
            Unauthorized: unknown, rotated or revoked token, or a disabled or deleted bot.
            RateLimited: too many such tokens from this IP.
        """
        digest = bot_token_digest(token)
        now = time.monotonic()
        found = self._verdicts.get(digest)
        if found is not None and now < found[2]:
            token_id, bot_id, _ = found
        else:
            generation = self._generation
            async with self._db.acquire() as conn:
                owner = await BotRepository(conn).token_owner(digest)
            if owner is None:
                self._verdicts.pop(digest, None)
                await self._limits.hit(self._failure_limit, "bot-token-ip", ip)
                raise Unauthorized("invalid or revoked bot token", code=ErrorCode.INVALID_BOT_TOKEN)
            token_id, bot_id = owner
            if generation == self._generation:
                if len(self._verdicts) >= MAX_VERDICTS:
                    stale = next(iter(self._verdicts))
                    self._digests.pop(self._verdicts.pop(stale)[0], None)
                self._verdicts[digest] = (token_id, bot_id, now + REVOCATION_WINDOW_SECONDS)
                self._digests[token_id] = digest
        self._used(token_id, now)
        return token_id, bot_id

    def _used(self, token_id: UUID, now: float) -> None:
        noted = self._noted.get(token_id)
        if noted is None or now - noted >= LAST_USED_INTERVAL_SECONDS:
            self._noted[token_id] = now
            self._pending[token_id] = datetime.now(UTC)

    def _revoked(self, token_id: UUID) -> None:
        # Called for every ended session too: most ids are not tokens of ours.
        self._generation += 1
        digest = self._digests.pop(token_id, None)
        if digest is not None:
            self._verdicts.pop(digest, None)

    async def _write_last_used(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_SECONDS)
            now = time.monotonic()
            self._noted = {
                token_id: noted
                for token_id, noted in self._noted.items()
                if now - noted < LAST_USED_INTERVAL_SECONDS
            }
            expired = [d for d, (_, _, expires) in self._verdicts.items() if expires <= now]
            for digest in expired:
                token_id = self._verdicts.pop(digest)[0]
                self._digests.pop(token_id, None)
            try:
                await self._flush()
            except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
                log.warning("auth: could not record when bot tokens were last used (%s)", exc)

    async def _flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        try:
            async with self._db.acquire() as conn:
                await BotRepository(conn).mark_used(pending)
        except BaseException:
            for token_id, used in pending.items():
                self._pending.setdefault(token_id, used)
            raise
