"""Deletes audit log entries older than `VOICECHAT_AUDIT_RETENTION_DAYS` (default 365).

Every API instance runs one :class:`AuditRetention`; once per UTC day the first to `SET NX`
that day's key in Valkey purges (as backup/schedule.py takes a backup slot), the others skip.
The purge itself is idempotent (deleting by age, in batches by the `created_at` index), so a
second run, or one cut off half-way, only deletes what is still due.

The task ends promptly when cancelled: it awaits only sleeps and single statements (bounded
by the pool's statement timeout), and swallows no `CancelledError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from voicechat.cache import Cache, keys
from voicechat.db.pool import Pool
from voicechat.db.repositories.audit import AuditLog

log = logging.getLogger(__name__)

#: Seconds between checks for the day's purge; the first shortly after start-up.
CHECK_INTERVAL = 3600.0
FIRST_CHECK_DELAY = 60.0
BATCH = 5000

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AuditRetention:
    """A background task purging old audit entries once a day across instances."""

    def __init__(
        self,
        pool: Pool,
        cache: Cache,
        retention_days: int,
        *,
        instance_id: str,
        clock: Clock = _utc_now,
    ) -> None:
        self._pool = pool
        self._cache = cache
        self._retention = timedelta(days=retention_days)
        self._instance_id = instance_id
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    async def purge(self) -> int:
        """Delete every entry older than the retention now; returns how many."""
        cutoff = self._clock() - self._retention
        removed = 0
        while True:
            async with self._pool.acquire() as conn:
                deleted = await AuditLog(conn).purge(cutoff, batch=BATCH)
            removed += deleted
            if deleted < BATCH:
                break
        if removed:
            log.info("purged %d audit log entries older than %s", removed, cutoff.isoformat())
        return removed

    async def run_once(self) -> int | None:
        """Purge unless another instance took today's purge; None when it did."""
        day = self._clock().astimezone(UTC).strftime("%Y%m%d")
        taken = await self._cache.set(
            keys.audit_purge_slot(day),
            self._instance_id,
            nx=True,
            ex=keys.AUDIT_PURGE_SLOT_TTL_SECONDS,
        )
        if not taken:
            return None
        return await self.purge()

    def start(self) -> None:
        """Check periodically until :meth:`stop`."""
        self._task = asyncio.create_task(self._run(), name="audit-retention")

    async def stop(self) -> None:
        """Cancel the task and wait for it to end."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = FIRST_CHECK_DELAY
        while True:
            await asyncio.sleep(delay)
            delay = CHECK_INTERVAL
            try:
                await self.run_once()
            except Exception:
                # A database or Valkey outage: try again at the next check.
                log.warning("audit log purge failed", exc_info=True)
