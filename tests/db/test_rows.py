"""The repositories' shared row handling: dataclass from a row, 404 when there is none."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from voicechat.db.repositories.rows import found, from_record
from voicechat.error_codes import ErrorCode
from voicechat.errors import NotFound


@dataclass(frozen=True, slots=True)
class Pair:
    left: int
    right: str


def test_from_record_reads_one_column_per_field() -> None:
    assert from_record(Pair, {"right": "b", "left": 1, "extra": None}) == Pair(1, "b")


def test_found_passes_a_row_through_and_turns_none_into_not_found() -> None:
    assert found(Pair(1, "b"), "pair", ErrorCode.NOT_FOUND) == Pair(1, "b")
    with pytest.raises(NotFound) as raised:
        found(None, "role", ErrorCode.ROLE_NOT_FOUND)
    assert raised.value.code == ErrorCode.ROLE_NOT_FOUND
    assert raised.value.message == "no such role"
