"""Health of each component an API instance depends on.

Each check is bounded by a short timeout so a dead dependency reports `down` quickly
instead of hanging the probe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from voicechat.api import metrics
from voicechat.api.resources import Resources
from voicechat.backup.schedule import read_status
from voicechat.db.pool import ping
from voicechat.errors import VoicechatError

CHECK_TIMEOUT_SECONDS = 2.0

#: What every request needs. Without storage or voice an instance still serves chat, so a
#: load balancer must not pull it for those (`GET /health/ready`).
REQUIRED_TO_SERVE = ("postgres", "valkey", "native")


class ComponentHealth(BaseModel):
    """The state of one component."""

    status: Literal["ok", "down"]
    latency_ms: float | None = None
    detail: str | None = None


class Health(BaseModel):
    """`GET /health`: `ok` only when every component is."""

    status: Literal["ok", "degraded"]
    version: str
    components: dict[str, ComponentHealth]

    @property
    def ready(self) -> bool:
        """Whether this instance can serve requests (what `REQUIRED_TO_SERVE` names is up)."""
        return all(self.components[name].status == "ok" for name in REQUIRED_TO_SERVE)


async def _check(probe: Callable[[], Awaitable[Any]]) -> ComponentHealth:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(probe(), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return ComponentHealth(status="down", detail=f"no answer within {CHECK_TIMEOUT_SECONDS}s")
    except VoicechatError as exc:
        # Our own errors carry a message meant for people ("no voice node is running").
        return ComponentHealth(status="down", detail=exc.message)
    except Exception as exc:
        # The class name tells an operator enough (ConnectionError, ...); messages may hold DSNs.
        return ComponentHealth(status="down", detail=type(exc).__name__)
    return ComponentHealth(
        status="ok",
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
        detail=detail if isinstance(detail, str) else None,
    )


def _timestamp(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else 0.0


async def check_health(resources: Resources) -> Health:
    """Probe PostgreSQL, Valkey, storage, the native module and voice concurrently.

    Voice is the `sfu` component when the SFU runs in this process, `voice` (live voice nodes)
    in remote mode.
    """
    from voicechat import __version__, _native

    async def postgres() -> None:
        async with resources.db.acquire(timeout=CHECK_TIMEOUT_SECONDS) as conn:
            await ping(conn)

    async def valkey() -> None:
        await resources.cache.ping()

    async def storage() -> None:
        # The configured backend: the directory is writable, or the S3 bucket answers HEAD.
        await resources.storage.probe()

    async def native() -> None:
        if _native.__version__ != __version__:
            raise RuntimeError("native module version mismatch")

    async def voice() -> str | None:
        # In process: answered by the media thread, so a stuck or dead one shows as a timeout
        # or an error. Remote: the voice nodes whose heartbeat is alive.
        return await resources.voice.plane.probe()

    async def backup() -> str:
        # What the scheduler recorded (docs/backup.md): degraded after a failure or a day
        # without a backup; present only where backups are configured.
        status = await read_status(resources.cache)
        metrics.BACKUP_LAST_SUCCESS.set(_timestamp(status.last_success_at))
        metrics.BACKUP_LAST_FAILURE.set(_timestamp(status.last_failure_at))
        problem = status.problem(datetime.now(UTC))
        if problem is not None:
            raise VoicechatError(problem)
        return f"last {status.last_success_id}" if status.last_success_id else "no backup yet"

    names: tuple[str, ...] = (
        "postgres",
        "valkey",
        "storage",
        "native",
        resources.voice.plane.component,
    )
    probes: tuple[Callable[[], Awaitable[Any]], ...] = (postgres, valkey, storage, native, voice)
    if resources.settings.backup_url is not None:
        names, probes = (*names, "backup"), (*probes, backup)
    results = await asyncio.gather(*(_check(p) for p in probes))
    components = dict(zip(names, results, strict=True))
    for name, component in components.items():
        metrics.COMPONENT_UP.labels(name).set(1 if component.status == "ok" else 0)
    healthy = all(c.status == "ok" for c in components.values())
    return Health(
        status="ok" if healthy else "degraded", version=__version__, components=components
    )
