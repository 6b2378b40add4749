"""File storage as the API uses it: encrypted objects, rows in `files`, access rules."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID

from voicechat.chat.permissions import Permission, require
from voicechat.crypto import DecryptionError
from voicechat.db.pool import Connection
from voicechat.db.repositories.files import FileRepository, StoredFile, file_url
from voicechat.error_codes import ErrorCode
from voicechat.errors import NotFound, ServiceUnavailable, ValidationFailed
from voicechat.server_keys import MasterKeys, MasterKeyUnavailable
from voicechat.settings import Settings
from voicechat.storage.backends import Backend, LocalBackend, ObjectWriter, S3Backend
from voicechat.storage.sealed import (
    HEADER_BYTES,
    StreamOpener,
    StreamSealer,
    chunk_offset,
    new_object_key,
    unwrap_object_key,
    wrap_object_key,
)
from voicechat.storage.sniff import AVATAR_TYPES

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

AVATAR_MAX_BYTES = 8 * 1024 * 1024

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SealedUpload:
    """An object being encrypted into the backend; invisible until committed."""

    file_id: UUID
    key: str
    wrapped_key: bytes
    master_key_id: bytes
    _writer: ObjectWriter
    _sealer: StreamSealer
    size: int = 0
    _done: bool = field(default=False)

    async def write(self, data: bytes) -> None:
        """Encrypt and store more of the file."""
        self.size += len(data)
        sealed = self._sealer.update(data)
        if sealed:
            await self._writer.write(sealed)

    async def commit(self) -> None:
        """Seal the last chunk and make the object visible."""
        await self._writer.write(self._sealer.finish())
        await self._writer.commit()
        self._done = True

    async def abort(self) -> None:
        """Drop the partial object (safe to call more than once, or after commit: no-op)."""
        if not self._done:
            self._done = True
            await self._writer.abort()


class FileStorage:
    """Encrypted objects in one backend, each under its own key wrapped by the master key."""

    def __init__(self, backend: Backend, master_keys: MasterKeys) -> None:
        self.backend = backend
        self._master_keys = master_keys

    @staticmethod
    def object_key(file_id: UUID) -> str:
        """The backend key of a file: fanned out over 256 directories by the id's last byte."""
        return f"{file_id.hex[-2:]}/{file_id}"

    async def begin(self, file_id: UUID) -> SealedUpload:
        """Start storing the content of a new file."""
        object_key = new_object_key()
        key = self.object_key(file_id)
        writer = await self.backend.create(key)
        master_key_id, wrapped_key = wrap_object_key(self._master_keys, file_id, object_key)
        return SealedUpload(
            file_id=file_id,
            key=key,
            wrapped_key=wrapped_key,
            master_key_id=master_key_id,
            _writer=writer,
            _sealer=StreamSealer(object_key),
        )

    async def read(
        self, file: StoredFile, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The decrypted content `[start, end)` (all of it by default), chunk by chunk as each
        authenticates.

        Raises:
            ObjectMissing: the backend has no object for the row.
            DecryptionError: the object or its wrapped key was altered or swapped.
            ServiceUnavailable: its key is wrapped under a master key that is not configured
                (`storage_key_unavailable`: a rotation's previous key removed too early).
        """
        key = self.object_key_of(file)
        if start == 0 and end is None:
            async with aclosing(self._read_whole(file, key)) as whole:
                async for piece in whole:
                    yield piece
            return
        stop = file.size_bytes if end is None else min(end, file.size_bytes)
        if start >= stop:
            return
        # Only the chunks that hold the range are fetched; each authenticates on its own (its
        # index is in its nonce), so a range needs no pass over the rest of the object.
        async with aclosing(self.backend.read(file.s3_key, 0, HEADER_BYTES)) as head:
            header = b"".join([piece async for piece in head])
        if len(header) < HEADER_BYTES:
            raise DecryptionError("object shorter than its header")
        chunk_size = StreamOpener(key, header=header).chunk_size
        first, last = start // chunk_size, (stop - 1) // chunk_size
        final = last == max(0, (file.size_bytes - 1) // chunk_size)
        opener = StreamOpener(key, header=header, first_chunk=first)
        skip, wanted = start - first * chunk_size, stop - start

        def trim(plaintext: bytes) -> bytes:
            nonlocal skip, wanted
            dropped = min(skip, len(plaintext))
            skip -= dropped
            kept = plaintext[dropped : dropped + wanted]
            wanted -= len(kept)
            return kept

        ciphertext = self.backend.read(
            file.s3_key, chunk_offset(first, chunk_size), chunk_offset(last + 1, chunk_size)
        )
        async with aclosing(ciphertext):
            async for piece in ciphertext:
                if kept := trim(opener.update(piece)):
                    yield kept
        # The range's last chunk is held back until the end: it may be the object's final one.
        if kept := trim(opener.finish() if final else opener.finish_range()):
            yield kept

    def object_key_of(self, file: StoredFile) -> bytes:
        """The unwrapped key of a file's object.

        Raises:
            DecryptionError: the wrapped key was altered or swapped.
            ServiceUnavailable: the master key that wrapped it is not configured.
        """
        try:
            return unwrap_object_key(
                self._master_keys, file.id, file.wrapped_key, key_id=file.master_key_id
            )
        except MasterKeyUnavailable as exc:
            log.error(
                "file %s is wrapped under master key %s, which is not configured "
                "(VOICECHAT_MASTER_KEY_PREVIOUS removed before the rotation finished?)",
                file.id,
                exc.key_id.hex(),
            )
            raise ServiceUnavailable(
                "the file's key is sealed under a master key this server does not have",
                code=ErrorCode.MASTER_KEY_UNAVAILABLE,
            ) from None

    async def _read_whole(self, file: StoredFile, key: bytes) -> AsyncGenerator[bytes, None]:
        opener = StreamOpener(key)
        size = 0
        async with aclosing(self.backend.read(file.s3_key)) as ciphertext:
            async for piece in ciphertext:
                plaintext = opener.update(piece)
                if plaintext:
                    size += len(plaintext)
                    yield plaintext
        plaintext = opener.finish()
        size += len(plaintext)
        if size != file.size_bytes:
            raise DecryptionError("object size does not match its record")
        if plaintext:
            yield plaintext

    async def delete(self, key: str) -> None:
        """Remove an object (a row that failed to insert, say)."""
        await self.backend.delete(key)

    async def discard(self, keys: list[str]) -> int:
        """Remove the objects of rows already deleted; returns how many could not be removed.

        Best effort: the rows are gone, so a failure leaves an unreadable orphan (its key is
        wrapped in the deleted row), which is logged rather than raised.
        """
        failed = 0
        for key in keys:
            try:
                await self.backend.delete(key)
            except Exception:
                failed += 1
                log.warning("could not remove stored object %s", key, exc_info=True)
        return failed

    async def probe(self) -> None:
        """Raise if the backend cannot be used."""
        await self.backend.probe()

    async def aclose(self) -> None:
        """Release the backend's connections."""
        await self.backend.aclose()


async def authorize_download(conn: Connection, user_id: UUID, file: StoredFile) -> None:
    """Insist that the user may fetch the file.

    A channel's file is readable by those who may see the channel once it is attached to a
    message; before that only by its uploader (a draft). A file outside any channel is readable
    by its uploader, and by everyone signed in while it is someone's current avatar.

    Raises:
        NotFound: the file does not exist for this user (never a hint that it does).
    """
    if file.uploader_id == user_id:
        if file.channel_id is not None:
            # Someone who lost access to the channel loses its files too, their own included.
            await _require_view(conn, user_id, file.channel_id)
        return
    if file.channel_id is not None:
        if file.message_id is None:
            raise NotFound("no such file", code=ErrorCode.FILE_NOT_FOUND)
        await _require_view(conn, user_id, file.channel_id)
        return
    if not await FileRepository(conn).is_current_avatar(file.id):
        raise NotFound("no such file", code=ErrorCode.FILE_NOT_FOUND)


async def _require_view(conn: Connection, user_id: UUID, channel_id: UUID) -> None:
    try:
        await require(conn, user_id, channel_id, Permission.VIEW_CHANNEL)
    except NotFound:
        raise NotFound("no such file", code=ErrorCode.FILE_NOT_FOUND) from None


async def avatar_url(conn: Connection, user_id: UUID, file_id: UUID) -> str:
    """The avatar URL for a file the user uploaded outside any channel, if it is an image.

    Raises:
        ValidationFailed: not the caller's own channel-less upload, not an image, or too big.
    """
    try:
        file = await FileRepository(conn).get(file_id)
    except NotFound:
        file = None
    if file is None or file.uploader_id != user_id or file.channel_id is not None:
        raise ValidationFailed(
            "avatar: must be the id of an image you uploaded without a channel",
            code=ErrorCode.INVALID_AVATAR,
        )
    if file.mime_type not in AVATAR_TYPES:
        raise ValidationFailed(
            f"avatar: must be a PNG, JPEG, GIF or WebP image, not {file.mime_type}",
            code=ErrorCode.INVALID_AVATAR,
        )
    if file.size_bytes > AVATAR_MAX_BYTES:
        raise ValidationFailed(
            f"avatar: must be at most {AVATAR_MAX_BYTES // (1024 * 1024)} MiB",
            code=ErrorCode.INVALID_AVATAR,
        )
    return file_url(file.id)


def _s3_location(storage_url: str) -> tuple[str, str]:
    bucket, _, prefix = storage_url.removeprefix("s3://").partition("/")
    return bucket, prefix


async def open_storage(settings: Settings, master_keys: MasterKeys) -> FileStorage:
    """The storage backend the settings name: `s3://bucket[/prefix]`, else a local directory."""
    if settings.storage_url is not None and settings.storage_url.startswith("s3://"):
        bucket, prefix = _s3_location(settings.storage_url)
        # Building a boto3 client loads service models from disk: keep it off the event loop.
        client = await asyncio.to_thread(s3_client, settings)
        # The request-side bound of one call: one attempt's silence, and a second to spare.
        deadline = max(settings.s3_connect_timeout, settings.s3_read_timeout) + 1.0
        return FileStorage(S3Backend(client, bucket, prefix, call_deadline=deadline), master_keys)
    directory = settings.files_dir
    await asyncio.to_thread(directory.mkdir, mode=0o700, parents=True, exist_ok=True)
    return FileStorage(LocalBackend(directory), master_keys)


def s3_client(
    settings: Settings,
    *,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    max_attempts: int | None = None,
) -> S3Client:
    """A boto3 client for the configured S3 server; the file API's timeouts unless given."""
    import boto3
    from botocore.config import Config

    secret = settings.s3_secret_access_key
    config = Config(
        signature_version="s3v4",
        # Bounded (boto3's defaults allow ~90 s against a frozen server); the backend adds a
        # deadline per call on top (storage.backends._S3Calls).
        connect_timeout=settings.s3_connect_timeout if connect_timeout is None else connect_timeout,
        read_timeout=settings.s3_read_timeout if read_timeout is None else read_timeout,
        retries={
            "max_attempts": settings.s3_max_attempts if max_attempts is None else max_attempts,
            "mode": "standard",
        },
        # Path-style addressing works with every S3-compatible server (MinIO, Ceph, moto).
        s3={"addressing_style": "path"} if settings.s3_endpoint_url else {},
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
        config=config,
    )
