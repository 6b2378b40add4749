"""Rate limits on Valkey with the `limits` library's moving window.

Every attempt-counting limit here counts *before* it decides: :meth:`RateLimiter.hit` adds
the attempt and compares the window with the limit in one Lua script on Valkey, so N
concurrent attempts against a limit of L let at most L through, however they interleave.
The expensive or guessable step (a password hash, an MFA code, a one-time key) runs only
after the hit succeeded. A success may then :meth:`RateLimiter.clear` the window (a login
that passed forgives the typos before it).

There is deliberately no "test without counting" method: checking first and counting after
the decision is the race issue 13 measured (24 to 30 of 30 concurrent guesses got a password
check against a limit of 10).

A new limit (forgot-password, say) needs a `rate_limit_*` setting, a scope name, and one
``await limits.hit(setting, scope, identifier)`` before the work it protects.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from voicechat.cache import Cache, keys
from voicechat.errors import RateLimited


class RateLimiter:
    """Named limits, each counted per identifier (an IP, an account, a session)."""

    def __init__(self, cache: Cache) -> None:
        # Borrow the instance's Valkey pool: one set of connections, closed with the app.
        self._storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=keys.rate_limit_prefix(),
            connection_pool=cache.connection_pool,  # type: ignore[arg-type]  # documented option, typed narrowly
        )
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._parsed: dict[str, RateLimitItem] = {}

    def _item(self, limit: str) -> RateLimitItem:
        item = self._parsed.get(limit)
        if item is None:
            item = self._parsed[limit] = parse(limit)
        return item

    async def hit(self, limit: str, scope: str, identifier: str, *, cost: int = 1) -> None:
        """Count `cost` attempts and refuse if that overfills the window, atomically.

        A refused hit counts nothing, so a client hammering a full window does not push
        its own reset further away.

        Args:
            limit: the limit in `limits` notation ("10/5minutes"), normally a setting.
            scope: what is limited ("login-account"); windows of different scopes are apart.
            identifier: whom it is counted for (an account name, an IP, a user id).
            cost: attempts this call stands for (one key claim per device, say).

        Raises:
            RateLimited: the window is full; `retry_after` says when a slot frees.
        """
        item = self._item(limit)
        if not await self._limiter.hit(item, scope, identifier, cost=cost):
            raise await self._refusal(item, scope, identifier)

    async def clear(self, limit: str, scope: str, identifier: str) -> None:
        """Forget the attempts (after a success, say)."""
        await self._limiter.clear(self._item(limit), scope, identifier)

    async def _refusal(self, item: RateLimitItem, scope: str, identifier: str) -> RateLimited:
        stats = await self._limiter.get_window_stats(item, scope, identifier)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        return RateLimited("too many attempts; try again later", retry_after=retry_after)
