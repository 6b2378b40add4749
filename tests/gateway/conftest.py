"""Fixtures for gateway tests: the app served by a real uvicorn in the test's event loop (so
tests can reach its `Resources` and tune the gateway), and a small JSON-RPC client."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.utils.auth import bearer, register
from tests.utils.net import free_port
from voicechat.api import create_app
from voicechat.api.resources import Resources
from voicechat.gateway import MAX_FRAME_BYTES, WS_IMPLEMENTATION
from voicechat.settings import Settings


@dataclass
class Served:
    """The API on a loopback port, with its in-process resources."""

    base_url: str
    ws_url: str
    resources: Resources
    http: httpx.AsyncClient


@contextlib.asynccontextmanager
async def serve_app(settings: Settings) -> AsyncIterator[Served]:
    """The app under uvicorn in this event loop (the WebSocket settings of `voicechat serve`)."""
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        ws=WS_IMPLEMENTATION,
        ws_max_size=MAX_FRAME_BYTES,
        ws_per_message_deflate=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:
            if task.done():
                task.result()
                raise AssertionError("uvicorn stopped during start-up")
            await asyncio.sleep(0.02)
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            yield Served(base_url, f"ws://127.0.0.1:{port}/ws", app.state.resources, http)
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[Served]:
    """The app under uvicorn (the same WebSocket settings as `voicechat serve`)."""
    async with serve_app(settings) as running:
        yield running


@dataclass
class Account:
    """A registered user and their access token."""

    id: str
    username: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """Bearer header."""
        return bearer(self.token)


async def make_account(http: httpx.AsyncClient, username: str) -> Account:
    """Register a user over HTTP."""
    body = await register(http, username)
    return Account(body["user"]["id"], username, body["access_token"])


class GatewayClient:
    """A JSON-RPC client on one socket; notifications are buffered until asked for."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._next_id = 1

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and return its whole answer (result or error)."""
        request_id = self._next_id
        self._next_id += 1
        message = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.ws.send(json.dumps(message))
        return await self.answer(request_id)

    async def answer(self, request_id: object, within: float = 10) -> dict[str, Any]:
        """Read until the answer to `request_id` arrives (buffering notifications)."""
        async with asyncio.timeout(within):
            while True:
                frame = json.loads(await self.ws.recv())
                if "method" in frame and "id" not in frame:
                    self.events.append(frame)
                elif frame.get("id") == request_id:
                    return dict(frame)

    async def event(self, method: str, within: float = 10, **match: Any) -> dict[str, Any]:
        """The next notification `method` whose params contain `match`; returns its params."""

        def fits(frame: dict[str, Any]) -> bool:
            params = frame["params"]
            return frame["method"] == method and all(params.get(k) == v for k, v in match.items())

        for i, frame in enumerate(self.events):
            if fits(frame):
                del self.events[i]
                return dict(frame["params"])
        async with asyncio.timeout(within):
            while True:
                frame = json.loads(await self.ws.recv())
                if "method" not in frame:
                    continue
                if fits(frame):
                    return dict(frame["params"])
                self.events.append(frame)

    async def no_event(self, method: str, wait: float = 1.0, **match: Any) -> None:
        """Assert that no `method` notification (matching `match`) arrives within `wait`."""
        try:
            params = await self.event(method, within=wait, **match)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected {method}: {params}")

    async def close_code(self, within: float = 15) -> int | None:
        """Read until the server closes; the close code it sent."""
        async with asyncio.timeout(within):
            try:
                while True:
                    await self.ws.recv()
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd is not None else None


async def open_gateway(ws_url: str, token: str, **options: Any) -> GatewayClient:
    """Connect and authenticate; fails the test if auth is refused."""
    ws = await connect(ws_url, **options)
    client = GatewayClient(ws)
    answer = await client.request("auth", {"token": token})
    assert "result" in answer, answer
    return client


@pytest.fixture
async def gateways() -> AsyncIterator[list[GatewayClient]]:
    """A list to put clients in; all are closed at the end of the test."""
    opened: list[GatewayClient] = []
    yield opened
    for client in opened:
        await client.ws.close()
