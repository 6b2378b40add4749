"""Limits on the HTTP/1.1 request itself, enforced by the server before the app sees it.

uvicorn's httptools protocol has no limit on the request line or the headers, and httptools
accumulates a header value by concatenation as it arrives, so a 40 MB header cost 2.3 s of
event-loop time (every other request stalled meanwhile) and the cost grows faster than the
size. :class:`LimitedHttpToolsProtocol` is that protocol with limits, counted as bytes arrive:

- the request line (the URL) over `VOICECHAT_HTTP_MAX_REQUEST_LINE_BYTES`: 414;
- the whole head (request line and headers) over `VOICECHAT_HTTP_MAX_HEADER_BYTES`: 431, at
  most one read (≤ 256 KiB) after the limit was passed, whether or not the head ever ends;
- more than `VOICECHAT_HTTP_MAX_HEADERS` header lines: 431;
- a body over the largest any route takes (`VOICECHAT_MAX_UPLOAD_BYTES` and its multipart
  framing, at least the 1 MiB of JSON bodies): 413, from `Content-Length` before the app
  runs, or while a chunked body streams in (routes keep their own smaller limits);
- a head not complete `VOICECHAT_HTTP_HEADER_TIMEOUT` seconds after the connection opened (or
  the request began): 408 and closed, so a client sending a header a byte a second (slowloris)
  holds a connection for that long and no longer;
- a body that stops arriving for `VOICECHAT_HTTP_BODY_IDLE_TIMEOUT` seconds: 408 (or closed, if
  the answer has started).

Each refusal is in the error shape (SPEC §3) and closes the connection. WebSocket upgrades go
through the same head limits. :func:`uvicorn_options` is what `voicechat serve` passes to
uvicorn for all of this (and for the trusted-proxy handling, which is the app's:
api/proxies.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from voicechat.api.app import MAX_JSON_BODY_BYTES
from voicechat.api.routes.files import MULTIPART_OVERHEAD_BYTES
from voicechat.error_codes import ErrorCode
from voicechat.settings import Settings

log = logging.getLogger(__name__)

#: How long a refused connection is read (and the bytes dropped) before it is closed.
_LINGER_SECONDS = 2.0


class RequestRefused(Exception):
    """Raised inside a parser callback to stop parsing; the protocol answers `status`."""

    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class HttpLimits:
    """The numbers :class:`LimitedHttpToolsProtocol` enforces, from settings."""

    def __init__(self, settings: Settings) -> None:
        self.max_request_line = settings.http_max_request_line_bytes
        self.max_head = settings.http_max_header_bytes
        self.max_headers = settings.http_max_headers
        # The largest body any route takes: an upload with its multipart framing, or JSON.
        self.max_body = max(
            settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES, MAX_JSON_BODY_BYTES
        )
        self.header_timeout = settings.http_header_timeout
        self.body_idle_timeout = settings.http_body_idle_timeout


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` that put the limits in place.

    uvicorn's own forwarded-header handling is off: it trusts 127.0.0.1 only and knows no
    `Forwarded`; the app resolves the client address itself (api/proxies.py).
    """
    LimitedHttpToolsProtocol.http_limits = HttpLimits(settings)
    return {"http": LimitedHttpToolsProtocol, "proxy_headers": False}


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of :class:`HttpLimits`."""

    #: Set by :func:`uvicorn_options`. A worker process uvicorn spawned imports this module
    #: afresh and reads the same settings again (environment, .env, TOML file).
    http_limits: ClassVar[HttpLimits | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = type(self).http_limits
        if limits is None:
            limits = type(self).http_limits = HttpLimits(Settings())
        self._limits = limits
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._url_bytes = 0
        self._parsed_head_bytes = 0
        self._body_bytes = 0
        self._received_any = False
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._request_in_app = False  # the current request reached the app (has its cycle)

    # -- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)

    def eof_received(self) -> None:
        if self._refused:
            self.transport.close()  # the client is done sending: nothing left to linger for

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        # As uvicorn's own: a new request on a kept-alive connection is no longer idle.
        self._unset_keepalive_if_required()
        self._received_any = True
        if self._in_head:
            self._head_bytes += len(data)
        elif self._body_timer is not None:
            self._restart_body_timer()
        try:
            self.parser.feed_data(data)
        except RequestRefused as refusal:
            self._refuse(refusal)
            return
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__
            if isinstance(cause, RequestRefused):
                self._refuse(cause)
                return
            self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self._cancel_timers()
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head and self._head_bytes > self._limits.max_head:
            # The head is still incomplete and already too long: stop feeding the parser.
            self._refuse(_head_too_large(self._limits.max_head))

    # -- parser callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._request_in_app = False
        self._header_count = 0
        self._url_bytes = 0
        self._parsed_head_bytes = 0
        self._body_bytes = 0
        if self._head_timer is None:
            self._start_head_timer()

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        self._parsed_head_bytes += len(url)
        if self._url_bytes > self._limits.max_request_line:
            raise RequestRefused(
                414,
                ErrorCode.URI_TOO_LONG,
                f"the request line is over the {self._limits.max_request_line} byte limit",
            )
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self._limits.max_headers:
            raise RequestRefused(
                431,
                ErrorCode.REQUEST_HEADER_TOO_LARGE,
                f"more than {self._limits.max_headers} header lines",
            )
        # Exact, for a head that ends inside the read that carried it past the limit.
        self._parsed_head_bytes += len(name) + len(value) + 4
        if self._parsed_head_bytes > self._limits.max_head:
            raise _head_too_large(self._limits.max_head)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._cancel_head_timer()
        declared = self._declared_length()
        if declared is not None and declared > self._limits.max_body:
            raise RequestRefused(413, ErrorCode.PAYLOAD_TOO_LARGE, self._body_message())
        super().on_headers_complete()
        self._request_in_app = self.cycle is not None and self.cycle.scope is self.scope
        if self._request_in_app and self.cycle.more_body and self._expects_body():
            self._restart_body_timer()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._limits.max_body:
            raise RequestRefused(413, ErrorCode.PAYLOAD_TOO_LARGE, self._body_message())
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_body_timer()
        super().on_message_complete()

    # -- refusals -----------------------------------------------------------------------

    def _refuse(self, refusal: RequestRefused) -> None:
        """Answer `refusal` (unless the app already answered) and close the connection."""
        self._refused = True
        self._cancel_timers()
        cycle = self.cycle
        if cycle is not None and self._request_in_app:
            # The app runs (or ran) this request: tell it the client is gone, and if it
            # already answered, a second answer would only garble the connection.
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:
                self.transport.close()
                return
        log.info(
            "refused a request from %s: %d %s",
            self.client[0] if self.client else "?",
            refusal.status,
            refusal.message,
        )
        self.transport.write(_error_response(refusal.status, refusal.code, refusal.message))
        self._close_lingering()

    def _close_lingering(self) -> None:
        """Finish our side, then read and drop what the client still sends, for a while.

        Closing a socket with unread data in it makes the kernel reset the connection, and a
        client still sending its 40 MB header may then never see our answer (nginx's
        "lingering close" works around the same thing). Dropped bytes are never parsed.
        """
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._linger_timer = self.loop.call_later(_LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def _bad_request(self) -> None:
        self._refuse(RequestRefused(400, ErrorCode.BAD_REQUEST, "invalid HTTP request"))

    def _declared_length(self) -> int | None:
        for name, value in self.headers:
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None  # httptools refuses a malformed length itself
        return None

    def _expects_body(self) -> bool:
        return any(name in (b"content-length", b"transfer-encoding") for name, _ in self.headers)

    def _body_message(self) -> str:
        return f"the body is over the {self._limits.max_body // 1024} KiB limit"

    # -- timers -------------------------------------------------------------------------

    def _start_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self._limits.header_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._refused or self.transport.is_closing():
            return
        if not self._received_any:
            # A connection opened and never used (a browser's pre-connect): just close it.
            self._refused = True
            self.transport.close()
            return
        self._refuse(
            RequestRefused(
                408,
                ErrorCode.REQUEST_TIMEOUT,
                f"the request headers took over {self._limits.header_timeout:g} s",
            )
        )

    def _restart_body_timer(self) -> None:
        self._cancel_body_timer()
        self._body_timer = self.loop.call_later(
            self._limits.body_idle_timeout, self._body_timed_out
        )

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self._refused or self.transport.is_closing():
            return
        if self.flow.read_paused:
            # We stopped reading (the app has not consumed what it got): not the client's fault.
            self._restart_body_timer()
            return
        self._refuse(
            RequestRefused(
                408,
                ErrorCode.REQUEST_TIMEOUT,
                f"the body stopped arriving for {self._limits.body_idle_timeout:g} s",
            )
        )

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()


def _head_too_large(limit: int) -> RequestRefused:
    return RequestRefused(
        431, ErrorCode.REQUEST_HEADER_TOO_LARGE, f"the request headers are over {limit} bytes"
    )


def _error_response(status: int, code: ErrorCode, message: str) -> bytes:
    """A complete HTTP/1.1 response in the error shape, closing the connection."""
    body = json.dumps({"error": {"code": str(code), "message": message}}).encode()
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n",
            b"\r\n",
            body,
        ]
    )
