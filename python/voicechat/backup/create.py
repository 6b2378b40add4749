"""`voicechat backup create`: one consistent snapshot of database, files and configuration.

Consistency: a REPEATABLE READ transaction exports its snapshot; `pg_dump --snapshot` dumps
exactly that state, and the list of file objects is read in the same transaction, so the
archive holds the objects of precisely the rows it holds. Objects are copied as stored (already
sealed under their own keys), never decrypted.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import tarfile
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.hazmat.primitives import serialization

from voicechat import __version__
from voicechat.backup import parts
from voicechat.backup.archive import BackupKey, BackupRefused, SealingWriter
from voicechat.backup.config import ensure_data_dir, is_embedded, settings_snapshot
from voicechat.backup.postgres import Database, LibpqTarget, database, require_tool_not_older, tool
from voicechat.backup.store import BackupStore, new_backup_id, open_store, s3_client
from voicechat.db import schema_version
from voicechat.db.repositories.backups import BackupQueries
from voicechat.server_keys import ServerKeys, load_server_keys
from voicechat.settings import Settings

#: Progress reports: (what, detail) as the backup goes.
Progress = Callable[[str, str], None]

READ_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class BackupSummary:
    """What `create` made (the `--json` output)."""

    id: str
    location: str
    created_at: str
    size_bytes: int
    database_bytes: int
    files: int
    files_bytes: int
    parts: int
    schema_version: int
    voicechat_version: str
    seconds: float
    missing_objects: list[str]


def backup_key(settings: Settings) -> BackupKey:
    """The configured backup key.

    Raises:
        BackupRefused: none is configured.
    """
    if settings.backup_key is None:
        raise BackupRefused(
            "VOICECHAT_BACKUP_KEY is not set (base64 of 32 random bytes, or a passphrase); "
            "keep it apart from the backups"
        )
    try:
        return BackupKey.parse(settings.backup_key.get_secret_value())
    except ValueError as exc:
        raise BackupRefused(f"VOICECHAT_BACKUP_KEY: {exc}") from None


@dataclass(frozen=True, slots=True)
class _Dump:
    path: Path
    schema_version: int
    postgres_major: int
    pg_dump_major: int
    object_keys: list[str]


async def _dump(db: Database, path: Path) -> _Dump:
    pg_dump = tool("pg_dump")
    conn = await asyncpg.connect(db.dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            queries = BackupQueries(conn)
            server = await queries.server_version_num()
            dump_major = require_tool_not_older(pg_dump, server)
            version = await schema_version(conn)
            if version is None:
                raise BackupRefused("the database has no voicechat schema yet: nothing to back up")
            snapshot = await queries.export_snapshot()
            keys = await queries.stored_object_keys()
            target = LibpqTarget.of(db.dsn)
            # The exporting transaction stays open until pg_dump is done with the snapshot.
            process = await asyncio.create_subprocess_exec(
                str(pg_dump),
                "--format=custom",
                f"--snapshot={snapshot}",
                f"--file={path}",
                f"--dbname={target.dsn}",
                env=target.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, stderr = await process.communicate()
            if process.returncode != 0:
                reason = stderr.decode(errors="replace").strip().splitlines()
                raise BackupRefused(f"pg_dump failed: {reason[-1] if reason else 'no message'}")
    finally:
        await conn.close()
    return _Dump(path, version, server // 10000, dump_major, keys)


class _HashingReader:
    """Reads a file object for tarfile while hashing what goes by."""

    def __init__(self, source: Any) -> None:
        self._source = source
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._source.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data


class _ObjectSource:
    """The storage's objects as stored: their sizes, and a reader for each."""

    def __init__(self, settings: Settings, keys: list[str]) -> None:
        self._keys = keys
        self._s3: Any = None
        url = settings.storage_url
        if url is not None and url.startswith("s3://"):
            bucket, _, prefix = url.removeprefix("s3://").partition("/")
            self._bucket = bucket
            self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
            self._s3 = s3_client(settings)
            self.kind = "s3"
        else:
            self._root = settings.files_dir
            self.kind = "local"

    def sizes(self) -> dict[str, int]:
        """Size of every wanted object that exists."""
        wanted = set(self._keys)
        if self._s3 is None:
            found: dict[str, int] = {}
            for key in self._keys:
                path = self._root / key
                if path.is_file():
                    found[key] = path.stat().st_size
            return found
        found = {}
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix):
            for item in page.get("Contents", []):
                key = item["Key"].removeprefix(self._prefix)
                if key in wanted:
                    found[key] = item["Size"]
        return found

    def open(self, key: str) -> Any:
        """A readable file of the object."""
        if self._s3 is None:
            return (self._root / key).open("rb")
        return self._s3.get_object(Bucket=self._bucket, Key=self._prefix + key)["Body"]


