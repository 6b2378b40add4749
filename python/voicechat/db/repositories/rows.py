"""What every repository does with a query that may find nothing."""

from __future__ import annotations

from typing import TypeVar

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
