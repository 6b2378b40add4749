"""The asyncpg pool every request borrows connections from."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeAlias, cast

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


class PooledConnection(asyncpg.Connection):
    """A pool connection given back without asyncpg's reset statement.

    asyncpg resets a returned connection with one more round trip (`RESET ALL`, `UNLISTEN *`,
    `CLOSE ALL`, `pg_advisory_unlock_all()`): a third of the statements of a history page.
    voicechat leaves no such state on a pooled connection: no SET, LISTEN, cursors outside a
    transaction, or session-level advisory locks (its locks are `pg_advisory_xact_lock`). An
    open transaction is still rolled back on release: asyncpg does that whatever this says.
    """

    def get_reset_query(self) -> str:
        """Nothing to reset (see the class)."""
        return ""


#: Seconds to give a connection back (asyncpg resets it, or waits for a timed-out statement's
#: cancellation); past it the connection is closed instead. Healthy resets take milliseconds.
RELEASE_TIMEOUT_SECONDS = 0.5


class BoundedPool(asyncpg.Pool):
    """An asyncpg pool whose `acquire()` waits at most `acquire_timeout` unless told otherwise,
    and whose `release()` waits at most `RELEASE_TIMEOUT_SECONDS`, so a request holding a
    connection to a PostgreSQL that froze ends within acquire + command + release timeouts.
    """

    def __init__(self, *args: Any, acquire_timeout: float | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> Any:
        """A connection, waiting at most `timeout` (default: the pool's `acquire_timeout`)."""
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109 (asyncpg's signature)
        """Give `connection` back; closed rather than reset when that takes too long."""
        await super().release(
            connection, timeout=RELEASE_TIMEOUT_SECONDS if timeout is None else timeout
        )


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout: float = 60.0,
    acquire_timeout: float | None = None,
    command_timeout: float | None = None,
    **kwargs: Any,
) -> Pool:
    """Open a pool to `dsn` with voicechat's codecs on every connection.

    The API passes its `VOICECHAT_DB_*_TIMEOUT` settings, so that a PostgreSQL that is down or
    frozen fails a request within seconds (a `TimeoutError` or connection error raised inside
    asyncpg, which voicechat.outages turns into 503 `database_unavailable`). The defaults
    (unbounded statements) are for one-off CLI commands such as `voicechat migrate`.

    Args:
        dsn: a postgresql:// URL.
        min_size: connections kept open.
        max_size: upper bound of concurrent connections.
        connect_timeout: seconds to open one connection.
        acquire_timeout: default seconds `acquire()` waits for a connection (None: forever).
        command_timeout: seconds one statement may run (None: no limit).
        **kwargs: passed to `asyncpg.Pool`.
    """
    pool = BoundedPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=PooledConnection,
        record_class=asyncpg.Record,
        init=_init_connection,
        timeout=connect_timeout,
        command_timeout=command_timeout,
        acquire_timeout=acquire_timeout,
        **kwargs,
    )
    await pool
    return cast("Pool", pool)


@asynccontextmanager
async def dedicated_connection(
    dsn: str, *, connect_timeout: float = 60.0
) -> AsyncIterator[Connection]:
    """One connection outside the pool with no statement timeout (schema migrations, which
    may wait for another instance's migration lock or rewrite a large table)."""
    conn = await asyncpg.connect(dsn, timeout=connect_timeout)
    try:
        await _init_connection(conn)
        yield conn
    finally:
        await conn.close()


async def ping(conn: Connection) -> None:
    """One round trip to the server (health checks)."""
    await conn.fetchval("SELECT 1")
