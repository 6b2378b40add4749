"""The async Valkey client (redis-py speaks Valkey's protocol)."""

from __future__ import annotations

from redis.asyncio import Redis

Cache = Redis


def create_cache(url: str, *, max_connections: int = 64) -> Cache:
    """A pooled client for `url`; connects lazily, fails fast when Valkey is down.

    Timeouts are short on purpose: a dead Valkey must show up as an error within a
    second (in `/health`, say), never as a hung request.
    """
    return Redis.from_url(
        url,
        decode_responses=False,
        max_connections=max_connections,
        socket_connect_timeout=1.0,
        socket_timeout=5.0,
        health_check_interval=30,
    )
