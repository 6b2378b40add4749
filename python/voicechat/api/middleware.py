"""Pure ASGI middleware around every request: request id, access log, metrics, crash guard,
body size limit, and the input guard (input the server cannot store is refused with 422).

Pure ASGI rather than `BaseHTTPMiddleware` so that streaming bodies and WebSockets pass
through untouched and the cost per request stays a few function calls.
"""

from __future__ import annotations

import json
import logging
import re
import time
from urllib.parse import parse_qsl
from uuid import uuid4

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voicechat.api import metrics
from voicechat.api.errors import error_body
from voicechat.db.pool import count_queries
from voicechat.error_codes import ErrorCode
from voicechat.errors import PayloadTooLarge
from voicechat.logs import request_id_var
from voicechat.storable import Unstorable, find_unstorable, text_problem

log = logging.getLogger("voicechat.access")
crash_log = logging.getLogger("voicechat.api")

# A client may pass its own id (a proxy's, say) if it is short and plain; otherwise we mint one.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def _incoming_request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _CLIENT_REQUEST_ID.match(candidate):
                return candidate
            break
    return uuid4().hex


def _route_template(scope: Scope) -> str:
    # FastAPI leaves the matched route in the scope; its template keeps label cardinality low.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestContextMiddleware:
    """Gives each request an id, logs and measures it, and turns a crash into a 500 shape."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False
        queries = [0]

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            with count_queries() as queries:
                await self.app(scope, receive, send_with_id)
        except Exception:
            crash_log.exception("unhandled error on %s %s", scope.get("method"), scope["path"])
            if scope["type"] == "http" and not response_started:
                await _send_json(
                    send_with_id,
                    500,
                    error_body(ErrorCode.INTERNAL_ERROR, "something went wrong on the server"),
                )
        finally:
            elapsed = time.perf_counter() - started
            if scope["type"] == "http":
                route = _route_template(scope)
                method = scope.get("method", "")
                metrics.observe_request(method, route, status, elapsed, queries[0])
                log.info(
                    "%s %s %d %.1fms",
                    method,
                    scope["path"],
                    status,
                    elapsed * 1000,
                    extra={"status": status, "duration_ms": round(elapsed * 1000, 2)},
                )
            request_id_var.reset(token)


class BodySizeLimitMiddleware:
    """Refuses request bodies over `max_bytes` with 413, by header or while streaming.

    A chunked body (no `Content-Length`) is counted as it arrives; once over the limit the 413
    is sent from here and whatever the app answers afterwards is dropped, since FastAPI turns
    any exception raised while it reads a body into its own 400. Paths in `exempt_prefixes`
    (uploads, which enforce their own larger limit while streaming to storage) pass through.
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, exempt_prefixes: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt_prefixes = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt_prefixes):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await _send_json(send, 413, self._body())
                    return
        received = 0
        response_started = False
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if not response_started and not refused:
                        refused = True
                        await _send_json(send, 413, self._body())
                    raise PayloadTooLarge(self._message())
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if refused:
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except PayloadTooLarge:
            if not refused:
                raise

    def _message(self) -> str:
        return f"the body is over the {self.max_bytes // 1024} KiB limit"

    def _body(self) -> dict[str, object]:
        return error_body(ErrorCode.PAYLOAD_TOO_LARGE, self._message())


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media_type: bytes = value.split(b";", 1)[0].strip().lower()
            return media_type == b"application/json" or media_type.endswith(b"+json")
    return False


def _query_problem(query_string: bytes) -> Unstorable | None:
    # A NUL can only come from %00 (or a raw NUL); percent-decoding never yields a surrogate.
    if b"%00" not in query_string and b"\x00" not in query_string:
        return None
    # Decoded as Starlette decodes it, so the check sees what the route would see.
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        problem = text_problem(name)
        if problem is not None:
            return Unstorable(("query",), f"has a parameter name that {problem}")
        problem = text_problem(value)
        if problem is not None:
            return Unstorable((name,), problem)
    return None


class InputGuardMiddleware:
    """Refuses, with 422 `validation_error`, input the server cannot store, for every route.

    Checks the percent-decoded path and query string, and JSON bodies once decoded (every key
    and value, nested) against the rule of `voicechat.storable`: no NUL, no lone surrogate, no
    `NaN`/`Infinity`, no integer past 64 bits, nesting at most `MAX_DEPTH` deep. A body that is
    not JSON at all is left to FastAPI (400 `invalid_json`). The body is read here, up to the
    size limit outside this middleware, and handed on unchanged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = _path_problem(scope["path"]) or _query_problem(scope.get("query_string", b""))
        if problem is None and _is_json(scope):
            body, receive = await _buffered(receive)
            problem = _body_problem(body)
        if problem is not None:
            await _send_json(send, 422, _refusal(problem))
            return
        await self.app(scope, receive, send)


def _path_problem(path: str) -> Unstorable | None:
    problem = text_problem(path)
    return None if problem is None else Unstorable(("path",), problem)


def _body_problem(body: bytes) -> Unstorable | None:
    try:
        # As FastAPI decodes it (bytes: UTF-8/16/32 detected, surrogates passed through).
        decoded = json.loads(body)
    except RecursionError:
        return Unstorable((), "nests too deeply")
    except ValueError:
        return None  # not JSON: FastAPI answers 400 invalid_json
    return find_unstorable(decoded)


def _refusal(problem: Unstorable) -> dict[str, object]:
    field = problem.field or "body"
    return error_body(
        ErrorCode.VALIDATION_ERROR,
        f"{field}: {problem.reason}",
        fields=[{"field": field, "message": problem.reason}],
    )


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body, and a `receive` that hands it on as one message, then the rest."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            # The client left before the body ended: let the app see the disconnect.
            pending: list[Message] = [message]
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
            break
    body = b"".join(chunks)

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return body, replay


async def _send_json(send: Send, status: int, body: dict[str, object]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
