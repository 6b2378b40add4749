"""Pure ASGI middleware around every request: request id, access log, metrics, crash guard,
body size limit.

Pure ASGI rather than `BaseHTTPMiddleware` so that streaming bodies and WebSockets pass
through untouched and the cost per request stays a few function calls.
"""

from __future__ import annotations

import json
import logging
import re
import time
from uuid import uuid4

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voicechat.api import metrics
from voicechat.api.errors import error_body
from voicechat.db.pool import count_queries
from voicechat.error_codes import ErrorCode
from voicechat.errors import PayloadTooLarge
from voicechat.logs import request_id_var

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

    Paths in `exempt_prefixes` (uploads, which enforce their own larger limit while
    streaming to storage) pass through.
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

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(self._message())
            return message

        await self.app(scope, counting_receive, send)

    def _message(self) -> str:
        return f"the body is over the {self.max_bytes // 1024} KiB limit"

    def _body(self) -> dict[str, object]:
        return error_body(ErrorCode.PAYLOAD_TOO_LARGE, self._message())


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
