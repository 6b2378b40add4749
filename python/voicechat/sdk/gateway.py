"""The WebSocket side of the SDK: JSON-RPC 2.0 over `/ws`, reconnecting by itself.

The connection runs in one background task. Notifications go to a queue read by
`Client.events()`; responses resolve the futures of `request()` calls. When the socket drops,
the task reconnects with exponential backoff (0.5 s doubling to 30 s, with jitter), refreshes the
access token when the server refused it, and puts a `gateway.reconnected` event in the queue so
the application can fetch what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx
import websockets
from websockets.asyncio.client import ClientConnection, connect

from voicechat.sdk.errors import ApiError, AuthError, ForbiddenError

if TYPE_CHECKING:
    from voicechat.sdk.client import Client

log = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000
BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
# Close codes after which the token must be refreshed before trying again.
AUTH_CLOSE_CODES = {4001, 4003, 4004}

# What `Gateway.state` can be: before the first connection, authenticated, lost and retrying,
# closed for good (by `close()` or because the session ended).
GatewayState = Literal["connecting", "online", "reconnecting", "closed"]


@dataclass(frozen=True, slots=True)
class GatewayEvent:
    """A server notification: `method` (e.g. `message.new`) and its `params`."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)


class GatewayError(ApiError):
    """The server answered a gateway request with a JSON-RPC error.

    `code` is the JSON-RPC error code as text (`"-32602"`); `reason` the server's snake_case
    code from `error.data.code` when it sent one (`"voice_channel_full"`), as in REST errors.
    """

    def __init__(self, status: int, code: str, message: str, reason: str | None = None) -> None:
        super().__init__(status, code, message)
        self.reason = reason


