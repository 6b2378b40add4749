"""Which dependency an exception says is down: one place that turns a failed call to
PostgreSQL, Valkey or the object store into the 503 `<dependency>_unavailable` a client sees.

The HTTP API maps these through its exception handlers (`voicechat.api.errors`), the gateway
through :func:`outage_of` (a socket it cannot serve closes with 1013). Errors raised by our own
code for an unreachable dependency (`VoiceUnavailable`, the SSO provider's, the S3 backend's
`StorageUnavailable`) are already `ServiceUnavailable`; this module recognises the drivers' own.
See docs/reliability.md, "When a dependency fails".
"""

from __future__ import annotations

import logging
import time
from types import TracebackType

import asyncpg
from redis import exceptions as redis_errors

from voicechat.error_codes import ErrorCode
from voicechat.errors import ServiceUnavailable

log = logging.getLogger(__name__)

#: `Retry-After` of a 503: long enough not to hammer a recovering dependency, short enough that
#: clients come back soon after it does.
RETRY_AFTER_SECONDS = 5

#: At most one warning per dependency in this many seconds: an outage fails every request.
_LOG_EVERY_SECONDS = 10.0


class DatabaseUnavailable(ServiceUnavailable):
    """PostgreSQL refused, dropped or did not answer within its timeouts."""

    code = ErrorCode.DATABASE_UNAVAILABLE

    def __init__(self, message: str = "the database is unavailable; try again shortly") -> None:
        super().__init__(message)


class ValkeyUnavailable(ServiceUnavailable):
    """Valkey refused, dropped or did not answer in time, or its pool stayed busy."""

    code = ErrorCode.VALKEY_UNAVAILABLE

    def __init__(self, message: str = "the cache is unavailable; try again shortly") -> None:
        super().__init__(message)


class StorageUnavailable(ServiceUnavailable):
    """The object store cannot be reached, did not answer in time, failed or refused us."""

    code = ErrorCode.STORAGE_UNAVAILABLE

    def __init__(self, message: str = "file storage is unavailable; try again shortly") -> None:
        super().__init__(message)


#: The drivers' exception classes that may mean a dependency is down (the API registers a
#: handler for each; :func:`outage_of` decides). `TimeoutError` and `OSError` count only when
#: raised inside a driver (asyncpg's command and connect timeouts are plain `TimeoutError`s).
OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.InterfaceError,
    TimeoutError,
    OSError,
)

_last_logged: dict[str, float] = {}


def outage_of(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 that `exc` stands for, or None when it says nothing about a dependency."""
    if isinstance(exc, ServiceUnavailable):
        return exc
    outage: ServiceUnavailable | None = None
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
        outage = ValkeyUnavailable()
    elif isinstance(exc, redis_errors.ReadOnlyError):
        outage = ValkeyUnavailable()  # a replica mid-failover
    elif isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.exceptions.OperatorInterventionError
        | asyncpg.exceptions.InsufficientResourcesError,
    ):
        outage = DatabaseUnavailable()
    elif isinstance(exc, asyncpg.InterfaceError):
        # Only a connection or pool that closed under us; other interface errors are bugs.
        if "closed" in str(exc) or "closing" in str(exc):
            outage = DatabaseUnavailable()
    elif isinstance(exc, OSError) or _is_botocore(exc):
        outage = _by_origin(exc)
    if outage is not None:
        _warn(outage, exc)
    return outage


def _by_origin(exc: BaseException) -> ServiceUnavailable | None:
    if _is_botocore(exc):
        return StorageUnavailable()
    modules = _modules(exc.__traceback__)
    if any(name.startswith("asyncpg") for name in modules):
        return DatabaseUnavailable()
    if any(name.startswith("redis") for name in modules):
        return ValkeyUnavailable()
    if any(name.startswith(("botocore", "urllib3", "voicechat.storage")) for name in modules):
        return StorageUnavailable()
    return None


def _is_botocore(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("botocore")


def _modules(tb: TracebackType | None) -> list[str]:
    names = []
    while tb is not None:
        names.append(str(tb.tb_frame.f_globals.get("__name__", "")))
        tb = tb.tb_next
    return names


def _warn(outage: ServiceUnavailable, exc: BaseException) -> None:
    now = time.monotonic()
    if now - _last_logged.get(outage.code, -_LOG_EVERY_SECONDS) >= _LOG_EVERY_SECONDS:
        _last_logged[outage.code] = now
        # The class names the cause; a driver's message may hold a DSN or a password.
        log.warning("%s (%s)", outage.code, type(exc).__name__)
