"""`voicechat backup verify` and `restore`: decrypt, check every part, then put them back.

Nothing is touched before the whole archive has been decrypted, authenticated and checked
against its manifest into a staging directory: a wrong key, a cut or altered archive, a
missing part or a schema newer than this voicechat is refused first, with one line. Then the
database (pg_restore into a fresh `public` schema, the old one kept aside until it succeeds),
the file objects, and the configuration are restored, in that order.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from voicechat.backup import parts
from voicechat.backup.archive import BackupKey, BackupRefused, OpeningReader
from voicechat.backup.config import ensure_data_dir, env_file_text, write_private
from voicechat.backup.postgres import (
    LibpqTarget,
    database,
    embedded_holder,
    stop_holder,
    tool,
    tool_major,
)
from voicechat.backup.store import BackupStore, StoredBackup
from voicechat.db import load_migrations
from voicechat.db.repositories.backups import PREVIOUS_SCHEMA, BackupQueries
from voicechat.server_keys import load_master_keys
from voicechat.settings import Settings

#: Steps as they finish: (what was done, seconds it took).
StepReport = Callable[[str, float], None]

RESTORED_SETTINGS = "restored-settings.env"


def resolve(store: BackupStore, which: str) -> StoredBackup:
    """The backup `which` names: an id, or `latest`.

    Raises:
        BackupRefused: no such backup (or none at all).
    """
    backups = store.list()
    if not backups:
        raise BackupRefused(f"no backups in {store.description}")
    if which == "latest":
        return backups[-1]
    for backup in backups:
        if backup.id == which:
            return backup
    raise BackupRefused(f"no backup {which} in {store.description}")


@dataclass(slots=True)
class VerifiedBackup:
    """A backup whose every part was authenticated and matched its manifest."""

    manifest: parts.Manifest
    archive_bytes: int
    staging: Path | None
    secrets: dict[str, bytes] = field(default_factory=dict)

    @property
    def header(self) -> parts.BackupHeader:
        """The backup's header."""
        return self.manifest.header

    def staged(self, name: str) -> Path:
        """Where a part was extracted."""
        assert self.staging is not None
        return self.staging / name


def _newest_known_schema() -> int:
    return max(migration.version for migration in load_migrations())


def _check_header(header: parts.BackupHeader, backup: StoredBackup) -> None:
    known = _newest_known_schema()
    if header.schema_version > known:
        raise BackupRefused(
            f"backup {backup.id} has schema {header.schema_version:04d} (voicechat "
            f"{header.voicechat_version}) but this voicechat knows schema {known:04d} at most: "
            f"upgrade voicechat first"
        )
    if header.id != backup.id:
        raise BackupRefused(
            f"backup {backup.id} holds the archive of backup {header.id}: it was renamed"
        )


def open_verified(
    store: BackupStore, backup: StoredBackup, key: BackupKey, staging: Path | None
) -> VerifiedBackup:
    """Decrypt and check a whole backup; with `staging`, extract its parts there.

    Raises:
        BackupRefused: wrong key, truncated or altered archive, missing or unexpected part,
            newer schema.
    """
    reader = OpeningReader(key, store.read(backup.id))
    seen: dict[str, parts.PartRecord] = {}
    secrets: dict[str, bytes] = {}
    header: parts.BackupHeader | None = None
    manifest: parts.Manifest | None = None
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                if manifest is not None:
                    raise BackupRefused(f"backup {backup.id} has data after its manifest")
                if not member.isfile():
                    raise BackupRefused(
                        f"backup {backup.id} holds an unexpected entry {member.name!r}"
                    )
                source = tar.extractfile(member)
                assert source is not None
                if header is None:
                    if member.name != parts.HEADER:
                        raise BackupRefused(f"backup {backup.id} does not start with its header")
                    header = parts.BackupHeader.from_json(source.read())
                    _check_header(header, backup)
                    continue
                if member.name == parts.MANIFEST:
                    manifest = parts.Manifest.from_json(source.read())
                    continue
                if not parts.is_known_part(member.name) or member.name in seen:
                    raise BackupRefused(
                        f"backup {backup.id} holds an unexpected part {member.name!r}"
                    )
                seen[member.name] = _take(source, member.name, staging, secrets)
        reader.drain()
    except (tarfile.TarError, ValueError, KeyError, TypeError) as exc:
        raise BackupRefused(f"backup {backup.id} is not a well-formed archive ({exc})") from None
    if header is None or manifest is None:
        raise BackupRefused(f"backup {backup.id} has no manifest: it is incomplete")
    if manifest.header != header:
        raise BackupRefused(f"backup {backup.id}: its manifest does not match its header")
    for record in manifest.parts:
        got = seen.pop(record.name, None)
        if got is None:
            raise BackupRefused(
                f"backup {backup.id} lacks the part {record.name} its manifest lists"
            )
        if got != record:
            raise BackupRefused(f"backup {backup.id}: part {record.name} fails its checksum")
    if seen:
        raise BackupRefused(
            f"backup {backup.id} holds parts its manifest does not list: {sorted(seen)[0]}"
        )
    for required in (parts.DATABASE, parts.MASTER_KEY, parts.JWT_KEY):
        if not any(record.name == required for record in manifest.parts):
            raise BackupRefused(f"backup {backup.id} lacks its {required} part")
    return VerifiedBackup(manifest, reader.bytes_in, staging, secrets)


