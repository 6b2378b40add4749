"""The WebSocket gateway (`/ws`): JSON-RPC 2.0, live events, presence and typing."""

from voicechat.gateway.hub import Gateway, GatewayConfig
from voicechat.gateway.protocol import MAX_FRAME_BYTES, CloseCode, ErrorCode

__all__ = ["MAX_FRAME_BYTES", "CloseCode", "ErrorCode", "Gateway", "GatewayConfig"]
