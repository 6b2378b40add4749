"""A `multipart/form-data` body read as a stream of events, never held whole.

python-multipart's push parser calls back with slices of what it was fed; the callbacks only
queue events, and :func:`read_form` hands them out after each piece of the body, so file bytes
go on to storage as they arrive. Small text fields are collected (and bounded); the one file
part is passed through in pieces.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from voicechat.error_codes import ErrorCode
from voicechat.errors import BadRequest, UnsupportedMediaType, ValidationFailed

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_FIELD_BYTES = 1024
MAX_PARTS = 16
MAX_HEADER_BYTES = 8 * 1024


@dataclass(frozen=True, slots=True)
class FieldValue:
    """A complete text field."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class FileStart:
    """The beginning of a file part (the client's filename, untrusted)."""

    name: str
    filename: str | None


@dataclass(frozen=True, slots=True)
class FileData:
    """The next piece of the current file part."""

    data: bytes


@dataclass(frozen=True, slots=True)
class FileEnd:
    """The end of the current file part."""


FormEvent = FieldValue | FileStart | FileData | FileEnd


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data Content-Type.

    Raises:
        UnsupportedMediaType: not multipart/form-data, or no boundary.
    """
    media_type, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise UnsupportedMediaType("the body must be multipart/form-data with a boundary")
    return boundary


class _Collector:
    """python-multipart callbacks that turn the parse into queued events."""

    def __init__(self, file_fields: frozenset[str]) -> None:
        self.events: list[FormEvent] = []
        self.ended = False
        self._file_fields = file_fields
        self._parts = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._header_bytes = 0
        self._disposition = b""
        self._field: str | None = None
        self._field_value = bytearray()
        self._in_file = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise ValidationFailed(f"at most {MAX_PARTS} form parts", code=ErrorCode.TOO_MANY_PARTS)
        self._disposition = b""
        self._header_bytes = 0
        self._field = None
        self._field_value.clear()
        self._in_file = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            raise BadRequest("a form part's headers are too long", code=ErrorCode.INVALID_MULTIPART)

    def on_header_end(self) -> None:
        if bytes(self._header_name).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        raw_name = options.get(b"name")
        if raw_name is None:
            raise BadRequest("a form part has no name", code=ErrorCode.INVALID_MULTIPART)
        name = raw_name.decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        if name in self._file_fields or raw_filename is not None:
            filename = None if raw_filename is None else raw_filename.decode("utf-8", "replace")
            self._in_file = True
            self.events.append(FileStart(name, filename))
        else:
            self._field = name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.events.append(FileData(data[start:end]))
            return
        self._field_value += data[start:end]
        if len(self._field_value) > MAX_FIELD_BYTES:
            raise ValidationFailed(
                f"{self._field}: at most {MAX_FIELD_BYTES} bytes", code=ErrorCode.FIELD_TOO_LONG
            )

    def on_part_end(self) -> None:
        if self._in_file:
            self.events.append(FileEnd())
        elif self._field is not None:
            value = self._field_value.decode("utf-8", "replace")
            self.events.append(FieldValue(self._field, value))

    def on_end(self) -> None:
        self.ended = True


async def read_form(
    content_type: str | None,
    body: AsyncIterable[bytes],
    *,
    file_fields: frozenset[str] = frozenset({"file"}),
) -> AsyncGenerator[FormEvent, None]:
    """The events of a multipart/form-data body, as its pieces arrive.

    Raises:
        UnsupportedMediaType: the body is not multipart/form-data.
        BadRequest: the body is malformed or ends early.
        ValidationFailed: too many parts, or a text field over its limit.
    """
    collector = _Collector(file_fields)
    parser = MultipartParser(boundary_of(content_type), collector.callbacks())
    async for piece in body:
        if not piece:
            continue
        try:
            parser.write(piece)
        except FormParserError:
            raise BadRequest(
                "the multipart body is malformed", code=ErrorCode.INVALID_MULTIPART
            ) from None
        events, collector.events = collector.events, []
        for event in events:
            yield event
    if not collector.ended:
        raise BadRequest(
            "the multipart body ends before its last boundary", code=ErrorCode.INVALID_MULTIPART
        )