_SECRET_PARTS = frozenset(
    {parts.MASTER_KEY, parts.PREVIOUS_MASTER_KEY, parts.JWT_KEY, parts.SETTINGS}
)


def _take(
    source: Any, name: str, staging: Path | None, secrets: dict[str, bytes]
) -> parts.PartRecord:
    digest = hashlib.sha256()
    size = 0
    out = None
    kept = bytearray() if name in _SECRET_PARTS else None
    if staging is not None and kept is None:
        path = staging / name
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        out = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
    try:
        while piece := source.read(1024 * 1024):
            digest.update(piece)
            size += len(piece)
            if out is not None:
                out.write(piece)
            if kept is not None:
                kept += piece
    finally:
        if out is not None:
            out.close()
    if kept is not None:
        secrets[name] = bytes(kept)
    return parts.PartRecord(name, size, digest.hexdigest())


@contextmanager
def staging_dir(settings: Settings, backup_id: str) -> Iterator[Path]:
    """A private directory beside the data (not inside it: it may be what gets replaced)."""
    ensure_data_dir(settings)
    path = settings.data_dir / f".restore-{backup_id}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What `restore` did."""

    backup_id: str
    steps: list[tuple[str, float]]
    health: dict[str, Any]


def restore_backup(
    settings: Settings,
    store: BackupStore,
    backup: StoredBackup,
    key: BackupKey,
    *,
    stop_server: bool = False,
    report: StepReport = lambda step, seconds: None,
) -> RestoreResult:
    """Restore `backup` over the configured data: database, then files, then configuration.

    Raises:
        BackupRefused: the backup does not verify, a server runs on the data (without
            `stop_server`), the configured master key is not the backup's, pg_restore failed
            (the database is then as it was).
    """
    steps: list[tuple[str, float]] = []

    def step(what: str, since: float) -> None:
        seconds = time.monotonic() - since
        steps.append((what, seconds))
        report(what, seconds)

    holder = embedded_holder(settings) if settings.database_url is None else None
    if holder is not None and not stop_server:
        raise BackupRefused(
            f"a voicechat server (pid {holder}) is running on {settings.data_dir}: stop it, "
            f"or pass --stop to have restore stop it"
        )
    with staging_dir(settings, backup.id) as staging:
        started = time.monotonic()
        verified = open_verified(store, backup, key, staging)
        step(
            f"fetched, decrypted and verified backup {backup.id} "
            f"({len(verified.manifest.parts)} parts, {verified.archive_bytes} bytes)",
            started,
        )
        if settings.master_key is not None and not _has_backup_keys(settings, verified):
            raise BackupRefused(
                "VOICECHAT_MASTER_KEY is not the master key of this backup: its files and MFA "
                "secrets would not open; unset it (the backup's key goes into the data dir) or "
                "set it to the backup's (a backup made before a master-key rotation: set "
                "VOICECHAT_MASTER_KEY_PREVIOUS to the key of then, restore, run `voicechat admin "
                "rotate-master-key`)"
            )
        pg_restore = tool("pg_restore")
        if tool_major(pg_restore) < verified.header.pg_dump_major:
            raise BackupRefused(
                f"pg_restore is older than the pg_dump ({verified.header.pg_dump_major}) that made "
                f"backup {backup.id}: install a newer PostgreSQL client"
            )
        if holder is not None:
            started = time.monotonic()
            stop_holder(holder, settings)
            step(f"stopped the running server (pid {holder})", started)
        with database(settings, own=True) as db:
            started = time.monotonic()
            asyncio.run(_restore_database(db.dsn, pg_restore, verified.staged(parts.DATABASE)))
            step(f"restored the database (schema {verified.header.schema_version:04d})", started)
        started = time.monotonic()
        count = _restore_files(settings, verified)
        step(f"restored {count} file objects", started)
        started = time.monotonic()
        written = _restore_config(settings, verified)
        step(f"restored the configuration ({', '.join(written)})", started)
    started = time.monotonic()
    health = run_health_check(settings)
    step(f"health check: {health.get('status', 'unknown')}", started)
    return RestoreResult(backup.id, steps, health)


