"""The WebSocket gateway (`/ws`): JSON-RPC 2.0, live events, presence and typing."""

from voicechat.error_codes import RpcErrorCode
from voicechat.gateway.hub import Gateway, GatewayConfig
from voicechat.gateway.protocol import MAX_FRAME_BYTES, CloseCode

__all__ = ["MAX_FRAME_BYTES", "CloseCode", "Gateway", "GatewayConfig", "RpcErrorCode"]
