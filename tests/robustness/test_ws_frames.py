"""An oversized WebSocket frame against a live `voicechat serve` (SPEC §11).

tests/gateway runs the gateway in-process and sets uvicorn's `ws_max_size` itself; this test
checks that the server as shipped (`voicechat serve`, cli.py) refuses a frame far over the
limit (1 MiB and more, the size an attacker would try) with 1009 on the wire, without taking
it in, and keeps serving everyone else.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import LiveServer
from tests.utils.auth import register
from voicechat.gateway import CloseCode

FRAME_BYTES = (1 << 20) + 1  # just over 1 MiB


async def _answer(ws: ClientConnection, request_id: int) -> dict[str, Any]:
    """The answer to one request; notifications on the way are skipped."""
    while True:
        frame: dict[str, Any] = json.loads(await ws.recv())
        if frame.get("id") == request_id:
            return frame


async def test_a_frame_over_1_mib_closes_1009_and_the_server_keeps_serving(
    live_server: LiveServer,
) -> None:
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10) as http:
        token = (await register(http, "framer"))["access_token"]
        ws_url = live_server.base_url.replace("http://", "ws://") + "/ws"
        async with connect(ws_url, max_size=None, open_timeout=10) as ws:
            await ws.send(
                json.dumps(
                    {"jsonrpc": "2.0", "id": 1, "method": "auth", "params": {"token": token}}
                )
            )
            assert "result" in json.loads(await ws.recv())
            pad = "x" * FRAME_BYTES
            try:
                await ws.send(
                    json.dumps(
                        {"jsonrpc": "2.0", "id": 2, "method": "ping", "params": {"pad": pad}}
                    )
                )
                while True:  # anything already on its way, then the close
                    await ws.recv()
            except ConnectionClosed:
                pass
            assert ws.close_code == CloseCode.MESSAGE_TOO_BIG
        # The same user connects again and is served; so is HTTP.
        async with connect(ws_url, open_timeout=10) as ws:
            await ws.send(
                json.dumps(
                    {"jsonrpc": "2.0", "id": 1, "method": "auth", "params": {"token": token}}
                )
            )
            assert "result" in json.loads(await ws.recv())
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ping"}))
            # Presence of the first socket going offline may come first: skip notifications.
            assert (await _answer(ws, 2))["result"] == "pong"
        assert (await http.get("/health")).status_code == 200
    assert "Traceback" not in live_server.log
