"""Where backups are kept: a directory (`file:///dir`) or an S3 bucket (`s3://bucket/prefix`).

A backup is one object, `voicechat-backup-<id>.vcbk`, where the id is its UTC creation time
(`20261203T030000Z`); `list` needs neither the key nor a download. An object becomes visible
only when complete (a rename, or S3's multipart completion), so a failed backup leaves nothing.
The S3 client is configured like the file storage's (same endpoint, region and credentials), but
with timeouts for large bodies rather than for requests.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from voicechat.backup.archive import BackupRefused
from voicechat.settings import Settings
from voicechat.storage.service import s3_client as storage_s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

READ_BYTES = 1024 * 1024
S3_PART_BYTES = 16 * 1024 * 1024
ID_FORMAT = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(r"^voicechat-backup-(\d{8}T\d{6}Z(?:-\d+)?)\.vcbk$")


def object_name(backup_id: str) -> str:
    """The object a backup id is stored as."""
    return f"voicechat-backup-{backup_id}.vcbk"


def backup_time(backup_id: str) -> datetime:
    """When the backup of `backup_id` was made (its id is its UTC time)."""
    return datetime.strptime(backup_id.split("-")[0], ID_FORMAT).replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class StoredBackup:
    """One backup object: its id, creation time and size in bytes."""

    id: str
    created_at: datetime
    size: int

    @property
    def name(self) -> str:
        """The object's name in its store."""
        return object_name(self.id)


class BackupSink(Protocol):
    """A backup object being written; invisible until :meth:`commit`."""

    def write(self, data: bytes) -> None:
        """Append bytes."""

    def commit(self) -> None:
        """Make the object visible."""

    def abort(self) -> None:
        """Drop what was written."""


class BackupStore(Protocol):
    """A directory or a bucket of backup objects."""

    description: str

    def list(self) -> list[StoredBackup]:
        """Every backup, oldest first."""

    def create(self, backup_id: str) -> BackupSink:
        """Start writing a new backup object."""

    def read(self, backup_id: str) -> Iterator[bytes]:
        """The object's bytes in pieces.

        Raises:
            BackupRefused: no such backup.
        """

    def delete(self, backup_id: str) -> None:
        """Remove the backup object."""

    def put_object(self, name: str) -> BackupSink:
        """Start writing another object (WAL: `wal/<cluster>/<segment>.vcwal`)."""

    def read_object(self, name: str) -> bytes | None:
        """The whole of another object, or None when there is none."""


def _parsed(name: str, size: int) -> StoredBackup | None:
    match = _NAME.match(name)
    if match is None:
        return None
    return StoredBackup(match[1], backup_time(match[1]), size)


class LocalStore:
    """Backups as files in one directory (0700, files 0600)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.description = f"directory {root}"

    def list(self) -> list[StoredBackup]:
        if not self.root.is_dir():
            return []
        found = [
            backup
            for entry in self.root.iterdir()
            if entry.is_file() and (backup := _parsed(entry.name, entry.stat().st_size))
        ]
        return sorted(found, key=lambda b: b.id)

    def create(self, backup_id: str) -> BackupSink:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        return _LocalSink(self.root / object_name(backup_id))

    def read(self, backup_id: str) -> Iterator[bytes]:
        path = self.root / object_name(backup_id)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise BackupRefused(f"no backup {backup_id} in {self.description}") from None
        with handle:
            while piece := handle.read(READ_BYTES):
                yield piece

    def delete(self, backup_id: str) -> None:
        (self.root / object_name(backup_id)).unlink(missing_ok=True)

    def put_object(self, name: str) -> BackupSink:
        """Start writing the object `name` (a relative path such as `wal/<cluster>/<file>`)."""
        final = self.root / name
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return _LocalSink(final)

    def read_object(self, name: str) -> bytes | None:
        """The whole object `name`, or None when there is none."""
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None


class _LocalSink:
    def __init__(self, final: Path) -> None:
        self._final = final
        self._temporary = final.with_name(f".{final.name}.{secrets.token_hex(6)}.part")
        fd = os.open(self._temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._temporary, self._final)
        directory = os.open(self._final.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def abort(self) -> None:
        self._file.close()
        self._temporary.unlink(missing_ok=True)


class S3Store:
    """Backups in an S3 bucket under a prefix; large objects go up as multipart uploads."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.description = f"s3://{bucket}/{self.prefix}"

    def list(self) -> list[StoredBackup]:
        found: list[StoredBackup] = []
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                name = item["Key"].removeprefix(self.prefix)
                if backup := _parsed(name, item["Size"]):
                    found.append(backup)
        return sorted(found, key=lambda b: b.id)

    def create(self, backup_id: str) -> BackupSink:
        return _S3Sink(self._client, self.bucket, self.prefix + object_name(backup_id))

    def read(self, backup_id: str) -> Iterator[bytes]:
        try:
            answer = self._client.get_object(
                Bucket=self.bucket, Key=self.prefix + object_name(backup_id)
            )
        except self._client.exceptions.NoSuchKey:
            raise BackupRefused(f"no backup {backup_id} in {self.description}") from None
        body = answer["Body"]
        try:
            while piece := body.read(READ_BYTES):
                yield piece
        finally:
            body.close()

    def delete(self, backup_id: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self.prefix + object_name(backup_id))

    def put_object(self, name: str) -> BackupSink:
        """Start writing the object `name` under the prefix."""
        return _S3Sink(self._client, self.bucket, self.prefix + name)

    def read_object(self, name: str) -> bytes | None:
        """The whole object `name`, or None when there is none."""
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self.prefix + name)
        except self._client.exceptions.NoSuchKey:
            return None
        return answer["Body"].read()


