"""The asyncpg pool every request borrows connections from."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

# asyncpg's classes are generic only in its type stubs.
if TYPE_CHECKING:
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]
    from asyncpg.pool import PoolConnectionProxy

    # What repositories accept: a bare connection or one borrowed from the pool.
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
else:
    Pool = asyncpg.Pool
    Connection = asyncpg.Connection


async def _init_connection(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    # JSONB columns come back as Python objects, not strings.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, **kwargs: Any) -> Pool:
    """Open a pool to `dsn` with voicechat's codecs on every connection.

    Args:
        dsn: a postgresql:// URL.
        min_size: connections kept open.
        max_size: upper bound of concurrent connections.
        **kwargs: passed to `asyncpg.create_pool`.
    """
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=30,
        **kwargs,
    )
    assert pool is not None  # create_pool only returns None when not awaited
    return pool
