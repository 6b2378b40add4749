"""`GET /ws`: the WebSocket gateway (SPEC §4, docs/gateway.md)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from voicechat.api.proxies import client_ip
from voicechat.api.resources import Resources

router = APIRouter(tags=["gateway"])


@router.websocket("/ws")
async def gateway(websocket: WebSocket) -> None:
    """JSON-RPC 2.0 over WebSocket: `auth` first, then events and requests."""
    resources: Resources = websocket.app.state.resources
    await resources.gateway.serve(websocket, client_ip(websocket))
