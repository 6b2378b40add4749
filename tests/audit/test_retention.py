"""The audit log's retention purge: by age, idempotent, once a day across instances."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from voicechat.audit_retention import AuditRetention
from voicechat.cache import create_cache
from voicechat.db import create_pool


async def test_purge_deletes_only_what_is_due_once_a_day_and_stops_on_cancel(
    database_url: str, clean_valkey: str
) -> None:
    now = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO audit_log (event, created_at) VALUES ('old.one', $1), ('old.two', $1),"
            " ('kept', $2)",
            now - timedelta(days=31),
            now - timedelta(days=29),
        )
    finally:
        await conn.close()
    pool = await create_pool(database_url, min_size=1, max_size=2)
    cache = create_cache(clean_valkey, max_connections=4)
    try:
        first = AuditRetention(pool, cache, 30, instance_id="a", clock=lambda: now)
        second = AuditRetention(pool, cache, 30, instance_id="b", clock=lambda: now)
        assert await first.run_once() == 2
        # Another instance the same day skips; a second purge finds nothing more due.
        assert await second.run_once() is None
        assert await first.purge() == 0
        async with pool.acquire() as c:
            assert [r["event"] for r in await c.fetch("SELECT event FROM audit_log")] == ["kept"]
        first.start()
        await asyncio.wait_for(first.stop(), timeout=5)
    finally:
        await cache.aclose()
        await pool.close()
