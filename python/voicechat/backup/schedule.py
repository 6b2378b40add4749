"""Scheduled backups: at each time of `VOICECHAT_BACKUP_SCHEDULE` (cron syntax, UTC) one
instance makes a backup and prunes, however many instances run the scheduler.

Every `voicechat serve` process (and `voicechat backup run-scheduler`) runs one
:class:`BackupScheduler`. At a scheduled time each computes the same slot (the time itself);
the first to `SET NX` the slot's key in Valkey makes the backup, the others skip it. The outcome
goes into a Valkey hash every instance's `/health` and `/metrics` read
(:func:`read_status`): `/health` is degraded when the last backup failed or is more than a day
old.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

from voicechat.cache import keys
from voicechat.cache.client import Cache
from voicechat.settings import Settings

log = logging.getLogger(__name__)

#: A backup older than this makes /health degraded (SPEC §8: "older than a day").
STALE_AFTER = timedelta(hours=25)

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def next_run(schedule: str, after: datetime) -> datetime:
    """The first scheduled time strictly after `after` (UTC)."""
    following: datetime = croniter(schedule, after.astimezone(UTC)).get_next(datetime)
    return following.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class BackupStatus:
    """The last scheduled backup's outcome, as every instance reads it."""

    last_success_at: datetime | None
    last_success_id: str | None
    last_failure_at: datetime | None
    last_error: str | None
    #: When a scheduler first ran against this Valkey: a day after it, "no backup yet" is a
    #: problem too (a scheduler that never manages one must not look healthy forever).
    first_scheduled_at: datetime | None = None

    def problem(self, now: datetime) -> str | None:
        """Why /health is degraded, or None when the backups are fine."""
        if (
            self.last_success_at is None
            and self.last_failure_at is None
            and self.first_scheduled_at is not None
            and now - self.first_scheduled_at > STALE_AFTER
        ):
            return (
                f"no backup since the scheduler started at "
                f"{self.first_scheduled_at:%Y-%m-%dT%H:%MZ}"
            )
        if self.last_failure_at is not None and (
            self.last_success_at is None or self.last_failure_at > self.last_success_at
        ):
            return f"the last backup failed at {self.last_failure_at:%Y-%m-%dT%H:%MZ}: " + (
                self.last_error or "no message"
            )
        if self.last_success_at is not None and now - self.last_success_at > STALE_AFTER:
            return f"the last backup ({self.last_success_id}) is older than a day"
        return None


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return datetime.fromisoformat(text)


def _text(value: Any) -> str | None:
    if not value:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


async def read_status(cache: Cache) -> BackupStatus:
    """The outcome recorded by the last scheduled backup (all None before the first)."""
    raw: dict[Any, Any] = await cache.hgetall(keys.backup_status())
    fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
    return BackupStatus(
        last_success_at=_time(fields.get("last_success_at")),
        last_success_id=_text(fields.get("last_success_id")),
        last_failure_at=_time(fields.get("last_failure_at")),
        last_error=_text(fields.get("last_error")),
        first_scheduled_at=_time(fields.get("first_scheduled_at")),
    )


class BackupScheduler:
    """Runs `make_backup` at each scheduled time, in the one instance that takes the slot."""

    def __init__(
        self,
        settings: Settings,
        cache: Cache,
        *,
        instance_id: str,
        make_backup: Callable[[Settings], str] | None = None,
        clock: Clock = _utc_now,
    ) -> None:
        self._settings = settings
        self._cache = cache
        self._instance_id = instance_id
        self._make_backup = make_backup if make_backup is not None else _create_and_prune
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run in the background until :meth:`stop`."""
        self._task = asyncio.create_task(self._run(), name="backup-scheduler")

    async def stop(self) -> None:
        """Cancel the background loop (a backup under way in its thread finishes on its own)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        try:
            await self._cache.hsetnx(
                keys.backup_status(), "first_scheduled_at", self._clock().isoformat()
            )
        except Exception:
            log.warning("could not record the backup scheduler's start in Valkey", exc_info=True)
        while True:
            due = next_run(self._settings.backup_schedule, self._clock())
            # Sleep in steps of at most a minute: a clock that jumps is followed soon.
            while (wait := (due - self._clock()).total_seconds()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(min(wait, 60.0))
            try:
                await self.fire(due)
            except Exception:
                log.exception("scheduled backup at %s could not run", due.isoformat())

    async def fire(self, due: datetime) -> bool:
        """Make the backup of scheduled time `due` unless another instance took it; returns
        whether this instance made (or tried to make) it."""
        slot = due.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        taken = await self._cache.set(
            keys.backup_slot(slot),
            self._instance_id,
            nx=True,
            ex=keys.BACKUP_SLOT_TTL_SECONDS,
        )
        if not taken:
            return False
        log.info("scheduled backup of %s: starting", slot)
        try:
            backup_id = await asyncio.to_thread(self._make_backup, self._settings)
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.error("scheduled backup of %s failed: %s", slot, message)
            await self._cache.hset(
                keys.backup_status(),
                mapping={"last_failure_at": self._clock().isoformat(), "last_error": message},
            )
            return True
        log.info("scheduled backup of %s: made %s", slot, backup_id)
        await self._cache.hset(
            keys.backup_status(),
            mapping={"last_success_at": self._clock().isoformat(), "last_success_id": backup_id},
        )
        return True


def _create_and_prune(settings: Settings) -> str:
    from voicechat.backup.create import create_backup
    from voicechat.backup.store import open_store, prune

    summary = create_backup(settings)
    prune(open_store(settings), settings.backup_retention_days, _utc_now())
    return summary.id
