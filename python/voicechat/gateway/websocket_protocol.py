"""uvicorn's wsproto WebSocket protocol, as `voicechat serve` runs it for the gateway.

Two things on top of uvicorn's `WSProtocol`:

* **A frame the client got wrong closes with its code.** wsproto reports a frame it cannot
  accept (text that is not UTF-8: 1007; a protocol violation: 1002) as a close *event* and
  leaves the connection open for the server to answer; uvicorn takes that for the peer's own
  close and drops the connection without a close frame (the client sees 1006). Here the
  server sends the close frame first, as uvicorn's websockets implementations do.
* **Pre-encoded frames.** The gateway fans one event out to thousands of sockets. Through ASGI
  each socket would cost a coroutine (and a task), wsproto's framing of the same text again
  and starlette's state checks: ~30 µs a socket. A server frame is not masked, so the bytes
  of a text frame are the same for every socket; the scope's extension
  `voicechat.websocket.encoded` lets the gateway write those bytes straight to the transport,
  synchronously, while the connection is open and its write buffer below the high-water mark
  (docs/gateway.md, "Fan-out"). Otherwise the gateway sends through ASGI as usual.
"""

from __future__ import annotations

from typing import Any, Protocol

from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
from wsproto import events
from wsproto.connection import ConnectionState
from wsproto.frame_protocol import CloseReason, FrameProtocol

#: The scope extension (`scope["extensions"][ENCODED_FRAMES]`) holding a `FrameWriter`.
ENCODED_FRAMES = "voicechat.websocket.encoded"

#: Close reasons for the frames wsproto refuses (its own reason quotes the codec's error).
_REASONS: dict[int, str] = {
    CloseReason.INVALID_FRAME_PAYLOAD_DATA: "invalid UTF-8 in a text frame",
    CloseReason.PROTOCOL_ERROR: "WebSocket protocol error",
}


class FrameWriter(Protocol):
    """Writes a pre-encoded server frame to one connection, if it can right now."""

    def __call__(self, frame: bytes) -> bool:
        """Write `frame`; False (nothing written) when the connection is closing, closed
        or its write buffer is full: send through ASGI instead, which waits."""
        ...


def encode_text_frame(text: str) -> bytes:
    """The bytes of an unfragmented, uncompressed server → client text frame."""
    return bytes(FrameProtocol(client=False, extensions=[]).send_data(text, fin=True))


class GatewayWebSocketProtocol(WSProtocol):
    """uvicorn's wsproto protocol with close frames for refused frames and encoded writes."""

    def handle_connect(self, event: events.Request) -> None:
        super().handle_connect(event)
        # Compressed frames differ per connection: only plain frames can be shared.
        if not self.config.ws_per_message_deflate:
            extensions: dict[str, Any] = self.scope["extensions"]
            extensions[ENCODED_FRAMES] = self.write_encoded

    def handle_close(self, event: events.CloseConnection) -> None:
        if not self.close_sent and self.conn.state is ConnectionState.OPEN:
            # Not the peer's close frame (it would have moved the state to REMOTE_CLOSING):
            # wsproto refused a frame. Say so with the code before dropping the connection.
            self.close_sent = True
            reason = _REASONS.get(event.code, "")
            self.queue.put_nowait(
                {"type": "websocket.disconnect", "code": event.code, "reason": reason}
            )
            if not self.transport.is_closing():
                self.transport.write(
                    self.conn.send(events.CloseConnection(code=event.code, reason=reason))
                )
                self.transport.close()
            return
        super().handle_close(event)

    def write_encoded(self, frame: bytes) -> bool:
        """Write a pre-encoded text frame now, if the connection is open and writable."""
        if (
            self.close_sent
            or self.disconnected
            or not self.handshake_complete
            or self.response_started
            or not self.writable.is_set()
            or self.conn.state is not ConnectionState.OPEN
            or self.transport.is_closing()
        ):
            return False
        self.transport.write(frame)
        return True
