"""`POST /upload` and `GET /files/{id}`: files streamed into and out of encrypted storage.

Neither route holds a database connection while bytes flow: an upload can take minutes, and the
pool is shared by every request of the instance.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID, uuid4

import asyncpg
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.requests import ClientDisconnect

from voicechat.api.deps import CurrentUser, Res
from voicechat.api.openapi import errors
from voicechat.api.schemas import FromRow
from voicechat.chat.permissions import Permission, require
from voicechat.crypto import DecryptionError
from voicechat.error_codes import ErrorCode
from voicechat.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    ValidationFailed,
)
from voicechat.storage import (
    FileRepository,
    ObjectMissing,
    SealedUpload,
    StoredFile,
    authorize_download,
)
from voicechat.storage.multipart import FieldValue, FileData, FileEnd, FileStart, read_form
from voicechat.storage.sniff import SNIFF_BYTES, TEXT, disposition_type, safe_filename, sniff

log = logging.getLogger(__name__)
router = APIRouter(tags=["files"])

# Room for the multipart framing around the file (boundaries, part headers, channel_id).
MULTIPART_OVERHEAD_BYTES = 64 * 1024

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "additionalProperties": False,
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        # Blank, as an HTML form sends it, is "no channel".
                        "channel_id": {
                            "anyOf": [
                                {"type": "string", "format": "uuid"},
                                {"type": "string", "pattern": r"^\s*$"},
                            ]
                        },
                    },
                }
            }
        },
    }
}


class UploadedFile(FromRow):
    """A stored file as the API shows it (built from a `StoredFile`)."""

    id: UUID
    filename: str
    mime_type: str
    size_bytes: int
    url: str


def _check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        size = int(declared)
    except ValueError:
        raise BadRequest("Content-Length is not a number") from None
    if size > limit + MULTIPART_OVERHEAD_BYTES:
        raise _too_large(limit)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the file is over the {_describe_bytes(limit)} limit")


def _describe_bytes(size: int) -> str:
    if size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MiB"
    if size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} bytes"


_UUID_TEXT = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def _printable(name: str) -> str:
    """A client's field name, safe to echo in a message (at most 64 printable characters)."""
    return repr(name[:64]) if not name.isprintable() or len(name) > 64 else name


def _parse_channel_id(value: str) -> UUID:
    # The documented form only (the `uuid` format), not every spelling `UUID()` takes.
    if not _UUID_TEXT.match(value):
        raise ValidationFailed("channel_id: not a valid id")
    return UUID(value)


async def _request_body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for piece in request.stream():
            yield piece
    except ClientDisconnect:
        raise BadRequest(
            "the client went away mid-upload", code=ErrorCode.CLIENT_DISCONNECTED
        ) from None


@router.post(
    "/upload",
    status_code=201,
    response_model=UploadedFile,
    openapi_extra=_UPLOAD_BODY,
    responses={
        413: {"description": "Over the size limit"},
        415: {"description": "Not multipart"},
        **errors(400, 403, 404),
    },
)
async def upload(
    request: Request,
    caller: CurrentUser,
    res: Res,
    channel_id: Annotated[UUID | None, Query(description="Or as the form field.")] = None,
) -> UploadedFile:
    """Store a file (multipart `file`, optional `channel_id`), encrypted, streaming.

    The type is sniffed from the content; the name is made safe and given an extension that
    fits the sniffed type. Without a channel the file is private to the uploader until it
    becomes their avatar.
    """
    limit = res.settings.max_upload_bytes
    _check_declared_length(request, limit)

    async def check_channel(candidate: UUID) -> None:
        # Before the file when the client sends channel_id first (or in the query), else
        # right after it: in both cases before the object is committed.
        nonlocal channel_id
        if channel_id is not None and candidate != channel_id:
            raise ValidationFailed("channel_id: given twice with different values")
        channel_id = candidate
        async with res.db.acquire() as conn:
            await require(conn, caller.user_id, candidate, Permission.UPLOAD_FILES)

    if channel_id is not None:
        await check_channel(channel_id)

    file_id = uuid4()
    stored: SealedUpload | None = None
    client_name: str | None = None
    head = bytearray()
    finished = False
    form = read_form(request.headers.get("content-type"), _request_body(request))
    try:
        async for event in form:
            if isinstance(event, FileData):
                assert stored is not None
                if stored.size + len(event.data) > limit:
                    raise _too_large(limit)
                if len(head) < SNIFF_BYTES:
                    head += event.data[: SNIFF_BYTES - len(head)]
                await stored.write(event.data)
            elif isinstance(event, FileStart):
                if event.name != "file" or stored is not None:
                    raise ValidationFailed("send exactly one file, in the field `file`")
                client_name = event.filename
                stored = await res.storage.begin(file_id)
            elif isinstance(event, FileEnd):
                finished = True
            elif isinstance(event, FieldValue):
                # Unknown fields are refused, as in JSON bodies (api/schemas.py `Body`).
                if event.name != "channel_id":
                    raise ValidationFailed(f"{_printable(event.name)}: unknown field")
                # An HTML form sends an empty channel_id for "no channel".
                if event.value.strip():
                    await check_channel(_parse_channel_id(event.value))
        if stored is None or not finished:
            raise ValidationFailed("file: required")
        sniffed = sniff(bytes(head), complete=stored.size == len(head))
        filename = safe_filename(client_name, sniffed)
        await stored.commit()
    except BaseException:
        if stored is not None:
            await _discard(stored.abort(), file_id)
        raise
    finally:
        await form.aclose()

    try:
        async with res.db.acquire() as conn:
            file = await FileRepository(conn).add(
                file_id=file_id,
                channel_id=channel_id,
                uploader_id=caller.user_id,
                filename=filename,
                mime_type=sniffed.mime_type,
                size_bytes=stored.size,
                key=stored.key,
                wrapped_key=stored.wrapped_key,
                master_key_id=stored.master_key_id,
            )
    except BaseException as exc:
        await _discard(res.storage.delete(stored.key), file_id)
        if isinstance(exc, asyncpg.ForeignKeyViolationError):
            # The channel (or the uploader) was deleted while the bytes were flowing.
            raise NotFound("no such channel", code=ErrorCode.CHANNEL_NOT_FOUND) from None
        raise
    return UploadedFile.of(file)