class Gateway:
    """One reconnecting gateway connection of a :class:`Client`."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._events: asyncio.Queue[GatewayEvent] = asyncio.Queue(QUEUE_LIMIT)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(2)
        self._socket: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._handlers: dict[str, Callable[[GatewayEvent], Coroutine[Any, Any, None]]] = {}
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self.session: dict[str, Any] = {}
        self.state: GatewayState = "connecting"
        self._state_listeners: list[Callable[[GatewayState], None]] = []

    @property
    def url(self) -> str:
        """The gateway's WebSocket URL."""
        base = self._client.base_url
        scheme, rest = base.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws"

    def on_state(self, listener: Callable[[GatewayState], None]) -> Callable[[], None]:
        """Call `listener(state)` on every change of :attr:`state`; returns an unsubscribe.

        Listeners run synchronously in the gateway task: keep them short. Events keep their
        order in `events()`: a `gateway.reconnected` event follows the switch to `online`.
        """
        self._state_listeners.append(listener)
        return lambda: self._state_listeners.remove(listener)

    def _set_state(self, state: GatewayState) -> None:
        if state == self.state:
            return
        self.state = state
        for listener in list(self._state_listeners):
            try:
                listener(state)
            except Exception:
                log.exception("gateway state listener failed")

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._closing = False
            self._task = asyncio.create_task(self._run(), name="voicechat-gateway")

    async def connected(self, timeout: float = 15.0) -> None:
        """Wait until the socket is open and authenticated."""
        self._ensure_running()
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def events(self) -> AsyncIterator[GatewayEvent]:
        """Notifications as they arrive."""
        self._ensure_running()
        while True:
            yield await self._events.get()

    async def request(self, method: str, params: dict[str, Any], timeout: float = 10.0) -> Any:
        """Call a gateway method and return its result.

        Raises:
            GatewayError: the server answered with an error.
            TimeoutError: no answer in time.
        """
        await self.connected(timeout)
        assert self._socket is not None
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            frame = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
            await self._socket.send(json.dumps(frame))
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)

    def handle(
        self, method: str, handler: Callable[[GatewayEvent], Coroutine[Any, Any, None]]
    ) -> None:
        """Route `method` notifications to `handler` instead of `events()` (a voice call
        answers `voice.offer` itself while the application reads the rest)."""
        self._handlers[method] = handler

    async def close(self) -> None:
        """Disconnect for good."""
        self._closing = True
        self._set_state("closed")
        if self._socket is not None:
            await self._socket.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        delay = BACKOFF_START
        first = True
        while not self._closing:
            try:
                async with connect(self.url, max_size=2**20, open_timeout=10) as socket:
                    await self._authenticate(socket)
                    if self._closing:
                        # close() ran meanwhile and its cancellation may have been lost
                        # (Python 3.11's wait_for can drop one): leave, closing the socket.
                        return
                    self._socket = socket
                    self._connected.set()
                    self._set_state("online")
                    delay = BACKOFF_START
                    if not first:
                        self._push(GatewayEvent("gateway.reconnected"))
                    first = False
                    heartbeat = asyncio.create_task(self._heartbeat(socket))
                    try:
                        await self._read(socket)
                    finally:
                        heartbeat.cancel()
            except websockets.ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else None
                log.info("gateway closed (%s); reconnecting", code)
                if code in AUTH_CLOSE_CODES:
                    await self._refresh_or_stop()
            except AuthError:
                await self._refresh_or_stop()
            except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
                log.info("gateway unreachable (%s); retrying", type(exc).__name__)
            finally:
                self._connected.clear()
                self._socket = None
                if not first and not self._closing:
                    self._set_state("reconnecting")
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(ConnectionError("the gateway disconnected"))
            if self._closing:
                self._set_state("closed")
                return
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311 (jitter)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _refresh_or_stop(self) -> None:
        try:
            await self._client.refresh()
        except (AuthError, ForbiddenError) as exc:
            # 403: `banned` or `account_disabled` (docs/moderation.md): `code` says which, for
            # the application's message.
            self._closing = True
            self._push(GatewayEvent("gateway.auth_failed", {"code": exc.code}))
        except httpx.TransportError as exc:
            # The server is unreachable right now: not a reason to give the session up.
            log.info("gateway: token refresh failed (%s); retrying", type(exc).__name__)

    async def _heartbeat(self, socket: ClientConnection) -> None:
        # The server closes sockets that stay silent for 2.5 heartbeat intervals (4002).
        interval = float(self.session.get("heartbeat_interval") or 30.0)
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await asyncio.sleep(interval)
                await socket.send('{"jsonrpc":"2.0","method":"ping"}')

    async def _authenticate(self, socket: ClientConnection) -> None:
        # A bot sends "Bot <token>" (docs/gateway.md), a user the bare access token.
        token = (
            f"Bot {self._client.bot_token}"
            if self._client.bot_token is not None
            else self._client.access_token
        )
        if token is None:
            raise AuthError(401, "missing_token", "log in before opening the gateway")
        await socket.send(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "auth", "params": {"token": token}})
        )
        # asyncio.timeout rather than wait_for: it never swallows a cancellation.
        async with asyncio.timeout(10):
            answer = json.loads(await socket.recv())
        if "error" in answer:
            error = answer["error"]
            raise AuthError(401, str(error.get("code")), str(error.get("message")))
        self.session = dict(answer.get("result") or {})

    async def _read(self, socket: ClientConnection) -> None:
        async for raw in socket:
            try:
                frame = json.loads(raw)
            except ValueError:
                continue
            if "id" in frame and frame["id"] in self._pending:
                future = self._pending[frame["id"]]
                if future.done():
                    continue
                if "error" in frame:
                    error = frame["error"]
                    data = error.get("data")
                    reason = data.get("code") if isinstance(data, dict) else None
                    future.set_exception(
                        GatewayError(
                            400,
                            str(error.get("code")),
                            str(error.get("message")),
                            reason if isinstance(reason, str) else None,
                        )
                    )
                else:
                    future.set_result(frame.get("result"))
            elif "method" in frame:
                event = GatewayEvent(frame["method"], frame.get("params") or {})
                handler = self._handlers.get(event.method)
                if handler is None:
                    self._push(event)
                else:
                    task = asyncio.create_task(handler(event))
                    self._handler_tasks.add(task)
                    task.add_done_callback(self._handler_tasks.discard)

    def _push(self, event: GatewayEvent) -> None:
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            # An application that stopped reading loses the oldest events, not the connection.
            self._events.get_nowait()
            self._events.put_nowait(event)
