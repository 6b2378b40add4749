"""Where sealed objects live: a local directory or an S3-compatible bucket.

Backends move opaque bytes; they never see plaintext (see :mod:`voicechat.storage.sealed`).
Both write an object as a stream of pieces and make it visible only on commit, so a failed or
refused upload leaves nothing behind. Blocking calls (file I/O, boto3) run in each backend's own
worker threads, never on the event loop, and never in the default executor: a slow or
unreachable bucket must not starve password hashing or the voice service, which use that one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import secrets
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

from voicechat.outages import StorageUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

READ_BYTES = 256 * 1024
# S3 parts other than the last must be at least 5 MiB; this bounds an S3 upload's buffer.
S3_PART_BYTES = 8 * 1024 * 1024
_OBJECT_KEY = re.compile(r"^[0-9a-f]{2}/[0-9a-f-]{36}$")
WORKER_THREADS = 8
#: The slowest transfer an S3 call carrying a body is allowed: its deadline grows by one second
#: per this many bytes (an 8 MiB part may take 8 s more than a HEAD).
S3_MIN_BYTES_PER_SECOND = 1024 * 1024
#: How long a failed upload waits for its multipart upload to be aborted.
ABORT_WAIT_SECONDS = 1.0
#: What the S3 server's refusal codes mean, for the 503 and for `/health`.
_S3_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "ExpiredToken",
        "InvalidToken",
        "AuthorizationHeaderMalformed",
        "403",
    }
)
_S3_MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "404", "NoSuchUpload"})

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class _Workers:
    """A backend's own thread pool for blocking calls."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix=name)

    async def run(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(call, *args, **kwargs))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class ObjectMissing(Exception):
    """The backend has no object under that key."""


class ObjectWriter(Protocol):
    """An object being written; invisible until :meth:`commit`."""

    async def write(self, data: bytes) -> None:
        """Append bytes."""

    async def commit(self) -> None:
        """Make the object visible under its key."""

    async def abort(self) -> None:
        """Drop everything written so far (idempotent)."""


class Backend(Protocol):
    """An object store of opaque bytes."""

    description: str

    async def create(self, key: str) -> ObjectWriter:
        """Start writing a new object."""

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        """The object's bytes `[start, end)` (to its end when `end` is None), in pieces.

        Raises:
            ObjectMissing: (on first iteration) no such object.
        """

    async def delete(self, key: str) -> None:
        """Remove the object if it exists."""

    async def probe(self) -> None:
        """Raise if the store cannot be written (health check)."""

    async def aclose(self) -> None:
        """Release connections."""


def _checked_key(key: str) -> str:
    # Keys are made by the server (see FileStorage.object_key); refuse anything else outright
    # so that no value can ever address a path outside the store.
    if not _OBJECT_KEY.match(key):
        raise ValueError(f"malformed object key {key!r}")
    return key


