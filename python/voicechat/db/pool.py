"""The asyncpg pool every request borrows connections from."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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


_queries: ContextVar[tuple[list[int], ...]] = ContextVar("db_queries", default=())


def _count_query(_record: object) -> None:
    # asyncpg schedules loggers with call_soon, which keeps the issuing task's context.
    for counter in _queries.get():
        counter[0] += 1


@contextmanager
def count_queries() -> Iterator[list[int]]:
    """Count the queries issued in this context (a request, say) into `counter[0]`.

    Contexts nest: a query counts in every enclosing counter.
    """
    counter = [0]
    token = _queries.set((*_queries.get(), counter))
    try:
        yield counter
    finally:
        _queries.reset(token)


async def _init_connection(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    conn.add_query_logger(_count_query)
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


async def ping(conn: Connection) -> None:
    """One round trip to the server (health checks)."""
    await conn.fetchval("SELECT 1")
