"""The floor of Python and PostgreSQL here: a bare Starlette + asyncpg app, served by uvicorn.

`POST /channels/{id}/messages` runs the insert voicechat runs for a send and answers the row
as JSON; `GET /channels/{id}/messages` runs the page query voicechat runs for `?limit=50`.
No auth, no permission check, no middleware, no validation: what is left is what the HTTP
server, the event loop, the driver and PostgreSQL cost. Configured by environment:
FLOOR_DSN, FLOOR_USER_ID (the author of sent messages).

Run: `uvicorn benches.http_floor:app --workers N`.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from uuid_utils.compat import uuid7

from voicechat.db.repositories.messages import SELECT_PAGE_NEWEST_FIRST

INSERT = """
INSERT INTO messages (id, channel_id, user_id, content) VALUES ($1, $2, $3, $4)
RETURNING id, channel_id, user_id, content, created_at
"""

_pool: asyncpg.Pool[asyncpg.Record] | None = None


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value, default=str), status, media_type="application/json")


async def send(request: Request) -> Response:
    assert _pool is not None
    body = await request.json()
    row = await _pool.fetchrow(
        INSERT,
        uuid7(),
        UUID(request.path_params["channel_id"]),
        UUID(os.environ["FLOOR_USER_ID"]),
        body["content"],
    )
    assert row is not None
    return _json(dict(row), 201)


async def page(request: Request) -> Response:
    assert _pool is not None
    limit = int(request.query_params.get("limit", "50"))
    rows = await _pool.fetch(
        SELECT_PAGE_NEWEST_FIRST, UUID(request.path_params["channel_id"]), None, None, limit + 1
    )
    return _json({"messages": [dict(r) for r in rows[:limit]], "has_more": len(rows) > limit})


async def _decode_jsonb(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    global _pool
    _pool = await asyncpg.create_pool(
        os.environ["FLOOR_DSN"], min_size=16, max_size=16, init=_decode_jsonb
    )
    try:
        yield
    finally:
        await _pool.close()


app = Starlette(
    routes=[
        Route("/channels/{channel_id}/messages", send, methods=["POST"]),
        Route("/channels/{channel_id}/messages", page, methods=["GET"]),
    ],
    lifespan=lifespan,
)
