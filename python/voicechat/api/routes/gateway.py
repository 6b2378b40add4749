"""`GET /ws`: the WebSocket gateway (SPEC §4, docs/gateway.md).

The gateway is not a FastAPI route but a middleware just inside the request context: a socket
lives for hours, and everything between that middleware and a route (the body and input
guards, exception handling, the router, the endpoint's dependency machinery) would stay
suspended in memory for each open socket without doing anything for it. Skipping it takes
~6 KiB off every idle socket (docs/performance.md, Gateway).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from voicechat.api.proxies import client_ip
from voicechat.api.resources import Resources

PATH = "/ws"


class GatewayEndpoint:
    """Serve WebSocket connections to `/ws` with the gateway; pass everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        websocket = WebSocket(scope, receive, send)
        # JSON-RPC 2.0 over WebSocket: `auth` first, then events and requests.
        resources: Resources = websocket.app.state.resources
        await resources.gateway.serve(websocket, client_ip(websocket))
