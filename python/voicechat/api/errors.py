"""One mapping from every error to SPEC §3's shape: `{"error": {"code", "message"}}`.

The request id rides along in the body (and the `X-Request-ID` header) so a person can quote
it to an operator, who finds the matching log line. No stack trace ever reaches a client.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette._utils import get_route_path
from starlette.exceptions import HTTPException as StarletteHTTPException

from voicechat.error_codes import ErrorCode
from voicechat.errors import RateLimited, VoicechatError
from voicechat.logs import request_id_var
from voicechat.outages import OUTAGE_TYPES, RETRY_AFTER_SECONDS, outage_of

log = logging.getLogger(__name__)

_CODES_BY_STATUS: dict[int, ErrorCode] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    422: ErrorCode.VALIDATION_ERROR,
    429: ErrorCode.RATE_LIMITED,
    500: ErrorCode.INTERNAL_ERROR,
    502: ErrorCode.BAD_GATEWAY,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}


def error_body(code: ErrorCode, message: str, **extra: Any) -> dict[str, Any]:
    """The error shape, with the current request id."""
    error: dict[str, Any] = {"code": code, "message": message, **extra}
    request_id = request_id_var.get()
    if request_id is not None:
        error["request_id"] = request_id
    return {"error": error}


def error_response(
    status: int, code: ErrorCode, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A JSON error response in the shape every client expects."""
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, VoicechatError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    if exc.status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return error_response(exc.status, exc.code, exc.message, headers, **exc.details)


async def _dependency_error(request: Request, exc: Exception) -> JSONResponse:
    # A driver's exception: 503 `<dependency>_unavailable` when it says a dependency is down
    # (voicechat.outages); anything else is a bug and goes on to the 500 handler.
    outage = outage_of(exc)
    if outage is None:
        raise exc
    return await _domain_error(request, outage)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _CODES_BY_STATUS.get(status, ErrorCode.ERROR)
    if status == 404 and exc.detail == "Not Found":
        message = f"no route {request.url.path}"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    elif isinstance(exc.detail, str):
        message = exc.detail
    else:
        message = HTTPStatus(status).phrase
    headers = dict(exc.headers or {})
    if status == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return error_response(status, code, message, headers)


def _allowed_methods(request: Request) -> list[str]:
    # Starlette's Allow names the methods of the first route on the path; FastAPI makes one
    # route per method, so gather every route of the documented path the URL is: the most
    # literal template that matches (`/sendToDevice/inbox`, not `/sendToDevice/{txn_id}`).
    path = get_route_path(request.scope)
    by_template: dict[str, set[str]] = {}
    for route in iter_route_contexts(request.app.router.routes):
        regex = getattr(route, "path_regex", None)
        if route.methods and route.path_format and regex is not None and regex.match(path):
            by_template.setdefault(route.path_format, set()).update(route.methods)
    if not by_template:
        return []
    template = min(by_template, key=lambda t: (t.count("{"), t))
    return sorted(by_template[template])


async def _unstorable_value(request: Request, exc: Exception) -> JSONResponse:
    # The input guard (api/middleware.py) refuses what PostgreSQL cannot store before any
    # route runs; this is the backstop for a value it cannot know about (an unbounded
    # integer query parameter past 64 bits, say). Logged: a route may want a tighter bound.
    log.warning("PostgreSQL refused a value on %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        422, ErrorCode.VALIDATION_ERROR, "a value is out of the range the server can store"
    )


def _describe_location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in loc if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(error.get("type") == "json_invalid" for error in errors):
        return error_response(400, ErrorCode.INVALID_JSON, "the body is not valid JSON")
    fields = [
        {"field": _describe_location(error.get("loc", ())), "message": str(error.get("msg", ""))}
        for error in errors
    ]
    first = fields[0] if fields else {"field": "body", "message": "invalid"}
    return error_response(
        422, ErrorCode.VALIDATION_ERROR, f"{first['field']}: {first['message']}", fields=fields
    )


def install_error_handlers(app: FastAPI) -> None:
    """Route every error type through the shape above."""
    app.add_exception_handler(VoicechatError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(asyncpg.DataError, _unstorable_value)
    # PostgreSQL, Valkey or the object store down or too slow: 503 (docs/reliability.md).
    from botocore.exceptions import BotoCoreError, ClientError

    for outage_type in (*OUTAGE_TYPES, BotoCoreError, ClientError):
        app.add_exception_handler(outage_type, _dependency_error)