class _S3Sink:
    def __init__(self, client: S3Client, bucket: str, key: str) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []

    def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= S3_PART_BYTES:
            part = bytes(self._buffer[:S3_PART_BYTES])
            del self._buffer[:S3_PART_BYTES]
            self._send(part)

    def commit(self) -> None:
        if self._upload_id is None:
            self._client.put_object(Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer))
            return
        if self._buffer:
            self._send(bytes(self._buffer))
        self._client.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )

    def abort(self) -> None:
        self._buffer.clear()
        if self._upload_id is not None:
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )

    def _send(self, part: bytes) -> None:
        if self._upload_id is None:
            started = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key)
            self._upload_id = started["UploadId"]
        number = len(self._parts) + 1
        answer = self._client.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=part,
        )
        self._parts.append({"ETag": answer["ETag"], "PartNumber": number})


def s3_client(settings: Settings) -> S3Client:
    """A boto3 client for the configured S3 server, with timeouts for large transfers."""
    return storage_s3_client(
        settings,
        connect_timeout=max(settings.s3_connect_timeout, 5.0),
        read_timeout=60.0,
        max_attempts=max(settings.s3_max_attempts, 3),
    )


def open_store(settings: Settings) -> BackupStore:
    """The store `VOICECHAT_BACKUP_URL` names.

    Raises:
        BackupRefused: the setting is missing.
    """
    url = settings.backup_url
    if url is not None and url.startswith("s3://"):
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        return S3Store(s3_client(settings), bucket, prefix)
    if url is not None:
        return LocalStore(Path(url.removeprefix("file://")))
    # No default: a backup inside the data dir dies with the disk it should outlive.
    raise BackupRefused(
        "VOICECHAT_BACKUP_URL is not set: name a directory on another disk "
        "(file:///mnt/backups) or a bucket (s3://bucket/prefix)"
    )


def new_backup_id(store: BackupStore, now: datetime) -> str:
    """An id for a backup made at `now` that no backup in `store` has yet."""
    base = now.astimezone(UTC).strftime(ID_FORMAT)
    taken = {backup.id for backup in store.list()}
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def expired(backups: list[StoredBackup], retention_days: int, now: datetime) -> list[StoredBackup]:
    """The backups `prune` deletes: older than the retention, never the newest one."""
    if not backups:
        return []
    newest = max(backups, key=lambda b: b.created_at)
    cutoff = now - timedelta(days=retention_days)
    return [b for b in backups if b.created_at < cutoff and b is not newest]


def prune(store: BackupStore, retention_days: int, now: datetime) -> list[StoredBackup]:
    """Delete the backups older than `retention_days` at `now` (never the newest); returns
    them."""
    doomed = expired(store.list(), retention_days, now)
    for backup in doomed:
        store.delete(backup.id)
    return doomed