async def _discard(cleanup: Awaitable[None], file_id: UUID) -> None:
    # Best effort: the error that made us clean up is the one the client must see.
    try:
        await cleanup
    except Exception:
        log.warning("could not remove the object of abandoned upload %s", file_id, exc_info=True)


def _content_disposition(file: StoredFile) -> str:
    # RFC 6266: an ASCII fallback for old clients, the exact UTF-8 name in filename*.
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%' else "_" for c in file.filename)
    kind = disposition_type(file.mime_type)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(file.filename, safe='')}"


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one range `[start, end)` a Range header asks for; None to send everything.

    Raises:
        RangeNotSatisfiable: a well-formed range that lies outside the file.
    """
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        # Several ranges, other units or nonsense: RFC 9110 lets us answer with the whole file.
        return None
    first, last = match.group(1), match.group(2)
    if first == "":
        start, end = max(0, size - int(last)), size
        if int(last) == 0:
            raise RangeNotSatisfiable(size)
    else:
        start = int(first)
        end = size if last == "" else min(int(last) + 1, size)
        if last != "" and int(last) < start:
            return None
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, end


class RangeNotSatisfiable(Exception):
    """A Range header that selects nothing of the file."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def _etag_matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in candidates or etag in candidates


@router.get(
    "/files/{file_id}",
    response_class=StreamingResponse,
    responses={
        200: {"description": "The file's bytes", "content": {"*/*": {}}},
        206: {"description": "The requested byte range", "content": {"*/*": {}}},
        304: {"description": "Unchanged (If-None-Match)"},
        416: {"description": "Range outside the file"},
    },
)
async def download(
    file_id: UUID,
    caller: CurrentUser,
    res: Res,
    range_header: Annotated[str | None, Header(alias="range")] = None,
    if_range: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The file's bytes, for those who may read its channel (or see the avatar).

    One byte range per request is honoured (`Range: bytes=a-b`, `a-`, `-n`), for seeking in
    audio and video.
    """
    async with res.db.acquire() as conn:
        file = await FileRepository(conn).get(file_id)
        await authorize_download(conn, caller.user_id, file)

    # Stored files never change: the id is a strong validator.
    etag = f'"{file.id}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": _content_disposition(file),
        "X-Content-Type-Options": "nosniff",
        # Whatever a browser makes of the bytes, it runs nothing and loads nothing.
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, max-age=300",
    }
    if _etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    wanted: tuple[int, int] | None = None
    if if_range is None or if_range.strip() == etag:
        try:
            wanted = _byte_range(range_header, file.size_bytes)
        except RangeNotSatisfiable as exc:
            return Response(
                status_code=416, headers={**headers, "Content-Range": f"bytes */{exc.size}"}
            )

    start, end = wanted if wanted is not None else (0, file.size_bytes)
    content = res.storage.read(file) if wanted is None else res.storage.read(file, start, end)
    # Open the object before answering, so a missing or undecryptable one is an error status
    # rather than a cut-off body.
    try:
        first = await anext(content, b"")
    except ObjectMissing:
        log.error("file %s has a row but no object %s", file.id, file.s3_key)
        raise NotFound(
            "the file's content is missing", code=ErrorCode.FILE_CONTENT_MISSING
        ) from None
    except DecryptionError:
        log.error("file %s failed to decrypt", file.id)
        raise ServiceUnavailable(
            "the file cannot be read", code=ErrorCode.FILE_UNREADABLE
        ) from None

    async def body() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for piece in content:
                yield piece
        except DecryptionError:
            # Headers are gone: cut the body short so the client sees a broken transfer.
            log.error("file %s failed to decrypt mid-stream", file.id)
            raise
        finally:
            await content.aclose()

    media_type = file.mime_type
    if media_type == TEXT:
        media_type = "text/plain; charset=utf-8"
    headers["Content-Length"] = str(end - start)
    status = 200
    if wanted is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{file.size_bytes}"
    return StreamingResponse(body(), status_code=status, media_type=media_type, headers=headers)