def _keys_part(keys: ServerKeys) -> tuple[bytes, bytes]:
    master = base64.b64encode(keys.master_key)
    pem = keys.jwt_private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return master, pem


def _add(tar: tarfile.TarFile, name: str, size: int, source: Any) -> parts.PartRecord:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(time.time())
    reader = _HashingReader(source)
    tar.addfile(info, reader)
    return parts.PartRecord(name, reader.size, reader.digest.hexdigest())


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> parts.PartRecord:
    return _add(tar, name, len(data), io.BytesIO(data))


def create_backup(
    settings: Settings,
    *,
    progress: Progress = lambda what, detail: None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BackupSummary:
    """Make one backup into `VOICECHAT_BACKUP_URL`.

    Raises:
        BackupRefused: missing settings, pg_dump too old or failing, storage unreachable.
    """
    started = time.monotonic()
    key = backup_key(settings)
    store = open_store(settings)
    # The store answers first (listing it picks a free id): a wrong URL or bucket is refused
    # before anything is made.
    created_at = now()
    backup_id = new_backup_id(store, created_at)
    server_keys = load_server_keys(settings)
    if key.is_raw and key.secret == server_keys.master_key:
        raise BackupRefused("VOICECHAT_BACKUP_KEY must not be the master key")
    ensure_data_dir(settings)
    with ExitStack() as stack:
        staging = Path(
            stack.enter_context(
                tempfile.TemporaryDirectory(prefix=".backup-", dir=settings.data_dir)
            )
        )
        with database(settings) as db:
            dump = asyncio.run(_dump(db, staging / "database.pgdump"))
        dump_bytes = dump.path.stat().st_size
        progress("database", f"{_size(dump_bytes)} dumped (schema {dump.schema_version:04d})")
        source = _ObjectSource(settings, dump.object_keys)
        header = parts.BackupHeader(
            id=backup_id,
            created_at=created_at.isoformat(),
            voicechat_version=__version__,
            schema_version=dump.schema_version,
            postgres_major=dump.postgres_major,
            pg_dump_major=dump.pg_dump_major,
            database="embedded" if is_embedded(settings, "database_url") else "external",
            storage=source.kind,
        )
        manifest = parts.Manifest(header)
        sizes = source.sizes()
        manifest.missing_objects = [k for k in dump.object_keys if k not in sizes]
        size = _write_archive(
            store, key, backup_id, manifest, dump, source, sizes, settings, server_keys, progress
        )
    files_bytes = sum(part.size for part in manifest.file_parts)
    return BackupSummary(
        id=backup_id,
        location=store.description,
        created_at=header.created_at,
        size_bytes=size,
        database_bytes=dump_bytes,
        files=len(manifest.file_parts),
        files_bytes=files_bytes,
        parts=len(manifest.parts),
        schema_version=dump.schema_version,
        voicechat_version=__version__,
        seconds=round(time.monotonic() - started, 3),
        missing_objects=manifest.missing_objects,
    )


def _write_archive(
    store: BackupStore,
    key: BackupKey,
    backup_id: str,
    manifest: parts.Manifest,
    dump: _Dump,
    source: _ObjectSource,
    sizes: dict[str, int],
    settings: Settings,
    server_keys: ServerKeys,
    progress: Progress,
) -> int:
    sink = store.create(backup_id)
    try:
        writer = SealingWriter(key, sink.write)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, parts.HEADER, manifest.header.to_json())
            with dump.path.open("rb") as dumped:
                manifest.parts.append(_add(tar, parts.DATABASE, dump.path.stat().st_size, dumped))
            snapshot = json.dumps(settings_snapshot(settings), indent=2).encode()
            manifest.parts.append(_add_bytes(tar, parts.SETTINGS, snapshot))
            master, pem = _keys_part(server_keys)
            manifest.parts.append(_add_bytes(tar, parts.MASTER_KEY, master))
            previous = server_keys.master_keys.previous
            if previous is not None:
                # Mid-rotation, some rows are still sealed under it.
                manifest.parts.append(
                    _add_bytes(tar, parts.PREVIOUS_MASTER_KEY, base64.b64encode(previous))
                )
            manifest.parts.append(_add_bytes(tar, parts.JWT_KEY, pem))
            copied, total = 0, sum(sizes.values())
            for index, object_key in enumerate(k for k in dump.object_keys if k in sizes):
                body = source.open(object_key)
                try:
                    record = _add(tar, parts.FILES_PREFIX + object_key, sizes[object_key], body)
                finally:
                    body.close()
                manifest.parts.append(record)
                copied += record.size
                progress(
                    "files", f"{index + 1}/{len(sizes)} objects, {_size(copied)} of {_size(total)}"
                )
            _add_bytes(tar, parts.MANIFEST, manifest.to_json())
        writer.finish()
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    progress("archive", f"{_size(writer.bytes_out)} written to {store.description}")
    return writer.bytes_out


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
