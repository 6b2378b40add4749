"""What a running API instance holds: settings, the database pool, Valkey, local state.

Opened once in the app's lifespan and closed in reverse order.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from uuid import uuid4

from voicechat.api import metrics
from voicechat.audit_retention import AuditRetention
from voicechat.auth.accounts import AccountService
from voicechat.auth.service import AuthService
from voicechat.auth.sso import SsoService
from voicechat.backup.schedule import BackupScheduler
from voicechat.cache import Cache, create_cache
from voicechat.db import apply_migrations, create_pool
from voicechat.db.pool import Pool, dedicated_connection
from voicechat.events import EventBus
from voicechat.gateway import Gateway
from voicechat.gateway.voice_signaling import VoiceService
from voicechat.key_rotation import warn_unopenable
from voicechat.mail import MailSender, SmtpTarget
from voicechat.mail.outbox import MailMetrics
from voicechat.server_keys import ServerKeys, load_server_keys
from voicechat.settings import Settings
from voicechat.storage import FileStorage, open_storage
from voicechat.storage.sweeper import UploadSweeper

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Resources:
    """Shared handles of one API instance."""

    settings: Settings
    keys: ServerKeys
    db: Pool
    cache: Cache
    auth: AuthService
    events: EventBus
    storage: FileStorage
    gateway: Gateway
    voice: VoiceService
    sweeper: UploadSweeper
    accounts: AccountService
    sso: SsoService | None = None
    instance_id: str = field(default_factory=lambda: uuid4().hex)


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    """Connect to PostgreSQL and Valkey, migrate the schema, prepare local storage.

    The settings must name both servers by now: the CLI starts embedded ones and fills them
    in before the app is built.
    """
    if settings.database_url is None or settings.valkey_url is None:
        raise RuntimeError("the API needs VOICECHAT_DATABASE_URL and VOICECHAT_VALKEY_URL resolved")
    server_keys = load_server_keys(settings)
    storage = await open_storage(settings, server_keys.master_keys)
    pool = await create_pool(
        settings.database_url.get_secret_value(),
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        connect_timeout=settings.db_connect_timeout,
        acquire_timeout=settings.db_acquire_timeout,
        command_timeout=settings.db_command_timeout,
    )
    try:
        # Not under the pool's statement timeout: a migration may wait for another instance's.
        async with dedicated_connection(
            settings.database_url.get_secret_value(), connect_timeout=settings.db_connect_timeout
        ) as conn:
            applied = await apply_migrations(conn)
            # Values sealed under a master key not configured are logged, by kind and key id.
            await warn_unopenable(conn, server_keys.master_keys)
        for migration in applied:
            log.info("schema migrated to %04d_%s", migration.version, migration.name)
        cache = create_cache(
            settings.valkey_url.get_secret_value(),
            max_connections=settings.valkey_pool_size,
            pool_timeout=settings.valkey_pool_timeout,
            timeout=settings.valkey_timeout,
        )
        try:
            auth = AuthService(settings, server_keys, pool, cache)
            await auth.start()
            # Providers are discovered on first use: one that is down must not stop start-up.
            sso = SsoService(settings, pool, cache, auth) if settings.oidc_providers else None
            events = EventBus(cache)
            instance_id = uuid4().hex
            gateway = Gateway(
                db=pool, cache=cache, auth=auth, events=events, instance_id=instance_id
            )
            await gateway.start()
            sweeper = UploadSweeper(pool, storage, timedelta(hours=settings.upload_retention_hours))
            audit_retention = AuditRetention(
                pool, cache, settings.audit_retention_days, instance_id=instance_id
            )
            voice = VoiceService(settings, pool, cache, gateway)
            await voice.start()
            # Scheduled backups (docs/backup.md): every instance runs the scheduler, one takes
            # each scheduled time (a Valkey SET NX).
            scheduler = (
                BackupScheduler(settings, cache, instance_id=instance_id)
                if settings.backup_url is not None and settings.backup_key is not None
                else None
            )
            mail = MailSender(
                pool,
                SmtpTarget.from_url(settings.smtp_url.get_secret_value())
                if settings.smtp_url is not None
                else None,
                sender=settings.mail_from,
                timeout=settings.smtp_timeout,
                retry_max_seconds=settings.mail_retry_max_seconds,
                metrics=MailMetrics(
                    sent=metrics.MAIL_SENT.inc,
                    failed=metrics.MAIL_SEND_FAILURES.inc,
                    dropped=metrics.MAIL_DROPPED.inc,
                    pending=metrics.MAIL_PENDING.set,
                ),
            )
            accounts = AccountService(settings, pool, cache, auth, storage, mail)
            await accounts.start()
            try:
                sweeper.start()
                audit_retention.start()
                if scheduler is not None:
                    scheduler.start()
                yield Resources(
                    settings=settings,
                    keys=server_keys,
                    db=pool,
                    cache=cache,
                    auth=auth,
                    events=events,
                    storage=storage,
                    gateway=gateway,
                    voice=voice,
                    sweeper=sweeper,
                    accounts=accounts,
                    sso=sso,
                    instance_id=instance_id,
                )
            finally:
                if scheduler is not None:
                    await scheduler.stop()
                await accounts.stop()
                await audit_retention.stop()
                await sweeper.stop()
                await voice.stop()
                await gateway.stop()
                await auth.stop()
                if sso is not None:
                    await sso.aclose()
        finally:
            await cache.aclose()
    finally:
        await pool.close()
        await storage.aclose()
