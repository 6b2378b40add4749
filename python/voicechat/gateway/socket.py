"""One gateway socket: authentication, the read loop, and a bounded send queue.

The connection's own task reads: it parses and answers requests in order. Frames to send
go to a bounded outbox that a writer task drains onto the network; the outbox and the writer
exist only while something waits to be sent, so an idle socket costs no task and no queue
(the memory per idle socket is what bounds how many one instance holds). Fan-out only ever
calls :meth:`Socket.push`, which never waits: when the outbox is full the socket is closed as
a slow consumer, so one client that does not read cannot hold up the events of anyone else.

When the server offers it (`websocket_protocol.ENCODED_FRAMES`, `voicechat serve`'s protocol)
and nothing waits in the outbox, `push` writes the frame's encoded bytes to the connection at
once: no task, no coroutine, and one encoding of an event for all its sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import uuid4

from redis.exceptions import RedisError
from starlette.websockets import WebSocket

from voicechat.auth.service import Authenticated
from voicechat.error_codes import ErrorCode, RpcErrorCode
from voicechat.errors import RateLimited, Unauthorized, VoicechatError
from voicechat.gateway.protocol import (
    CloseCode,
    InvalidFrame,
    Request,
    RpcError,
    error_frame,
    parse_request,
    result_frame,
)
from voicechat.gateway.websocket_protocol import ENCODED_FRAMES, FrameWriter, encode_text_frame
from voicechat.outages import outage_of

if TYPE_CHECKING:
    from voicechat.gateway.hub import Gateway, LocalUser

log = logging.getLogger(__name__)

#: The close reason (1013) when a dependency the socket needs is down.
_UNAVAILABLE_REASON = "the server cannot serve you right now; retry shortly"


class TokenBucket:
    """`capacity` tokens, refilled at `rate` per second."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.tokens = capacity
        self.stamp = time.monotonic()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a socket is not admitted: the frame answering its `auth` (if any), the close."""

    frame: str | None
    code: int
    reason: str
    #: Whether it got as far as registering (and must be detached).
    registered: bool = False


@dataclass(frozen=True, slots=True)
class Closing:
    """Why the server is closing a socket."""

    code: int
    reason: str


class Socket:
    """A client's connection to the gateway on this instance."""

    __slots__ = (
        "_auth_request_id",
        "_interrupted",
        "_outbox",
        "_reader",
        "_receiving",
        "_write_encoded",
        "_writer",
        "auth",
        "closing",
        "config",
        "gateway",
        "id",
        "ip",
        "last_heard",
        "registered",
        "user",
        "websocket",
    )

    def __init__(self, gateway: Gateway, websocket: WebSocket, ip: str) -> None:
        self.id = uuid4().hex
        self.gateway = gateway
        self.websocket = websocket
        #: The client's address (as a trusted proxy reported it): the per-IP caps count it.
        self.ip = ip
        #: Whether the socket holds a presence entry (and so counts against the caps).
        self.registered = False
        self.config = gateway.config
        self.user: LocalUser | None = None
        self.auth: Authenticated | None = None
        self.closing: Closing | None = None
        #: When the client last sent a frame (`time.monotonic()`), for the heartbeat sweep.
        self.last_heard = time.monotonic()
        self._auth_request_id: str | int | None = None
        # Frames waiting to be sent, and the task sending them: both exist only while there
        # is something to send, so an idle socket holds neither (docs/performance.md).
        self._outbox: deque[str] | None = None
        self._writer: asyncio.Task[None] | None = None
        # Writes encoded frames straight to the connection (None: the server has no such
        # extension; every frame goes through ASGI).
        self._write_encoded: FrameWriter | None = websocket.scope.get("extensions", {}).get(
            ENCODED_FRAMES
        )
        # The task reading the socket, and whether it waits for a frame (then `close_soon`
        # interrupts the wait; otherwise the reader sees `closing` after the current request).
        self._reader: asyncio.Task[object] | None = None
        self._receiving = False
        self._interrupted = False

    def push(self, frame: str, encoded: bytes | None = None) -> None:
        """Send a frame now, or queue it; never waits. A full queue closes the socket (4009).

        Args:
            frame: the text frame.
            encoded: the frame's bytes on the wire (`encode_text_frame`), when the caller
                sends the same frame to many sockets and encoded it once.
        """
        if self.closing is not None:
            return
        outbox = self._outbox
        if outbox is None:
            # Nothing waits ahead of it: written at once if the connection can take it.
            write = self._write_encoded
            if write is not None and write(
                encoded if encoded is not None else encode_text_frame(frame)
            ):
                return
            outbox = self._outbox = deque()
        elif len(outbox) >= self.config.send_queue_size:
            log.info("gateway socket %s closed: send queue full", self.id)
            self.close_soon(CloseCode.SLOW_CONSUMER, "you are not reading your events fast enough")
            return
        outbox.append(frame)
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())

    def close_soon(self, code: int, reason: str) -> None:
        """Ask the socket's own task to close it with `code` (the first reason wins)."""
        if self.closing is None:
            self.closing = Closing(code, reason)
            if self._receiving and self._reader is not None and not self._interrupted:
                self._interrupted = True
                self._reader.cancel()

    async def run(self) -> None:
        """Serve the socket until it closes."""
        await self.websocket.accept()
        # Admission work (Valkey, PostgreSQL) runs a few sockets at a time per instance
        # (`GatewayConfig.admission_concurrency`): a storm of sockets waits its turn instead
        # of taking every pooled connection from HTTP requests. Frames are sent outside it.
        async with self.gateway.admissions:
            refusal = await self._count_attempt()
        if refusal is not None:
            await self._refuse_with(refusal)
            return
        request = await self._auth_request()
        if request is None:
            return
        async with self.gateway.admissions:
            refusal = await self._admit(request)
        del request  # its token and params would stay in memory as long as the socket
        if refusal is not None:
            if refusal.registered:
                await self.gateway.detach(self)
            await self._refuse_with(refusal)
            return
        # The reader runs in this (the connection's own) task: no task per socket is added
        # for reading, and none for writing while nothing waits to be sent.
        self._reader = asyncio.current_task()
        try:
            try:
                await self._read_loop()
            finally:
                self._reader = None
                await self._stop_writer()
            if self.closing is not None:
                await self._close(self.closing.code, self.closing.reason)
        finally:
            await self.gateway.detach(self)

    async def _count_attempt(self) -> Refusal | None:
        try:
            await self.gateway.admit_connection(self.ip)
        except RateLimited as exc:
            return Refusal(
                None,
                CloseCode.TOO_MANY_CONNECTIONS,
                f"too many connection attempts from your address; retry in {exc.retry_after} s",
            )
        except (RedisError, OSError) as exc:
            if outage_of(exc) is None:
                log.warning("gateway: could not count a connection attempt: %s", exc)
            return Refusal(None, CloseCode.TRY_AGAIN_LATER, _UNAVAILABLE_REASON)
        return None

    async def _admit(self, request: Request) -> Refusal | None:
        """`_check_in`, with a dependency that is down said as -32000 `<x>_unavailable` and
        close 1013 (docs/reliability.md, "When a dependency fails")."""
        try:
            return await self._check_in(request)
        except Exception as exc:
            outage = outage_of(exc)
            if outage is None:
                raise
            return Refusal(
                error_frame(request.id, RpcError.from_domain(outage)),
                CloseCode.TRY_AGAIN_LATER,
                _UNAVAILABLE_REASON,
            )

    async def _check_in(self, request: Request) -> Refusal | None:
        """Check the token, count the attempt, register the socket; or why not."""
        token = request.params["token"]
        try:
            # An access token, or "Bot <token>" for a bot account (docs/gateway.md).
            auth = await self.gateway.auth.authenticate_credential(token, self.ip)
        except (Unauthorized, RateLimited) as exc:
            return Refusal(
                error_frame(request.id, RpcError.from_domain(exc)),
                CloseCode.AUTHENTICATION_FAILED,
                "authentication failed",
            )
        try:
            await self.gateway.admit_user(auth.user_id)
        except RateLimited as exc:
            return Refusal(
                error_frame(request.id, RpcError.from_domain(exc)),
                CloseCode.TOO_MANY_CONNECTIONS,
                "too many connection attempts",
            )
        # The answer is queued, not sent: `attach` puts it ahead of any event.
        self._auth_request_id = request.id
        self.auth = auth
        try:
            await self.gateway.attach(self, auth)
        except RpcError as refusal:  # a cap on open sockets
            return Refusal(
                error_frame(request.id, refusal),
                CloseCode.TOO_MANY_CONNECTIONS,
                "too many open sockets",
            )
        except Exception as exc:
            outage = outage_of(exc)
            if outage is not None:
                return Refusal(
                    error_frame(request.id, RpcError.from_domain(outage)),
                    CloseCode.TRY_AGAIN_LATER,
                    _UNAVAILABLE_REASON,
                    registered=True,
                )
            if isinstance(exc, RedisError | OSError):
                log.warning("gateway: could not register a socket: %s", exc)
            else:
                log.exception("gateway: could not register a socket")
            return Refusal(
                None,
                CloseCode.INTERNAL_ERROR,
                "the server could not register you",
                registered=True,
            )
        return None

    async def _refuse_with(self, refusal: Refusal) -> None:
        if refusal.frame is not None:
            await self._send_now(refusal.frame)
        await self._close(refusal.code, refusal.reason)

    async def _auth_request(self) -> Request | None:
        """Wait for the `auth` request (with a token); on anything else answer and close."""
        try:
            async with asyncio.timeout(self.config.auth_timeout):
                message = await self.websocket.receive()
        except TimeoutError:
            await self._close(CloseCode.NOT_AUTHENTICATED, "authenticate first (within 10 s)")
            return None
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is None:
            await self._refuse(
                None, RpcError(RpcErrorCode.INVALID_REQUEST, "binary frames are not accepted")
            )
            return None
        if _too_big(text, self.config.max_frame_bytes):
            await self._close(CloseCode.MESSAGE_TOO_BIG, "frame too large")
            return None
        try:
            request = parse_request(text)
        except InvalidFrame as exc:
            await self._refuse(exc.request_id, exc.error)
            return None
        if request.method != "auth":
            await self._refuse(
                request.id,
                RpcError(RpcErrorCode.INVALID_REQUEST, 'the first request must be "auth"'),
            )
            return None
        token = request.params.get("token")
        if not isinstance(token, str) or not token:
            await self._refuse(
                request.id, RpcError(RpcErrorCode.INVALID_PARAMS, "auth needs params.token")
            )
            return None
        return request

    async def _refuse(self, request_id: str | int | None, error: RpcError) -> None:
        await self._send_now(error_frame(request_id, error))
        await self._close(CloseCode.NOT_AUTHENTICATED, "authenticate first")

    def auth_answer(self, result: dict[str, object]) -> str:
        """The answer to the `auth` request."""
        return result_frame(self._auth_request_id, result)

    async def _read_loop(self) -> None:
        user = self.user
        assert user is not None
        while self.closing is None:
            self._receiving = True
            # No timer per socket: the gateway's heartbeat sweep closes silent sockets (4002).
            try:
                message = await self.websocket.receive()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._interrupted and task is not None and task.uncancel() == 0:
                    return  # `close_soon` woke us: close with its code
                raise
            finally:
                self._receiving = False
            self.last_heard = time.monotonic()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is not None and _too_big(text, self.config.max_frame_bytes):
                self.close_soon(CloseCode.MESSAGE_TOO_BIG, "frame too large")
                return
            request: Request | None = None
            error: RpcError | None = None
            request_id = None
            if text is None:
                error = RpcError(RpcErrorCode.INVALID_REQUEST, "binary frames are not accepted")
            else:
                try:
                    request = parse_request(text)
                    request_id = request.id
                except InvalidFrame as exc:
                    error, request_id = exc.error, exc.request_id
            if not user.budget.take():
                if not user.strikes.take():
                    self.close_soon(CloseCode.RATE_LIMITED, "too many messages")
                    return
                error = RpcError(
                    RpcErrorCode.RATE_LIMITED,
                    "you are sending too fast; slow down",
                    {"code": ErrorCode.RATE_LIMITED, "retry_after": 1},
                )
            if error is not None:
                if request is None or not request.is_notification:
                    self.push(error_frame(request_id, error))
                continue
            assert request is not None
            await self._answer(request)

    async def _answer(self, request: Request) -> None:
        try:
            result = await self.gateway.call(self, request)
        except RpcError as exc:
            error = exc
        except VoicechatError as exc:
            error = RpcError.from_domain(exc)
        except Exception as exc:
            outage = outage_of(exc)
            if outage is not None:
                error = RpcError.from_domain(outage)
            else:
                log.exception("gateway: %s failed", request.method)
                error = RpcError(
                    RpcErrorCode.INTERNAL_ERROR, "the server failed to handle this request"
                )
        else:
            if not request.is_notification:
                self.push(result_frame(request.id, result))
            return
        if not request.is_notification:
            self.push(error_frame(request.id, error))

    async def _stop_writer(self) -> None:
        writer = self._writer
        if writer is None:
            return
        # Closing for a reason of ours: what was answered before goes out ahead of the close
        # frame (within the close timeout). A slow consumer or a gone peer: drop it.
        closing = self.closing
        if closing is not None and closing.code != CloseCode.SLOW_CONSUMER:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.close_timeout):
                    await asyncio.shield(writer)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer

    async def _drain(self) -> None:
        outbox = self._outbox
        try:
            while outbox:
                frame = outbox.popleft()
                try:
                    await self.websocket.send_text(frame)
                except Exception:
                    # The peer is gone (or going); the reader sees the disconnect.
                    outbox.clear()
                    return
        finally:
            self._writer = None
            if self._outbox is outbox and not outbox:
                self._outbox = None

    async def _send_now(self, frame: str) -> None:
        with contextlib.suppress(Exception):
            await self.websocket.send_text(frame)

    async def _close(self, code: int, reason: str) -> None:
        # A stalled peer may never make room for the close frame: bounded wait, then the
        # server drops the connection when this handler returns.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.config.close_timeout):
                await self.websocket.close(code, reason)


def _too_big(text: str, limit: int) -> bool:
    # A character is at most 4 bytes in UTF-8: encode only when it could matter.
    return len(text) * 4 > limit and len(text.encode()) > limit
