"""Deletes uploads nobody can use any more.

Attachments go with their message or channel at once (the routes delete them); what is left is
what never got used: a channel upload never attached to a message, and a channel-less upload
(an avatar candidate) that is nobody's current avatar. Both are deleted once older than
`VOICECHAT_UPLOAD_RETENTION_HOURS`. Every API instance sweeps; `FOR UPDATE SKIP LOCKED` keeps
them from doing the same rows twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from voicechat.db.pool import Pool
from voicechat.db.repositories.files import FileRepository
from voicechat.storage.service import FileStorage

log = logging.getLogger(__name__)

#: Seconds between sweeps; the first one runs shortly after start-up.
SWEEP_INTERVAL = 15 * 60.0
FIRST_SWEEP_DELAY = 30.0
BATCH = 500


class UploadSweeper:
    """A background task deleting abandoned uploads, rows first, then objects."""

    def __init__(self, pool: Pool, storage: FileStorage, retention: timedelta) -> None:
        self._pool = pool
        self._storage = storage
        self._retention = retention
        self._task: asyncio.Task[None] | None = None

    async def sweep(self) -> int:
        """Delete every abandoned upload older than the retention now; returns how many."""
        removed = 0
        while True:
            async with self._pool.acquire() as conn:
                keys = await FileRepository(conn).remove_abandoned(self._retention, BATCH)
            await self._storage.discard(keys)
            removed += len(keys)
            if len(keys) < BATCH:
                break
        if removed:
            log.info("removed %d abandoned uploads", removed)
        return removed

    def start(self) -> None:
        """Sweep periodically until `stop()`."""
        self._task = asyncio.create_task(self._run(), name="upload-sweeper")

    async def stop(self) -> None:
        """Cancel the periodic sweep."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = FIRST_SWEEP_DELAY
        while True:
            await asyncio.sleep(delay)
            delay = SWEEP_INTERVAL
            try:
                await self.sweep()
            except Exception:
                # A database or store outage: try again next time.
                log.warning("upload sweep failed", exc_info=True)
