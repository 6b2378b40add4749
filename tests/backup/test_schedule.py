"""The schedule: cron times, one instance per scheduled time, the outcome in /health and
/metrics."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from tests.backup.community import SECRET_MESSAGE
from tests.utils.auth import api_user
from voicechat.api import create_app
from voicechat.backup.archive import BackupRefused
from voicechat.backup.schedule import BackupScheduler, next_run
from voicechat.backup.store import LocalStore
from voicechat.cache import keys
from voicechat.settings import Settings, SettingsError, load_settings


def test_next_run_follows_the_cron_schedule() -> None:
    at = datetime(2026, 12, 3, 5, 0, tzinfo=UTC)
    assert next_run("0 3 * * *", at) == datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
    assert next_run("*/15 * * * *", at) == datetime(2026, 12, 3, 5, 15, tzinfo=UTC)
    with pytest.raises(SettingsError, match="VOICECHAT_BACKUP_SCHEDULE"):
        load_settings(backup_schedule="0 25 * * *")


async def test_one_instance_makes_each_scheduled_backup(
    settings_factory: Callable[..., Settings], clean_valkey: str
) -> None:
    made: list[str] = []

    def make(settings: Settings) -> str:
        made.append("backup")
        return "20261203T030000Z"

    settings = settings_factory(valkey_url=clean_valkey)
    cache = Redis.from_url(clean_valkey)
    try:
        schedulers = [
            BackupScheduler(settings, cache, instance_id=f"api-{n}", make_backup=make)
            for n in range(4)
        ]
        due = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)
        fired = await asyncio.gather(*(s.fire(due) for s in schedulers))
        assert sorted(fired) == [False, False, False, True]
        assert made == ["backup"]
        # The next scheduled time is taken afresh.
        fired = await asyncio.gather(*(s.fire(due + timedelta(days=1)) for s in schedulers))
        assert fired.count(True) == 1
        assert made == ["backup", "backup"]
    finally:
        await cache.aclose()


async def test_the_running_schedulers_fire_once_at_the_scheduled_time(
    settings_factory: Callable[..., Settings], clean_valkey: str
) -> None:
    made: list[str] = []

    def make(settings: Settings) -> str:
        made.append("backup")
        return "20261203T030100Z"

    # A clock that runs from 0.3 s before a minute: "* * * * *" is due almost at once.
    start, base = time.monotonic(), datetime(2026, 12, 3, 3, 0, 59, 700000, tzinfo=UTC)

    def clock() -> datetime:
        return base + timedelta(seconds=time.monotonic() - start)

    settings = settings_factory(valkey_url=clean_valkey, backup_schedule="* * * * *")
    cache = Redis.from_url(clean_valkey)
    schedulers = [
        BackupScheduler(settings, cache, instance_id=f"api-{n}", make_backup=make, clock=clock)
        for n in range(3)
    ]
    try:
        for scheduler in schedulers:
            scheduler.start()
        # Past the scheduled time and the backup (the next one is a minute away).
        await asyncio.sleep(1.5)
        assert await cache.exists(keys.backup_slot("20261203T030100Z"))
    finally:
        for scheduler in schedulers:
            await scheduler.stop()
        await cache.aclose()
    assert made == ["backup"]


async def test_health_and_metrics_show_the_last_backup(
    settings_factory: Callable[..., Settings],
    database_url: str,
    clean_valkey: str,
    tmp_path: Path,
) -> None:
    settings = settings_factory(
        database_url=database_url,
        valkey_url=clean_valkey,
        backup_url=f"file://{tmp_path / 'backups'}",
        backup_key=base64.b64encode(os.urandom(32)).decode(),
    )
    app = create_app(settings)
    cache = Redis.from_url(clean_valkey)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        health = (await http.get("/health")).json()
        assert health["components"]["backup"] == {
            "status": "ok",
            "latency_ms": health["components"]["backup"]["latency_ms"],
            "detail": "no backup yet",
        }
        alice = await api_user(http, "alice")
        channel = await alice.channel(name="general")
        await alice.send(channel["id"], SECRET_MESSAGE)

        scheduler = BackupScheduler(settings, cache, instance_id="api-1")
        assert await scheduler.fire(datetime.now(UTC))
        (made,) = LocalStore(tmp_path / "backups").list()
        backup = (await http.get("/health")).json()["components"]["backup"]
        assert backup["status"] == "ok"
        assert backup["detail"] == f"last {made.id}"
        metrics = (await http.get("/metrics")).text
        assert "voicechat_backup_last_success_timestamp_seconds 0.0" not in metrics
        assert 'voicechat_component_up{component="backup"} 1.0' in metrics

        def fail(_: Settings) -> str:
            raise BackupRefused("pg_dump failed: connection refused")

        failing = BackupScheduler(settings, cache, instance_id="api-2", make_backup=fail)
        assert await failing.fire(datetime.now(UTC) + timedelta(minutes=1))
        health = (await http.get("/health")).json()
        assert health["status"] == "degraded"
        backup = health["components"]["backup"]
        assert backup["status"] == "down"
        assert "failed" in backup["detail"]
        assert backup["detail"].endswith("pg_dump failed: connection refused")
        assert (await http.get("/health/ready")).status_code == 200

        # A success, but two days ago.
        await cache.delete(keys.backup_status())
        old = (datetime.now(UTC) - timedelta(days=2)).isoformat()
        await cache.hset(
            keys.backup_status(), mapping={"last_success_at": old, "last_success_id": made.id}
        )
        backup = (await http.get("/health")).json()["components"]["backup"]
        assert backup["status"] == "down"
        assert "older than a day" in backup["detail"]

        # A scheduler that has run for over a day without making one.
        await cache.delete(keys.backup_status())
        await cache.hset(keys.backup_status(), "first_scheduled_at", old)
        backup = (await http.get("/health")).json()["components"]["backup"]
        assert backup["status"] == "down"
        assert backup["detail"].startswith("no backup since the scheduler started at")
    await cache.aclose()
