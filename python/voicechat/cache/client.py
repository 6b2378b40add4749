"""The async Valkey client (redis-py speaks Valkey's protocol)."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as ValkeyConnectionError

Cache = Redis


def create_cache(
    url: str,
    *,
    max_connections: int = 64,
    pool_timeout: float = 2.0,
    timeout: float = 2.0,
) -> Cache:
    """A pooled client for `url`; connects lazily, fails within seconds when Valkey is down.

    The pool *waits*: when all `max_connections` are busy (a burst of sockets, say), a caller
    waits up to `pool_timeout` seconds for one to come back, then gets
    `redis.exceptions.ConnectionError` ("No connection available"), which the API answers
    503 `valkey_unavailable` (voicechat.outages). Each connect and each command is bounded by
    `timeout`, so a paused or dead Valkey shows as an error within seconds, never as a hung
    request. A command is retried once, at once, only when its connection broke (an idle one
    dropped by a Valkey restart); never on a timeout, which would double the wait.

    Args:
        url: redis://, rediss:// or unix:// URL.
        max_connections: connections this client opens at most (`VOICECHAT_VALKEY_POOL_SIZE`).
        pool_timeout: seconds to wait for a free connection (`VOICECHAT_VALKEY_POOL_TIMEOUT`).
        timeout: seconds to connect and for one command (`VOICECHAT_VALKEY_TIMEOUT`).
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        decode_responses=False,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1, supported_errors=(ValkeyConnectionError,)),
    )
    return Redis.from_pool(pool)
