"""Rate limits on Valkey with the `limits` library's moving window."""

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

    async def hit(self, limit: str, scope: str, identifier: str) -> None:
        """Count one attempt.

        Raises:
            RateLimited: the window is full; `retry_after` says when a slot frees.
        """
        item = self._item(limit)
        if not await self._limiter.hit(item, scope, identifier):
            raise await self._refusal(item, scope, identifier)

    async def check(self, limit: str, scope: str, identifier: str) -> None:
        """Refuse if the window is already full, without counting."""
        item = self._item(limit)
        if not await self._limiter.test(item, scope, identifier):
            raise await self._refusal(item, scope, identifier)

    async def count(self, limit: str, scope: str, identifier: str) -> None:
        """Count one attempt without refusing (a failure recorded after the fact)."""
        await self._limiter.hit(self._item(limit), scope, identifier)

    async def clear(self, limit: str, scope: str, identifier: str) -> None:
        """Forget the attempts (after a success, say)."""
        await self._limiter.clear(self._item(limit), scope, identifier)

    async def _refusal(self, item: RateLimitItem, scope: str, identifier: str) -> RateLimited:
        stats = await self._limiter.get_window_stats(item, scope, identifier)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        return RateLimited("too many attempts; try again later", retry_after=retry_after)
