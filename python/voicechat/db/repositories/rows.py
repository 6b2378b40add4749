"""What every repository does with a row: build its dataclass, or 404 when there is none."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from voicechat.error_codes import ErrorCode
from voicechat.errors import NotFound

Row = TypeVar("Row")


def found(row: Row | None, what: str, code: ErrorCode) -> Row:
    """`row`, or the 404 for "no such `what`" when the query returned none.

    Raises:
        NotFound: `row` is None.
    """
    if row is None:
        raise NotFound(f"no such {what}", code=code)
    return row


def from_record(cls: type[Row], record: Any) -> Row:
    """The frozen dataclass `cls` built from a row holding a column per field."""
    make: Any = cls
    row: Row = make(**{field.name: record[field.name] for field in dataclasses.fields(make)})
    return row