class LocalBackend:
    """Objects as files under one directory, written to a temporary name then renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.description = f"local directory {root}"
        self._workers = _Workers("voicechat-files")

    def path(self, key: str) -> Path:
        """Where the object of `key` is kept."""
        return self.root / _checked_key(key)

    async def create(self, key: str) -> ObjectWriter:
        final = self.path(key)
        temporary = final.with_name(f".{final.name}.{secrets.token_hex(6)}.part")

        def open_file() -> int:
            final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

        fd = await self._workers.run(open_file)
        return _LocalWriter(self._workers, fd, temporary, final)

    async def read(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        path = self.path(key)
        try:
            handle = await self._workers.run(path.open, "rb")
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        try:
            if start:
                await self._workers.run(handle.seek, start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                size = READ_BYTES if remaining is None else min(READ_BYTES, remaining)
                piece = await self._workers.run(handle.read, size)
                if not piece:
                    break
                if remaining is not None:
                    remaining -= len(piece)
                yield piece
        finally:
            await self._workers.run(handle.close)

    async def delete(self, key: str) -> None:
        await self._workers.run(self.path(key).unlink, missing_ok=True)

    async def probe(self) -> None:
        if not await self._workers.run(os.access, self.root, os.W_OK | os.X_OK):
            raise PermissionError(str(self.root))

    async def aclose(self) -> None:
        self._workers.shutdown()


class _LocalWriter:
    def __init__(self, workers: _Workers, fd: int, temporary: Path, final: Path) -> None:
        self._workers = workers
        self._fd: int | None = fd
        self._temporary = temporary
        self._final = final

    async def write(self, data: bytes) -> None:
        if self._fd is None:
            raise RuntimeError("writer already closed")
        fd = self._fd

        def write_all() -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]

        await self._workers.run(write_all)

    async def commit(self) -> None:
        if self._fd is None:
            raise RuntimeError("writer already closed")
        fd, self._fd = self._fd, None

        def finish() -> None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._temporary, self._final)

        await self._workers.run(finish)

    async def abort(self) -> None:
        fd, self._fd = self._fd, None

        def discard() -> None:
            if fd is not None:
                os.close(fd)
            self._temporary.unlink(missing_ok=True)

        await self._workers.run(discard)


class _S3Calls:
    """Every S3 call of a backend, each under a deadline and with the server's failures said
    as `StorageUnavailable` (503 `storage_unavailable`).

    botocore's own timeouts (`VOICECHAT_S3_CONNECT_TIMEOUT`, `_READ_TIMEOUT`) and retries
    (`_MAX_ATTEMPTS`) bound the worker thread; the deadline bounds the request, whatever the
    retries add up to: at it, the caller gets its 503 and the thread finishes on its own.
    """

    def __init__(self, workers: _Workers, deadline: float) -> None:
        self._workers = workers
        self.deadline = deadline

    async def run(
        self, call: Callable[..., T], *args: Any, body_bytes: int = 0, **kwargs: Any
    ) -> T:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            async with asyncio.timeout(self.deadline + body_bytes / S3_MIN_BYTES_PER_SECOND):
                return await self._workers.run(call, *args, **kwargs)
        except TimeoutError:
            raise StorageUnavailable(
                "file storage did not answer in time; try again shortly"
            ) from None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _S3_MISSING_OBJECT_CODES:
                raise
            raise StorageUnavailable(_describe_refusal(code)) from None
        except BotoCoreError as exc:
            raise StorageUnavailable(
                f"file storage cannot be reached ({type(exc).__name__}); try again shortly"
            ) from None


def _describe_refusal(code: str) -> str:
    if code in _S3_CREDENTIAL_CODES:
        return (
            f"the S3 server refused our credentials ({code}): check "
            "VOICECHAT_S3_ACCESS_KEY_ID and VOICECHAT_S3_SECRET_ACCESS_KEY"
        )
    if code == "NoSuchBucket":
        return "the S3 bucket does not exist (NoSuchBucket)"
    return f"the S3 server refused the request ({code or 'no code'})"


class S3Backend:
    """Objects in an S3-compatible bucket through boto3 (whose clients are thread-safe).

    Small objects go up with one PUT on commit; larger ones as a multipart upload whose parts
    are sent as they fill, so an upload holds at most one part in memory. Every call has a
    deadline (`call_deadline` seconds, more for bodies; see `_S3Calls`).
    """

    def __init__(
        self, client: S3Client, bucket: str, prefix: str = "", *, call_deadline: float = 4.0
    ) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.description = f"s3 bucket {bucket}"
        self._workers = _Workers("voicechat-s3")
        self._calls = _S3Calls(self._workers, call_deadline)
        self._probe: asyncio.Future[None] | None = None

    def object_name(self, key: str) -> str:
        """The S3 key of the object of `key` (with the configured prefix)."""
        return self.prefix + _checked_key(key)

    async def create(self, key: str) -> ObjectWriter:
        return _S3Writer(self._calls, self._client, self.bucket, self.object_name(key))

    async def read(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        name = self.object_name(key)
        client = self._client
        if start == 0 and end is None:
            get = functools.partial(client.get_object, Bucket=self.bucket, Key=name)
        else:
            last = "" if end is None else str(end - 1)
            get = functools.partial(
                client.get_object, Bucket=self.bucket, Key=name, Range=f"bytes={start}-{last}"
            )
        try:
            answer = await self._calls.run(get)
        except client.exceptions.NoSuchKey:
            raise ObjectMissing(key) from None
        body = answer["Body"]
        try:
            while piece := await self._calls.run(body.read, READ_BYTES):
                yield piece
        finally:
            await self._workers.run(body.close)

    async def delete(self, key: str) -> None:
        await self._calls.run(
            self._client.delete_object, Bucket=self.bucket, Key=self.object_name(key)
        )

    async def probe(self) -> None:
        # One HeadBucket in flight at a time: health checks that time out against a dead
        # endpoint (the thread outlives the timeout) must not pile up threads.
        # A listing rather than HeadBucket: a HEAD answer has no body, so a refusal would say
        # only "403", where this says InvalidAccessKeyId, SignatureDoesNotMatch, NoSuchBucket.
        probe = self._probe
        if probe is None or probe.done():

            def list_one() -> None:
                self._client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)

            probe = asyncio.ensure_future(self._calls.run(list_one))
            probe.add_done_callback(_consume_error)
            self._probe = probe
        await asyncio.shield(probe)

    async def aclose(self) -> None:
        await self._workers.run(self._client.close)
        self._workers.shutdown()


def _consume_error(future: asyncio.Future[None]) -> None:
    # A probe nobody awaits any more (its caller timed out) must not log "never retrieved".
    if not future.cancelled():
        future.exception()


class _S3Writer:
    def __init__(self, calls: _S3Calls, client: S3Client, bucket: str, name: str) -> None:
        self._calls = calls
        self._client = client
        self._bucket = bucket
        self._name = name
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._closed = False

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise RuntimeError("writer already closed")
        self._buffer += data
        while len(self._buffer) >= S3_PART_BYTES:
            part = bytes(self._buffer[:S3_PART_BYTES])
            del self._buffer[:S3_PART_BYTES]
            await self._send_part(part)

    async def commit(self) -> None:
        if self._closed:
            raise RuntimeError("writer already closed")
        self._closed = True
        client = self._client
        if self._upload_id is None:
            body = bytes(self._buffer)
            self._buffer.clear()
            await self._calls.run(
                client.put_object,
                Bucket=self._bucket,
                Key=self._name,
                Body=body,
                body_bytes=len(body),
            )
            return
        if self._buffer:
            part = bytes(self._buffer)
            self._buffer.clear()
            await self._send_part(part)
        await self._calls.run(
            client.complete_multipart_upload,
            Bucket=self._bucket,
            Key=self._name,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )

    async def abort(self) -> None:
        self._closed = True
        self._buffer.clear()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            # Waited for briefly only: a request that failed because storage is down must not
            # wait out another deadline. The abort goes on in the background; a bucket
            # lifecycle rule for incomplete uploads catches what it misses (docs/reliability.md).
            task = asyncio.create_task(
                self._calls.run(
                    self._client.abort_multipart_upload,
                    Bucket=self._bucket,
                    Key=self._name,
                    UploadId=upload_id,
                )
            )
            _aborts.add(task)
            task.add_done_callback(_aborted)
            await asyncio.wait({task}, timeout=ABORT_WAIT_SECONDS)

    async def _send_part(self, part: bytes) -> None:
        client = self._client
        if self._upload_id is None:
            started = await self._calls.run(
                client.create_multipart_upload, Bucket=self._bucket, Key=self._name
            )
            self._upload_id = started["UploadId"]
        number = len(self._parts) + 1
        answer = await self._calls.run(
            client.upload_part,
            Bucket=self._bucket,
            Key=self._name,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=part,
            body_bytes=len(part),
        )
        self._parts.append({"ETag": answer["ETag"], "PartNumber": number})


_aborts: set[asyncio.Task[Any]] = set()


def _aborted(task: asyncio.Task[Any]) -> None:
    _aborts.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not abort a multipart upload: %s", task.exception())
