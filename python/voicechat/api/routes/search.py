"""`/search/messages`: ranked full-text search over the plaintext channels the caller can read.

docs/search.md is the user's side: query syntax, ranking, paging, what is never indexed (E2EE).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import astuple
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field, TypeAdapter
from typing_extensions import TypedDict

from voicechat.api.deps import CurrentUser, Res
from voicechat.api.openapi import errors
from voicechat.api.routes.messages import MessageJson, message_json
from voicechat.api.schemas import Message
from voicechat.chat.permissions import Permission, require
from voicechat.db.repositories.search import (
    MessageSearch,
    SearchFilters,
    SearchHit,
    SearchPosition,
)
from voicechat.error_codes import ErrorCode
from voicechat.errors import BadRequest, ValidationFailed

router = APIRouter(prefix="/search", tags=["search"])

MAX_QUERY_CHARS = 200
MAX_RESULTS = 25
#: The share of `VOICECHAT_DB_COMMAND_TIMEOUT` a search may use at most: PostgreSQL's own
#: cancellation (a clear 503 `search_timeout`) must come before the driver gives up on the
#: connection (503 `database_unavailable`).
_SHARE_OF_COMMAND_TIMEOUT = 0.8


class SearchResult(BaseModel):
    """One match: the message as history pages show it, its rank and a highlighted snippet."""

    message: Message
    channel_id: UUID
    highlight: str = Field(
        description=(
            "A snippet of the content around the best match, HTML-escaped, each matching word "
            "between `<mark>` and `</mark>` (the only markup in it)."
        )
    )
    rank: float = Field(description="How well it matched (`ts_rank_cd`); higher is better.")


class SearchResults(BaseModel):
    """A page of results, best first (ties newest first)."""

    results: list[SearchResult]
    has_more: bool
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same query and filters) for the next page."
    )


class _ResultJson(TypedDict):
    message: MessageJson
    channel_id: UUID
    highlight: str
    rank: float


class _ResultsJson(TypedDict):
    results: list[_ResultJson]
    has_more: bool
    next_cursor: str | None


_RESULTS_JSON = TypeAdapter(_ResultsJson)


def _message_or_time(name: str, value: str | None) -> tuple[UUID | None, datetime | None]:
    """`before`/`after`: a message id (as history pages take) or an ISO 8601 time."""
    if value is None:
        return None, None
    try:
        return UUID(value), None
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(
            f"{name}: a message id or an ISO 8601 time", code=ErrorCode.VALIDATION_ERROR
        ) from None
    return None, moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _fingerprint(q: str, filters: SearchFilters) -> str:
    """What a cursor is bound to: the words and filters of the query it continues."""
    text = "\x00".join(str(part) for part in (q, *astuple(filters)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cursor(hit: SearchHit, fingerprint: str) -> str:
    raw = f"{hit.rank!r}|{hit.message.id}|{fingerprint}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _position(cursor: str, fingerprint: str) -> SearchPosition:
    invalid = ValidationFailed(
        "cursor: not a cursor of this query (run the search again from its first page)",
        code=ErrorCode.INVALID_SEARCH_CURSOR,
    )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        rank, message_id, bound_to = raw.split("|")
        position = SearchPosition(float(rank), UUID(message_id))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid from None
    if bound_to != fingerprint:
        raise invalid
    return position


@router.get("/messages", response_model=SearchResults, responses=errors(404, 429))
async def search_messages(
    caller: CurrentUser,
    resources: Res,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)],
    channel_id: UUID | None = None,
    author_id: UUID | None = None,
    before: Annotated[str | None, Query(max_length=64)] = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RESULTS)] = MAX_RESULTS,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    """Search the plaintext messages of every channel the caller can read now.

    `q` takes web-search syntax: words (all must match), `"a phrase"`, `-word` (must not
    match), `or` between alternatives; the last word also matches as a prefix while typed.
    `before`/`after` are message ids or ISO 8601 times. Encrypted channels and DMs are never
    searched here (the server has no plaintext of them): the SDK searches their decrypted
    messages.
    """
    if not q.strip():
        raise ValidationFailed(
            "q: a search needs at least one word", code=ErrorCode.VALIDATION_ERROR
        )
    before_id, before_time = _message_or_time("before", before)
    after_id, after_time = _message_or_time("after", after)
    filters = SearchFilters(
        channel_id=channel_id,
        author_id=author_id,
        before_id=before_id,
        after_id=after_id,
        before_time=before_time,
        after_time=after_time,
    )
    fingerprint = _fingerprint(q, filters)
    start_after = None if cursor is None else _position(cursor, fingerprint)
    settings = resources.settings
    # Counted before any work (auth/ratelimit.py): a refused search costs the database nothing.
    await resources.auth.limits.hit(settings.rate_limit_search, "search", str(caller.user_id))
    timeout = min(settings.search_timeout, settings.db_command_timeout * _SHARE_OF_COMMAND_TIMEOUT)
    async with resources.db.acquire() as db:
        if channel_id is not None:
            access = await require(db, caller.user_id, channel_id, Permission.VIEW_CHANNEL)
            if access.channel.encrypted:
                raise BadRequest(
                    "this channel is end-to-end encrypted: the server cannot search it (your "
                    "client searches the messages it has decrypted)",
                    code=ErrorCode.CHANNEL_NOT_SEARCHABLE,
                )
        hits, more = await MessageSearch(db).search(
            caller.user_id,
            q,
            filters,
            limit=limit,
            start_after=start_after,
            timeout_ms=max(1, int(timeout * 1000)),
        )
    body: _ResultsJson = {
        "results": [
            {
                "message": message_json(hit.message),
                "channel_id": hit.message.channel_id,
                "highlight": hit.highlight,
                "rank": hit.rank,
            }
            for hit in hits
        ],
        "has_more": more,
        "next_cursor": _cursor(hits[-1], fingerprint) if more and hits else None,
    }
    return Response(_RESULTS_JSON.dump_json(body), media_type="application/json")
