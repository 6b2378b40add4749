"""The WebSocket gateway (`/ws`): JSON-RPC 2.0, live events, presence and typing."""

from voicechat.error_codes import RpcErrorCode
from voicechat.gateway.hub import Gateway, GatewayConfig
from voicechat.gateway.protocol import MAX_FRAME_BYTES, CloseCode
from voicechat.gateway.websocket_protocol import GatewayWebSocketProtocol

#: uvicorn's WebSocket implementation for `voicechat serve`: of the three (measured with
#: 19,020 idle sockets, docs/performance.md "Gateway") wsproto holds an idle socket in the
#: least memory (23.0 KiB, against 25.3 for websockets-sansio; legacy websockets 34.0 at 3,000).
#: Its subclass closes refused frames with their code and takes pre-encoded fan-out frames.
WS_IMPLEMENTATION = GatewayWebSocketProtocol

__all__ = [
    "MAX_FRAME_BYTES",
    "WS_IMPLEMENTATION",
    "CloseCode",
    "Gateway",
    "GatewayConfig",
    "RpcErrorCode",
]