async def _restore_database(dsn: str, pg_restore: Path, dump: Path) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        queries = BackupQueries(conn)
        others = await queries.other_sessions()
        if others:
            raise BackupRefused(
                f"{others} other sessions are connected to the database (a running voicechat "
                f"server?): stop every server that uses it, then restore"
            )
        if await queries.has_previous_schema():
            raise BackupRefused(
                f"the database still has the schema {PREVIOUS_SCHEMA} of an interrupted "
                f"restore: look at it, drop it (DROP SCHEMA {PREVIOUS_SCHEMA} CASCADE), retry"
            )
        await queries.set_aside_public()
        target = LibpqTarget.of(dsn)
        result = await asyncio.to_thread(
            subprocess.run,
            [
                str(pg_restore),
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                f"--dbname={target.dsn}",
                str(dump),
            ],
            env=target.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            await queries.put_back_previous()
            lines = result.stderr.strip().splitlines()
            raise BackupRefused(
                "pg_restore failed, the database is as it was: "
                + (lines[-1] if lines else "no message")
            )
        await queries.drop_previous()
    finally:
        await conn.close()


def _restore_files(settings: Settings, verified: VerifiedBackup) -> int:
    records = verified.manifest.file_parts
    url = settings.storage_url
    if url is not None and url.startswith("s3://"):
        from voicechat.backup.store import s3_client

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        client = s3_client(settings)
        for record in records:
            key = record.name.removeprefix(parts.FILES_PREFIX)
            client.upload_file(str(verified.staged(record.name)), bucket, prefix + key)
        return len(records)
    root = settings.files_dir
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    for record in records:
        key = record.name.removeprefix(parts.FILES_PREFIX)
        final = root / key
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The staging directory is in the data dir; the files directory may be on another
        # filesystem, where a rename cannot go (shutil.move copies then).
        shutil.move(verified.staged(record.name), final)
    return len(records)


def _has_backup_keys(settings: Settings, verified: VerifiedBackup) -> bool:
    """Whether the configured keyring holds every master key the backup's data may be sealed
    under (its master key, and its previous one if it was made mid-rotation)."""
    configured = load_master_keys(settings)
    held = {configured.current, configured.previous}
    return all(
        base64.b64decode(verified.secrets[name].strip()) in held
        for name in (parts.MASTER_KEY, parts.PREVIOUS_MASTER_KEY)
        if name in verified.secrets
    )


def _restore_config(settings: Settings, verified: VerifiedBackup) -> list[str]:
    written: list[str] = []
    secrets_dir = settings.data_dir / "secrets"
    if settings.master_key is None:
        write_private(secrets_dir / "master.key", verified.secrets[parts.MASTER_KEY])
        written.append("secrets/master.key")
        if parts.PREVIOUS_MASTER_KEY in verified.secrets:
            write_private(
                secrets_dir / "master.key.previous", verified.secrets[parts.PREVIOUS_MASTER_KEY]
            )
            written.append("secrets/master.key.previous")
    if settings.jwt_private_key is None:
        write_private(secrets_dir / "jwt_ed25519.pem", verified.secrets[parts.JWT_KEY])
        written.append("secrets/jwt_ed25519.pem")
    snapshot = json.loads(verified.secrets.get(parts.SETTINGS, b"{}"))
    write_private(settings.data_dir / RESTORED_SETTINGS, env_file_text(snapshot).encode())
    written.append(RESTORED_SETTINGS)
    return written


def run_health_check(settings: Settings) -> dict[str, Any]:
    """Start the app on the restored data (embedded servers included) and ask its /health."""
    from pydantic import SecretStr

    from voicechat.embedded import EmbeddedError, EmbeddedPostgres, EmbeddedValkey

    resolved: dict[str, Any] = {}
    started: list[Any] = []
    try:
        if settings.database_url is None:
            postgres = EmbeddedPostgres(settings.data_dir / "postgres")
            resolved["database_url"] = SecretStr(postgres.start())
            started.append(postgres)
        if settings.valkey_url is None:
            valkey = EmbeddedValkey(settings.data_dir / "valkey")
            resolved["valkey_url"] = SecretStr(valkey.start())
            started.append(valkey)
        return asyncio.run(_ask_health(settings.model_copy(update=resolved)))
    except EmbeddedError as exc:
        return {"status": "down", "detail": exc.message}
    finally:
        for server in reversed(started):
            server.stop()


async def _ask_health(settings: Settings) -> dict[str, Any]:
    import httpx

    from voicechat.api import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://restore") as http:
            body: dict[str, Any] = (await http.get("/health")).json()
    return body
